//! The deployment state machine: a pure function from (current status, observed
//! status) to what should happen. Status only moves forward; ready and failed are
//! final, and neither replaces the other.

use std::fmt;
use std::str::FromStr;

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::Serialize;

/// A deployment's status, stored as the seed's lowercase strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "building")]
    Building,
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Building,
        Status::Ready,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Building => "building",
            Status::Ready => "ready",
            Status::Failed => "failed",
        }
    }

    /// Position in the forward order; ready and failed share the last rank.
    fn rank(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Building => 1,
            Status::Ready | Status::Failed => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}: expected pending, building, ready or failed")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What an event observing `next` does to a row currently at `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The row moves forward to the new status.
    Advance(Status),
    /// The row is already there; nothing changes (other fields may still be filled).
    Unchanged,
    /// The event is older than what the row already records, or contradicts a
    /// final status; the status stays as it is.
    Stale,
}

pub fn transition(current: Status, next: Status) -> Transition {
    if current == next {
        Transition::Unchanged
    } else if next.rank() > current.rank() {
        Transition::Advance(next)
    } else {
        Transition::Stale
    }
}

/// [`transition`] for a row that may have been timed out by the sweeper: a timeout is
/// the one final status a later real event replaces (building, ready or failed; a
/// pending report says nothing the timeout did not know).
pub fn transition_of(current: Status, timed_out: bool, next: Status) -> Transition {
    if timed_out && current == Status::Failed && next != Status::Pending {
        Transition::Advance(next)
    } else {
        transition(current, next)
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::Transition::*;
    use super::*;

    #[test]
    fn every_pair_of_statuses_has_the_expected_transition() {
        // Written out in full so a new status cannot slip through a default arm.
        let table = [
            (Pending, Pending, Unchanged),
            (Pending, Building, Advance(Building)),
            (Pending, Ready, Advance(Ready)),
            (Pending, Failed, Advance(Failed)),
            (Building, Pending, Stale),
            (Building, Building, Unchanged),
            (Building, Ready, Advance(Ready)),
            (Building, Failed, Advance(Failed)),
            (Ready, Pending, Stale),
            (Ready, Building, Stale),
            (Ready, Ready, Unchanged),
            (Ready, Failed, Stale),
            (Failed, Pending, Stale),
            (Failed, Building, Stale),
            (Failed, Ready, Stale),
            (Failed, Failed, Unchanged),
        ];
        assert_eq!(table.len(), Status::ALL.len() * Status::ALL.len());
        for (current, next, expected) in table {
            assert_eq!(transition(current, next), expected, "{current} -> {next}");
        }
    }

    #[test]
    fn a_timeout_is_replaced_by_every_real_status_but_pending() {
        let table = [
            (Pending, Stale),
            (Building, Advance(Building)),
            (Ready, Advance(Ready)),
            (Failed, Advance(Failed)),
        ];
        assert_eq!(table.len(), Status::ALL.len());
        for (next, expected) in table {
            assert_eq!(
                transition_of(Failed, true, next),
                expected,
                "timeout -> {next}"
            );
        }
        // Without a timeout, and on any other status, it is the plain machine.
        for current in Status::ALL {
            for next in Status::ALL {
                assert_eq!(
                    transition_of(current, false, next),
                    transition(current, next)
                );
                if current != Failed {
                    assert_eq!(
                        transition_of(current, true, next),
                        transition(current, next)
                    );
                }
            }
        }
    }

    #[test]
    fn applying_events_in_any_order_reaches_the_same_status() {
        // Within one flow (at most one final status), every arrival order of its
        // events ends at the same status.
        fn fold(start: Status, events: &[Status]) -> Status {
            events.iter().fold(start, |s, &e| match transition(s, e) {
                Advance(n) => n,
                Unchanged | Stale => s,
            })
        }
        let flows: [&[Status]; 4] = [
            &[Pending, Building, Ready],
            &[Pending, Building, Failed],
            &[Building, Ready],
            &[Pending, Failed],
        ];
        for flow in flows {
            let mut perm = flow.to_vec();
            let expected = fold(Pending, flow);
            permutations(&mut perm, 0, &mut |p| {
                assert_eq!(fold(Pending, p), expected, "{p:?}");
            });
        }
    }

    fn permutations(items: &mut Vec<Status>, k: usize, f: &mut impl FnMut(&[Status])) {
        if k == items.len() {
            f(items);
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permutations(items, k + 1, f);
            items.swap(k, i);
        }
    }

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert!("READY".parse::<Status>().is_err());
        assert!("".parse::<Status>().is_err());
    }

    #[test]
    fn only_ready_and_failed_are_final() {
        assert_eq!(
            Status::ALL.map(Status::is_final),
            [false, false, true, true]
        );
    }
}
