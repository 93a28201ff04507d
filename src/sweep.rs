//! Stuck deployments (DESIGN section 6): a `pending` or `building` row that no event
//! has touched for `STUCK_AFTER` is settled from Vercel's API when it can be, and
//! otherwise fails with reason `timeout`. [`run_periodically`] is `serve`'s task,
//! [`run_once`] the `deploy-tracker sweep` command and the tests' entry point.
//!
//! Safe beside deliveries and other replicas: the sweep reads its candidates and asks
//! Vercel outside any transaction, then applies each change in a short transaction
//! of its own that locks the row's app as ingest does (so a delivery for that app
//! waits for it, or it for the delivery) and changes the row only if its status and
//! "updatedAt" are still what the sweep read. A delivery that moved the row
//! meanwhile wins, and of two replicas sweeping the same row one changes it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDateTime;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::clients::vercel::{self, ReadyState, VercelClient, VercelError};
use crate::deployments::ingest;
use crate::store::deployments::{self, Environment, FailureReason, Status};

pub const DEFAULT_STUCK_AFTER: &str = "30m";

/// How often `serve` sweeps, give or take a quarter (so replicas spread out).
pub const EVERY: Duration = Duration::from_secs(60);

/// The longest `STUCK_AFTER` accepted.
const MAX_STUCK_AFTER: Duration = Duration::from_secs(366 * 24 * 3600);

/// Candidates read per statement.
const PAGE: u64 = 200;

/// Column limits of the values a sweep writes.
const MAX_URL: usize = 255;
const MAX_ERROR_MESSAGE: usize = 255;
const MAX_BUILD_LOGS: usize = 2048;

/// `STUCK_AFTER`: how long a deployment may go without an event, or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StuckAfter {
    Off,
    After {
        duration: Duration,
        /// As configured (`30m`), for the failed row's "errorMessage".
        given: String,
    },
}

impl StuckAfter {
    pub fn duration(&self) -> Option<Duration> {
        match self {
            StuckAfter::Off => None,
            StuckAfter::After { duration, .. } => Some(*duration),
        }
    }

    /// The "errorMessage" of a timed-out row: `no event for 30m`.
    pub fn timeout_message(&self) -> String {
        format!("no event for {self}")
    }
}

impl fmt::Display for StuckAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StuckAfter::Off => f.write_str("off"),
            StuckAfter::After { given, .. } => f.write_str(given),
        }
    }
}

impl FromStr for StuckAfter {
    type Err = String;

    /// `off`, or whole numbers with units `s`, `m`, `h`, `d`: `90s`, `30m`, `1h30m`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        if given.eq_ignore_ascii_case("off") {
            return Ok(StuckAfter::Off);
        }
        let invalid = || {
            format!(
                "{s:?} is not a duration: give whole numbers with a unit (90s, 30m, 2h, 1d, 1h30m), or off to disable"
            )
        };
        let mut total: u64 = 0;
        let mut rest = given;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (number, after) = rest.split_at(digits);
            let unit_len = after.chars().next().map_or(0, char::len_utf8);
            let (unit, after) = after.split_at(unit_len);
            let seconds = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(invalid()),
            };
            let n: u64 = number.parse().map_err(|_| invalid())?;
            total = n
                .checked_mul(seconds)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| too_long(s))?;
            rest = after;
        }
        if given.is_empty() {
            return Err(invalid());
        }
        let duration = Duration::from_secs(total);
        if duration.is_zero() {
            return Err(format!(
                "STUCK_AFTER {s:?} is zero: every deployment would time out at once; use off to disable"
            ));
        }
        if duration > MAX_STUCK_AFTER {
            return Err(too_long(s));
        }
        Ok(StuckAfter::After {
            duration,
            given: given.to_owned(),
        })
    }
}

fn too_long(s: &str) -> String {
    format!("STUCK_AFTER {s:?} is longer than a year; use off to disable")
}

/// What a sweep needs: how long is stuck, and a Vercel client when `VERCEL_TOKEN` is set.
#[derive(Debug, Clone)]
pub struct Sweeper {
    pub stuck_after: StuckAfter,
    pub vercel: Option<VercelClient>,
}

/// How a swept row was settled; also the `result` label of
/// `deploy_tracker_swept_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Settled {
    /// No event in time, and Vercel (if asked) could not say otherwise.
    Timeout,
    /// Vercel says READY.
    Ready,
    /// Vercel says ERROR.
    Error,
    /// Vercel says CANCELED.
    Canceled,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Timeout => "timeout",
            Settled::Ready => "ready",
            Settled::Error => "error",
            Settled::Canceled => "canceled",
        }
    }
}

/// One row a sweep changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub deployment_id: Uuid,
    pub app_id: Uuid,
    /// The app's name.
    pub app: String,
    pub environment: Environment,
    pub from: Status,
    pub to: Status,
    pub settled: Settled,
    /// Why, in a sentence: `no event for 30m`, `Vercel reports READY`, ….
    pub why: String,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows changed, oldest "updatedAt" first.
    pub changes: Vec<Change>,
    /// Stuck rows Vercel reports as still queued or building: left as they are.
    pub still_building: Vec<Uuid>,
    /// Stuck rows a delivery or another replica changed between the sweep's read and
    /// its write: left to them.
    pub moved_meanwhile: Vec<Uuid>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.still_building.is_empty() && self.moved_meanwhile.is_empty()
    }

    /// `3 changed (2 timeout, 1 ready), 1 still building at Vercel, 0 moved meanwhile`.
    pub fn summary(&self) -> String {
        let mut counts = Vec::new();
        for settled in [
            Settled::Timeout,
            Settled::Ready,
            Settled::Error,
            Settled::Canceled,
        ] {
            let n = self.changes.iter().filter(|c| c.settled == settled).count();
            if n > 0 {
                counts.push(format!("{n} {}", settled.as_str()));
            }
        }
        let detail = if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        };
        format!(
            "{} changed{detail}, {} still building at Vercel, {} moved meanwhile",
            self.changes.len(),
            self.still_building.len(),
            self.moved_meanwhile.len()
        )
    }
}

/// What the sweep decided for one row, before it writes.
enum Verdict {
    /// Vercel says it is still on its way.
    Keep(String),
    Settle(Settlement),
}

/// The new state of a settled row. Fields that may already be known are only filled
/// when missing ("deploymentUrl", "buildLogs", "startedAt").
struct Settlement {
    settled: Settled,
    why: String,
    status: Status,
    failure_reason: Option<FailureReason>,
    error_message: Option<String>,
    finished_at: NaiveDateTime,
    build_duration_ms: Option<i64>,
    deployment_url: Option<String>,
    build_logs: Option<String>,
    started_at: Option<NaiveDateTime>,
}

impl Settlement {
    fn timeout(stuck_after: &StuckAfter, why: String, now: NaiveDateTime) -> Self {
        Settlement {
            settled: Settled::Timeout,
            why,
            status: Status::Failed,
            failure_reason: Some(FailureReason::Timeout),
            error_message: Some(stuck_after.timeout_message()),
            finished_at: now,
            build_duration_ms: None,
            deployment_url: None,
            build_logs: None,
            started_at: None,
        }
    }
}

/// Sweeps once at `now`: every stuck row is looked up (with a Vercel client and a
/// Vercel id) and settled or timed out. Returns what it changed.
pub async fn run_once(
    db: &DatabaseConnection,
    sweeper: &Sweeper,
    now: NaiveDateTime,
) -> Result<Report, DbErr> {
    let mut report = Report::default();
    let Some(duration) = sweeper.stuck_after.duration() else {
        return Ok(report);
    };
    let cutoff = chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| DbErr::Custom(format!("STUCK_AFTER {duration:?} reaches before year 0")))?;
    let mut after: Option<(NaiveDateTime, Uuid)> = None;
    loop {
        let page = candidates_query(cutoff, after).all(db).await?;
        for row in &page {
            match verdict(row, sweeper, now).await {
                Verdict::Keep(why) => {
                    tracing::debug!(deployment_id = %row.id, %why, "stuck, but still building at Vercel");
                    count("still_building");
                    report.still_building.push(row.id);
                }
                Verdict::Settle(settlement) => match apply(db, row, &settlement, now).await? {
                    Some(change) => {
                        tracing::info!(
                            deployment_id = %change.deployment_id,
                            app = %change.app,
                            environment = change.environment.as_str(),
                            from = change.from.as_str(),
                            to = change.to.as_str(),
                            result = change.settled.as_str(),
                            why = %change.why,
                            "swept a stuck deployment"
                        );
                        count(change.settled.as_str());
                        report.changes.push(change);
                    }
                    None => {
                        tracing::debug!(deployment_id = %row.id, "moved since the sweep read it; left alone");
                        count("moved_meanwhile");
                        report.moved_meanwhile.push(row.id);
                    }
                },
            }
        }
        match page.last() {
            Some(last) if page.len() as u64 == PAGE => after = Some((last.updated_at, last.id)),
            _ => return Ok(report),
        }
    }
}

fn count(result: &'static str) {
    metrics::counter!("deploy_tracker_swept_total", "result" => result).increment(1);
}

/// The stuck rows, oldest "updatedAt" first, after the keyset `after`: a page of the
/// rows in flight, read through an index of status (idx_deployments_status_updated,
/// which holds only those, or the seed's, as the planner picks). Its status list is
/// written out, not bound: SQLite uses a partial index only for a query that names
/// the index's own condition. Public for the plan test.
pub fn candidates_query(
    cutoff: NaiveDateTime,
    after: Option<(NaiveDateTime, Uuid)>,
) -> Select<deployments::Entity> {
    use deployments::Column;
    let mut select = deployments::Entity::find()
        .filter(Expr::cust(IN_FLIGHT))
        .filter(Column::UpdatedAt.lt(cutoff));
    if let Some((at, id)) = after {
        select = select.filter(
            Condition::any()
                .add(Column::UpdatedAt.gt(at))
                .add(Column::UpdatedAt.eq(at).and(Column::Id.gt(id))),
        );
    }
    select
        .order_by_asc(Column::UpdatedAt)
        .order_by_asc(Column::Id)
        .limit(PAGE)
}

/// The condition of idx_deployments_status_updated (migrations 12 and 15), word for word.
const IN_FLIGHT: &str = "status IN ('pending', 'building')";

/// Decides a stuck row's fate, asking Vercel first when it can.
async fn verdict(row: &deployments::Model, sweeper: &Sweeper, now: NaiveDateTime) -> Verdict {
    let no_event = sweeper.stuck_after.timeout_message();
    let timeout =
        |why: String| Verdict::Settle(Settlement::timeout(&sweeper.stuck_after, why, now));
    let (Some(client), Some(vercel_id)) = (&sweeper.vercel, &row.vercel_deployment_id) else {
        return timeout(no_event);
    };
    match client.deployment(vercel_id).await {
        Ok(deployment) => from_vercel(deployment, sweeper, now),
        Err(VercelError::NotFound(_)) => timeout(format!("{no_event}; unknown to Vercel (404)")),
        Err(err) => {
            tracing::warn!(deployment_id = %row.id, vercel_id, %err, "Vercel look-up failed; timing out");
            timeout(format!("{no_event}; {err}"))
        }
    }
}

/// What Vercel's answer means for the row.
fn from_vercel(d: vercel::Deployment, sweeper: &Sweeper, now: NaiveDateTime) -> Verdict {
    let time = |ms: Option<i64>| ms.and_then(vercel::time);
    let started_at = time(d.building_at);
    let duration = |end: Option<i64>| match (d.building_at, end) {
        (Some(start), Some(end)) if end >= start => Some(end - start),
        _ => None,
    };
    let build_logs = d
        .inspector_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| bounded(u, MAX_BUILD_LOGS));
    let state = d.ready_state.as_str().to_owned();
    let settle = |settled, status, failure_reason, error_message, end: Option<i64>| {
        Verdict::Settle(Settlement {
            settled,
            why: format!("Vercel reports {state}"),
            status,
            failure_reason,
            error_message,
            finished_at: time(end).unwrap_or(now),
            build_duration_ms: duration(end),
            deployment_url: None,
            build_logs: build_logs.clone(),
            started_at,
        })
    };
    match &d.ready_state {
        ReadyState::Queued | ReadyState::Initializing | ReadyState::Building => {
            Verdict::Keep(format!("Vercel reports {state}"))
        }
        ReadyState::Ready => {
            let mut verdict = settle(Settled::Ready, Status::Ready, None, None, d.ready);
            if let Verdict::Settle(s) = &mut verdict {
                s.deployment_url = d
                    .url
                    .as_deref()
                    .filter(|u| !u.is_empty())
                    .map(|u| bounded(&https(u), MAX_URL));
            }
            verdict
        }
        ReadyState::Error => {
            let message = d
                .error_message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .unwrap_or("error");
            settle(
                Settled::Error,
                Status::Failed,
                Some(FailureReason::Error),
                Some(bounded(message, MAX_ERROR_MESSAGE)),
                d.build_error_at.or(d.ready),
            )
        }
        ReadyState::Canceled => settle(
            Settled::Canceled,
            Status::Failed,
            Some(FailureReason::Canceled),
            Some("canceled".to_owned()),
            d.canceled_at,
        ),
        ReadyState::Other(other) => Verdict::Settle(Settlement::timeout(
            &sweeper.stuck_after,
            format!(
                "{}; Vercel reports readyState {:?}, which this version does not know",
                sweeper.stuck_after.timeout_message(),
                crate::webhooks::truncate(other.clone(), 40)
            ),
            now,
        )),
    }
}

/// A hostname as a URL: `https://` + host, unless it already has a scheme.
fn https(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    }
}

/// A provider's text as a column of `max` bytes holds it.
fn bounded(value: &str, max: usize) -> String {
    crate::webhooks::truncate(crate::webhooks::storable(value), max)
}

/// Applies one settlement in a transaction of its own; `None` when the row is no
/// longer what the sweep read (or its app is gone).
async fn apply(
    db: &DatabaseConnection,
    row: &deployments::Model,
    s: &Settlement,
    now: NaiveDateTime,
) -> Result<Option<Change>, DbErr> {
    use deployments::Column;
    let txn = ingest::begin(db).await?;
    // The app's row lock, as a locked ingest batch takes it, with its version raised
    // on Postgres: a delivery for this app is either committed before this reads on,
    // or waits until this commits, or (read unlocked before) writes nothing and is
    // done again. One app per transaction, so no lock order to keep. A lock waited
    // for rather than SKIP LOCKED: a delivery holds it for one batch (milliseconds),
    // and skipping would leave a busy app's stuck rows for a later sweep.
    let app = ingest::lock_app(&txn, row.app_id).await?;
    let Some(app) = app else {
        txn.rollback().await?;
        return Ok(None);
    };
    let mut update = deployments::Entity::update_many()
        .col_expr(Column::Status, Expr::val(s.status.as_str()))
        .col_expr(
            Column::FailureReason,
            Expr::val(s.failure_reason.map(|r| r.as_str().to_owned())),
        )
        .col_expr(Column::FinishedAt, Expr::val(s.finished_at))
        .col_expr(Column::UpdatedAt, Expr::val(now))
        .col_expr(Column::StartedAt, fill(Column::StartedAt, s.started_at))
        .col_expr(
            Column::DeploymentUrl,
            fill(Column::DeploymentUrl, s.deployment_url.clone()),
        )
        .col_expr(
            Column::BuildLogs,
            fill(Column::BuildLogs, s.build_logs.clone()),
        );
    if let Some(message) = &s.error_message {
        update = update.col_expr(Column::ErrorMessage, Expr::val(message.as_str()));
    }
    if let Some(ms) = s.build_duration_ms {
        update = update.col_expr(Column::BuildDurationMs, Expr::val(ms));
    }
    let result = update
        .filter(Column::Id.eq(row.id))
        .filter(Column::Status.eq(row.status))
        .filter(Column::UpdatedAt.eq(row.updated_at))
        .exec(&txn)
        .await?;
    if result.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    if s.status == Status::Ready {
        // It joins its environment's chain of ready rows.
        ingest::link_previous(&txn, &[(row.app_id, row.environment, row.created_at)]).await?;
    }
    txn.commit().await?;
    Ok(Some(Change {
        deployment_id: row.id,
        app_id: row.app_id,
        app: app.name,
        environment: row.environment,
        from: row.status,
        to: s.status,
        settled: s.settled,
        why: s.why.clone(),
    }))
}

/// `column = COALESCE(column, value)`: a value already known stays.
fn fill(column: deployments::Column, value: impl Into<sea_orm::Value>) -> Expr {
    Func::coalesce([Expr::col(column), Expr::val(value)]).into()
}

/// `serve`'s sweeper: about every [`EVERY`], with jitter, until `stop` turns true
/// (or its sender is dropped). A sweep under way when it does is abandoned: each of
/// its changes is a transaction of its own, so none is left half-written.
pub async fn run_periodically(
    db: DatabaseConnection,
    sweeper: Sweeper,
    mut stop: watch::Receiver<bool>,
) {
    if sweeper.stuck_after.duration().is_none() {
        tracing::info!("STUCK_AFTER is off: stuck deployments are not swept");
        return;
    }
    tracing::info!(
        stuck_after = %sweeper.stuck_after,
        vercel_lookups = sweeper.vercel.is_some(),
        "sweeping stuck deployments about once a minute"
    );
    // The first sweep within a minute of start, so replicas started together spread out.
    let mut wait = jitter(Duration::ZERO, EVERY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tokio::select! {
            result = run_once(&db, &sweeper, crate::webhooks::now()) => match result {
                Ok(report) if !report.is_empty() => tracing::info!(summary = %report.summary(), "swept"),
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "the sweep failed; trying again at the next"),
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        wait = jitter(EVERY * 3 / 4, EVERY * 5 / 4);
    }
}

/// A random duration in [min, max).
fn jitter(min: Duration, max: Duration) -> Duration {
    let fraction = (Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    min + (max - min).mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(s: &str) -> Result<StuckAfter, String> {
        s.parse()
    }

    #[test]
    fn durations_parse_with_units_and_keep_their_spelling() {
        for (given, seconds) in [
            ("30m", 1800),
            ("90s", 90),
            ("2h", 7200),
            ("1d", 86_400),
            ("1h30m", 5400),
            (" 45m ", 2700),
        ] {
            let parsed = after(given).unwrap();
            assert_eq!(
                parsed.duration(),
                Some(Duration::from_secs(seconds)),
                "{given}"
            );
            assert_eq!(
                parsed.timeout_message(),
                format!("no event for {}", given.trim())
            );
        }
        assert_eq!(after("off"), Ok(StuckAfter::Off));
        assert_eq!(after("OFF"), Ok(StuckAfter::Off));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in ["", "30", "m", "30x", "1.5h", "-5m", "30 m", "5m3", "½h"] {
            let err = after(bad).unwrap_err();
            assert!(
                err.contains("is not a duration") && err.contains("off"),
                "{bad}: {err}"
            );
        }
        assert!(after("0m").unwrap_err().contains("zero"));
        assert!(after("400d").unwrap_err().contains("longer than a year"));
        // Overflows u64 seconds: refused, not wrapped.
        assert!(
            after("5124095576030432h")
                .unwrap_err()
                .contains("longer than a year")
        );
    }

    #[test]
    fn jitter_stays_in_its_range() {
        for _ in 0..1000 {
            let d = jitter(EVERY * 3 / 4, EVERY * 5 / 4);
            assert!(d >= EVERY * 3 / 4 && d < EVERY * 5 / 4, "{d:?}");
        }
    }

    #[test]
    fn hostnames_become_https_urls() {
        assert_eq!(https("app-1.vercel.app"), "https://app-1.vercel.app");
        assert_eq!(
            https("https://app-1.vercel.app"),
            "https://app-1.vercel.app"
        );
        assert_eq!(bounded(&"é".repeat(200), MAX_URL).len(), 254);
    }
}
