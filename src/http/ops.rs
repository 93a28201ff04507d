//! Operations routes: liveness, readiness and Prometheus metrics, plus the request
//! metrics middleware.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::AppState;
use crate::deployments::state::Status;
use crate::store::deployments::{self, Environment};

/// How long `/readyz` waits for the database before calling it unavailable.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency_buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several apps in one test
        // process); the handle still renders this one's metrics.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        "deploy_tracker_deliveries_total",
        "Webhook deliveries by provider and outcome (rejected ones by reason)"
    );
    metrics::describe_histogram!(
        "deploy_tracker_ingest_duration_seconds",
        "Time to record and apply one verified delivery, commit included"
    );
    metrics::describe_counter!(
        "deploy_tracker_http_requests_total",
        "HTTP requests by route, method and status"
    );
    metrics::describe_histogram!(
        "deploy_tracker_http_request_duration_seconds",
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "deploy_tracker_swept_total",
        "Stuck deployments the sweeper looked at, by result (timeout, ready, error, canceled, still_building, moved_meanwhile)"
    );
    metrics::describe_counter!(
        "deploy_tracker_deployments_finished_total",
        "Deployments ingest made ready or failed, by environment, status and failure reason (rollbacks not counted)"
    );
}

/// Liveness: the process answers (no I/O).
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = String, example = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers within a second.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, body = String, example = "ready"),
    (status = 503, body = String, description = "the database is unreachable or slow"),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, state.ingest.db().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "not ready: database ping failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: database ping timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database did not answer in time",
            )
                .into_response()
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, content_type = "text/plain", body = String),
))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = prometheus().render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    pool_gauge(&state, &mut text);
    let counted = [
        (
            "deploy_tracker_deployments",
            "Deployments currently in each status",
            "status",
            status_counts(&state).await,
        ),
        (
            "deploy_tracker_deployments_in_progress",
            "Deployments pending or building, by environment",
            "environment",
            in_progress_counts(&state).await,
        ),
    ];
    for (name, help, label, counts) in counted {
        match counts {
            Ok(rows) => gauge(&mut text, name, help, label, rows),
            Err(err) => tracing::warn!(error = %err, metric = name, "unavailable for /metrics"),
        }
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Appends one gauge family, one sample per label value. The scrape-time gauges are
/// written into this response rather than set on the process-wide recorder: set
/// there, a scrape answering at the same moment from another database (another app
/// in the same process, as in the tests) could show that database's counts.
fn gauge(text: &mut String, name: &str, help: &str, label: &str, rows: Vec<(&str, f64)>) {
    use std::fmt::Write as _;
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (value, n) in rows {
        let _ = writeln!(text, "{name}{{{label}=\"{value}\"}} {n}");
    }
    text.push('\n');
}

fn pool_gauge(state: &AppState, text: &mut String) {
    let db = state.ingest.db();
    let (size, idle) = match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return,
    };
    let idle = idle as f64;
    gauge(
        text,
        "deploy_tracker_db_pool_connections",
        "Database pool connections by state (in_use, idle)",
        "state",
        vec![("idle", idle), ("in_use", f64::from(size) - idle)],
    );
}

/// One grouped count over the status index; every status is reported, zero included.
async fn status_counts(state: &AppState) -> Result<Vec<(&'static str, f64)>, sea_orm::DbErr> {
    let counts: Vec<(Status, i64)> = deployments::Entity::find()
        .select_only()
        .column(deployments::Column::Status)
        .column_as(Expr::col(deployments::Column::Id).count(), "n")
        .group_by(deployments::Column::Status)
        .into_tuple()
        .all(state.ingest.db())
        .await?;
    Ok(Status::ALL
        .into_iter()
        .map(|status| (status.as_str(), count_of(&counts, &status)))
        .collect())
}

/// Pending and building rows per environment, counted at scrape time: a walk of the
/// status index over the few unfinished rows. Kept by ingest instead, the gauge would
/// be wrong after a restart, with several replicas, and for rows other paths finish
/// (the API, the CLI, the sweeper).
async fn in_progress_counts(state: &AppState) -> Result<Vec<(&'static str, f64)>, sea_orm::DbErr> {
    let counts: Vec<(Environment, i64)> = deployments::Entity::find()
        .select_only()
        .column(deployments::Column::Environment)
        .column_as(Expr::col(deployments::Column::Id).count(), "n")
        .filter(deployments::Column::Status.is_in([Status::Pending, Status::Building]))
        .group_by(deployments::Column::Environment)
        .into_tuple()
        .all(state.ingest.db())
        .await?;
    Ok([Environment::Staging, Environment::Production]
        .into_iter()
        .map(|environment| (environment.as_str(), count_of(&counts, &environment)))
        .collect())
}

fn count_of<K: PartialEq>(counts: &[(K, i64)], key: &K) -> f64 {
    counts
        .iter()
        .find(|(k, _)| k == key)
        .map_or(0.0, |(_, n)| *n as f64)
}

/// Counts and times every request by its route template (never the raw path, so
/// ids do not explode the label set).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "deploy_tracker_http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status,
    )
    .increment(1);
    metrics::histogram!("deploy_tracker_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts one delivery by provider and outcome; refused ones carry the reason.
pub fn count_delivery(provider: &'static str, outcome: &'static str, reason: &'static str) {
    metrics::counter!(
        "deploy_tracker_deliveries_total",
        "provider" => provider,
        "outcome" => outcome,
        "reason" => reason,
    )
    .increment(1);
}
