//! DORA figures: one query module shared by the API, the page and the CLI.
//!
//! [`compute`] asks the database for every figure of a [`Window`] in one statement
//! (DESIGN section 7). The rules, beyond the design's sentences:
//! - Rows are counted by "createdAt" in `[since, until)`.
//! - Rows with "isRollback" are rollbacks, not deploys: they count in no figure,
//!   except that a ready rollback is a row that can restore service (below).
//! - `failed` counts failed rows whose "failureReason" is `error`, and failed rows
//!   with no reason: those predate the column, when `failed` only ever meant a
//!   build or deploy error. `canceled` and `timedOut` are the other two reasons and
//!   stay out of the change failure rate.
//! - Build durations: every row of the window with a "buildDurationMs".
//! - Time to restore: for each `failed` row of the window with a "finishedAt", the
//!   first ready row (deploy or rollback, in or after the window) of the same app and
//!   environment finished after it; failures not yet restored are left out.
//! - Lead time: ready rows of the window with both "committedAt" and "finishedAt".
//! - Percentiles are nearest-rank: the value at rank ⌈p·n⌉ of the n sorted values.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::deployments::plan::Snapshot;
use crate::store::deployments::{Environment, FailureReason, Status};

/// Which deployments the figures are over: rows created in `[since, until)`,
/// optionally of one app and one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub app_id: Option<Uuid>,
    pub environment: Option<Environment>,
    pub since: NaiveDateTime,
    pub until: NaiveDateTime,
}

/// The window when none is given: the last 30 days.
pub const DEFAULT_DAYS: i64 = 30;

impl Window {
    /// Every app and environment, the `days` before `now`.
    pub fn last_days(days: i64, now: NaiveDateTime) -> Self {
        Self {
            app_id: None,
            environment: None,
            since: now - chrono::Duration::days(days),
            until: now,
        }
    }

    /// The window's length in days, fractions included.
    pub fn days(&self) -> f64 {
        (self.until - self.since).num_milliseconds() as f64 / 86_400_000.0
    }

    /// `since` and `until` as given (either may be absent: `until` defaults to
    /// `now`, `since` to [`DEFAULT_DAYS`] before `until`), refused when empty.
    pub fn between(
        since: Option<NaiveDateTime>,
        until: Option<NaiveDateTime>,
        now: NaiveDateTime,
    ) -> Result<Self, String> {
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - chrono::Duration::days(DEFAULT_DAYS));
        if since >= until {
            return Err(format!(
                "since ({}) must be before until ({})",
                rfc3339(since),
                rfc3339(until)
            ));
        }
        Ok(Self {
            app_id: None,
            environment: None,
            since,
            until,
        })
    }
}

/// An RFC 3339 time (any offset) as the UTC the database stores.
pub fn parse_time(name: &str, value: &str) -> Result<NaiveDateTime, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc).naive_utc())
        .map_err(|e| {
            // In a query string an unescaped `+` of an offset arrives as a space.
            let hint = if value.contains(' ') {
                "; in a URL write + as %2B"
            } else {
                ""
            };
            format!(
                "{name} must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got {value:?} ({e}{hint})"
            )
        })
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The DORA figures of a window.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Deployments created in the window, whatever their status (rollbacks excluded).
    pub deployments: u64,
    pub ready: u64,
    /// Failed with `failureReason` `error` (or none, on rows older than the column).
    pub failed: u64,
    pub canceled: u64,
    #[serde(rename = "timedOut")]
    pub timed_out: u64,
    /// `ready` ÷ the window's length in days.
    pub deployments_per_day: f64,
    /// `failed` ÷ (`ready` + `failed`); null when both are 0.
    pub change_failure_rate: Option<f64>,
    pub build_duration_ms: Percentiles,
    /// Mean time from a failure's `finishedAt` to the `finishedAt` of the next ready
    /// row of the same app and environment; null when no failure was restored.
    pub mean_time_to_restore_ms: Option<i64>,
    /// From the pushed head commit's time to `finishedAt`, over ready rows.
    pub lead_time_ms: LeadTime,
}

/// Nearest-rank percentiles; null when there is no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct Percentiles {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct LeadTime {
    pub p50: Option<i64>,
}

/// Every figure of the window, from one statement.
pub async fn compute(db: &impl ConnectionTrait, window: &Window) -> Result<Stats, DbErr> {
    let statement = statement(db.get_database_backend(), window);
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the stats statement returned no row".into()))?;
    let count = |col: &str| -> Result<u64, DbErr> {
        Ok(row.try_get::<Option<i64>>("", col)?.unwrap_or(0).max(0) as u64)
    };
    let value = |col: &str| row.try_get::<Option<i64>>("", col);
    let (ready, failed) = (count("ready")?, count("failed")?);
    Ok(Stats {
        deployments: count("deployments")?,
        ready,
        failed,
        canceled: count("canceled")?,
        timed_out: count("timed_out")?,
        // ready × a day ÷ the window, in milliseconds: exact for whole days.
        deployments_per_day: ready as f64 * 86_400_000.0
            / (window.until - window.since).num_milliseconds().max(1) as f64,
        change_failure_rate: (ready + failed > 0).then(|| failed as f64 / (ready + failed) as f64),
        build_duration_ms: Percentiles {
            p50: value("build_p50")?,
            p90: value("build_p90")?,
        },
        mean_time_to_restore_ms: value("restore_mean_ms")?,
        lead_time_ms: LeadTime {
            p50: value("lead_p50")?,
        },
    })
}

/// The ids of the rows a batch's snapshot holds that are already ready or failed.
pub fn final_rows(snapshot: &Snapshot) -> HashSet<Uuid> {
    snapshot
        .rows()
        .filter(|row| row.status.is_final())
        .map(|row| row.id)
        .collect()
}

/// Counts, once its batch has committed, each row the batch made ready or failed:
/// `deploy_tracker_deployments_finished_total{environment, status, reason}`, the
/// Prometheus side of these figures (rollbacks left out, as here; a failure with
/// no reason counts as `error`).
pub fn count_finished(snapshot: &Snapshot, final_before: &HashSet<Uuid>) {
    for row in snapshot.touched() {
        if !row.status.is_final() || row.is_rollback || final_before.contains(&row.id) {
            continue;
        }
        let reason = match (row.status, row.failure_reason) {
            (Status::Failed, reason) => reason.unwrap_or(FailureReason::Error).as_str(),
            _ => "",
        };
        metrics::counter!(
            "deploy_tracker_deployments_finished_total",
            "environment" => row.environment.as_str(),
            "status" => row.status.as_str(),
            "reason" => reason,
        )
        .increment(1);
    }
}

/// Milliseconds from `earlier` to `later`, as a BIGINT, on each backend.
fn ms_between(backend: DbBackend, later: &str, earlier: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("CAST(round(EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000) AS BIGINT)")
        }
        _ => format!(
            "CAST(round((unixepoch({later}, 'subsec') - unixepoch({earlier}, 'subsec')) * 1000) AS INTEGER)"
        ),
    }
}

/// The one statement behind [`compute`], for the backend (also printed by the
/// benchmark to EXPLAIN it). Columns: `deployments`, `ready`, `failed`, `canceled`,
/// `timed_out`, `build_p50`, `build_p90`, `lead_p50`, `restore_mean_ms`.
///
/// The window's rows are read once, through ("appId", "createdAt"), ("appId",
/// environment, "createdAt") or ("createdAt"); each failure's restoring row is one
/// probe of idx_deployments_ready_finished. Postgres aggregates them in one pass
/// (`percentile_disc` is nearest-rank). SQLite has no percentile aggregate: the rows
/// are materialised once and each percentile is the row numbered ⌈p·n⌉ in order,
/// `(n + 1) / 2` and `(9n + 9) / 10` in integers.
pub fn statement(backend: DbBackend, window: &Window) -> Statement {
    let placeholder = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    };
    let mut values: Vec<Value> = vec![window.since.into(), window.until.into()];
    let mut filter = format!(
        r#""createdAt" >= {} AND "createdAt" < {} AND "isRollback" = false"#,
        placeholder(1),
        placeholder(2)
    );
    if let Some(app_id) = window.app_id {
        values.push(app_id.into());
        filter += &format!(r#" AND "appId" = {}"#, placeholder(values.len()));
    }
    if let Some(environment) = window.environment {
        values.push(environment.as_str().into());
        filter += &format!(" AND environment = {}", placeholder(values.len()));
    }
    let sql = match backend {
        DbBackend::Postgres => postgres_sql(&filter),
        _ => sqlite_sql(&filter),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The first ready row (deploy or rollback) of `f`'s app and environment finished
/// after `f`: what restored it.
const RESTORED_AT: &str = r#"(SELECT min(r."finishedAt") FROM deployments AS r
            WHERE r."appId" = f."appId" AND r.environment = f.environment AND r.status = 'ready'
              AND r."finishedAt" > f."finishedAt")"#;

/// A change failure: failed with `error`, or with no reason (rows older than it).
const CHANGE_FAILURE: &str =
    r#"f.status = 'failed' AND (f."failureReason" = 'error' OR f."failureReason" IS NULL)"#;

fn postgres_sql(filter: &str) -> String {
    let backend = DbBackend::Postgres;
    let lead_ms = ms_between(backend, r#"f."finishedAt""#, r#"f."committedAt""#);
    let restore_ms = ms_between(backend, RESTORED_AT, r#"f."finishedAt""#);
    format!(
        r#"SELECT count(*) AS deployments,
       count(*) FILTER (WHERE f.status = 'ready') AS ready,
       count(*) FILTER (WHERE {CHANGE_FAILURE}) AS failed,
       count(*) FILTER (WHERE f.status = 'failed' AND f."failureReason" = 'canceled') AS canceled,
       count(*) FILTER (WHERE f.status = 'failed' AND f."failureReason" = 'timeout') AS timed_out,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY f."buildDurationMs") AS build_p50,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY f."buildDurationMs") AS build_p90,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY CASE WHEN f.status = 'ready' THEN {lead_ms} END) AS lead_p50,
       CAST(round(avg(CASE WHEN {CHANGE_FAILURE} AND f."finishedAt" IS NOT NULL
                      THEN {restore_ms} END)) AS BIGINT) AS restore_mean_ms
FROM deployments AS f
WHERE {filter}"#
    )
}

fn sqlite_sql(filter: &str) -> String {
    let backend = DbBackend::Sqlite;
    let lead_ms = ms_between(backend, r#"f."finishedAt""#, r#"f."committedAt""#);
    let restore_ms = ms_between(backend, RESTORED_AT, r#"f."finishedAt""#);
    format!(
        r#"WITH w AS MATERIALIZED (
    SELECT f.status,
           f."failureReason" AS reason,
           f."buildDurationMs" AS build_ms,
           CASE WHEN f.status = 'ready' THEN {lead_ms} END AS lead_ms,
           CASE WHEN {CHANGE_FAILURE} AND f."finishedAt" IS NOT NULL THEN {restore_ms} END AS restore_ms
    FROM deployments AS f
    WHERE {filter}
),
build_times AS MATERIALIZED (
    SELECT build_ms AS v, row_number() OVER (ORDER BY build_ms) AS rn, count(*) OVER () AS n
    FROM w WHERE build_ms IS NOT NULL
),
lead_times AS MATERIALIZED (
    SELECT lead_ms AS v, row_number() OVER (ORDER BY lead_ms) AS rn, count(*) OVER () AS n
    FROM w WHERE lead_ms IS NOT NULL
)
SELECT count(*) AS deployments,
       count(CASE WHEN status = 'ready' THEN 1 END) AS ready,
       count(CASE WHEN status = 'failed' AND (reason = 'error' OR reason IS NULL) THEN 1 END) AS failed,
       count(CASE WHEN status = 'failed' AND reason = 'canceled' THEN 1 END) AS canceled,
       count(CASE WHEN status = 'failed' AND reason = 'timeout' THEN 1 END) AS timed_out,
       (SELECT v FROM build_times WHERE rn = (n + 1) / 2) AS build_p50,
       (SELECT v FROM build_times WHERE rn = (9 * n + 9) / 10) AS build_p90,
       (SELECT v FROM lead_times WHERE rn = (n + 1) / 2) AS lead_p50,
       CAST(round(avg(restore_ms)) AS INTEGER) AS restore_mean_ms
FROM w"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_reversed_window_is_refused() {
        let t = parse_time("since", "2026-12-01T00:00:00Z").unwrap();
        assert!(Window::between(Some(t), Some(t), t).is_err());
        let w = Window::between(None, None, t).unwrap();
        assert_eq!(w.days(), 30.0);
    }

    #[test]
    fn times_with_an_offset_are_stored_as_utc() {
        let t = parse_time("until", "2026-12-01T01:30:00+01:30").unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T00:00:00Z");
        assert!(parse_time("until", "yesterday").is_err());
    }
}
