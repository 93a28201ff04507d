//! Rollbacks and promotions: the row a rollback makes serve, and the rollback rows
//! that show what they went back to whenever it arrives.

use chrono::NaiveDateTime;
use uuid::Uuid;

use super::{Effect, Outcome, Snapshot};
use crate::deployments::state::Status;
use crate::store::deployments::{self, Environment};
use crate::webhooks::Rollback;

impl Snapshot {
    /// Rollback rows that went back to row `i`'s Vercel deployment show its commit and
    /// URL, whenever they arrive.
    pub(super) fn fill_rollbacks(&mut self, i: usize, at: NaiveDateTime) {
        let Some(target) = self.rows[i].vercel_deployment_id.clone() else {
            return;
        };
        let (sha, url) = (
            self.rows[i].github_commit_sha.clone(),
            self.rows[i].deployment_url.clone(),
        );
        for (row, touched) in self.rows.iter_mut().zip(self.touched.iter_mut()) {
            if row.rollback_to.as_deref() == Some(&target)
                && (row.github_commit_sha != sha || row.deployment_url != url)
            {
                row.github_commit_sha.clone_from(&sha);
                row.deployment_url.clone_from(&url);
                row.updated_at = at;
                *touched = true;
            }
        }
    }

    /// A rollback or promotion: production serves the deployment `to` from
    /// `occurred_at` on, recorded as a row of its own ("isRollback"), so that the
    /// latest production row is what serves.
    pub(super) fn apply_rollback(&mut self, event: &Rollback, at: NaiveDateTime) -> Effect {
        let Some(app_id) = self
            .apps
            .iter()
            .find(|app| app.vercel_project_id.as_deref() == Some(event.project_id.as_str()))
            .map(|app| app.id)
        else {
            return Effect::new(
                Outcome::Unmatched,
                format!(
                    "no app is registered for Vercel project {}",
                    event.project_id
                ),
            );
        };
        let target =
            self.position_min(|row| row.vercel_deployment_id.as_deref() == Some(&event.to));
        if let Some(t) = target
            && self.rows[t].app_id != app_id
        {
            return Effect::new(
                Outcome::Unmatched,
                format!("Vercel deployment {} is recorded for another app", event.to),
            );
        }
        if event.promoted {
            let Some(t) = target else {
                return Effect::new(
                    Outcome::Unmatched,
                    format!(
                        "promoted Vercel deployment {} has not arrived yet; kept for re-processing",
                        event.to
                    ),
                );
            };
            if self.rows[t].status != Status::Ready {
                return Effect::new(
                    Outcome::Ignored,
                    format!(
                        "Vercel deployment {} is not ready; once ready it is the newest",
                        event.to
                    ),
                )
                .on(app_id, self.rows[t].id);
            }
            if self.rows[t].environment != Environment::Production {
                return Effect::new(
                    Outcome::Ignored,
                    format!(
                        "Vercel deployment {} is a staging deployment; its production deployment reports itself",
                        event.to
                    ),
                )
                .on(app_id, self.rows[t].id);
            }
            let serving = self.serving_before(app_id, event.occurred_at);
            let already = serving
                .is_none_or(|s| s == t || self.rows[s].rollback_to.as_deref() == Some(&event.to));
            if already {
                return Effect::new(
                    Outcome::Ignored,
                    format!("Vercel deployment {} already serves production", event.to),
                )
                .on(app_id, self.rows[t].id);
            }
        }
        if let Some(r) = self.position_min(|row| {
            row.app_id == app_id
                && row.rollback_to.as_deref() == Some(&event.to)
                && row.created_at == event.occurred_at
        }) {
            return Effect::new(Outcome::Duplicate, "rollback already recorded")
                .on(app_id, self.rows[r].id);
        }
        let r = self.create(deployments::Model {
            is_rollback: true,
            rollback_to: Some(event.to.clone()),
            finished_at: Some(event.occurred_at),
            ..deployments::Model::new(
                app_id,
                Environment::Production,
                Status::Ready,
                event.occurred_at,
                at,
            )
        });
        let id = self.rows[r].id;
        match target {
            Some(t) => {
                self.fill_rollbacks(t, at);
                Effect::new(
                    Outcome::Applied,
                    format!("production rolled back to Vercel deployment {}", event.to),
                )
                .on(app_id, id)
            }
            None => Effect::new(
                Outcome::Unmatched,
                format!(
                    "production rolled back to Vercel deployment {}, not seen yet: its commit and URL fill in when it arrives",
                    event.to
                ),
            )
            .on(app_id, id),
        }
    }

    /// The ready production row of an app serving just before `at`: the newest by
    /// "createdAt" (rollback rows included).
    fn serving_before(&self, app_id: Uuid, at: NaiveDateTime) -> Option<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                row.app_id == app_id
                    && row.environment == Environment::Production
                    && row.status == Status::Ready
                    && row.created_at < at
            })
            .max_by_key(|(_, row)| (row.created_at, row.id))
            .map(|(i, _)| i)
    }
}
