//! Live updates by polling: `GET /live?since=<mark>` answers whether a delivery was
//! committed since the page was rendered.
//!
//! Polling rather than server-sent events from the ingest path: several replicas
//! share one database, and a stream fed by one process's ingest would miss what the
//! others commit; the ledger in the database sees every commit. A poll is two index
//! reads, and it needs nothing to reconnect after a restart.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use sea_orm::{ConnectionTrait, DbErr};
use serde::Deserialize;
use serde_json::json;

use super::PageResult;
use crate::http::AppState;
use crate::store::deliveries;

/// How often the script asks, in milliseconds: a delivery shows within about this
/// plus one page fetch (the promise is 5 s).
pub const POLL_MS: u64 = 2000;

/// The ledger's current mark, opaque to the script: the newest row's receipt time
/// and id, and how many rows arrived within a minute of it.
pub async fn mark<C: ConnectionTrait>(db: &C) -> Result<String, DbErr> {
    Ok(match deliveries::recent_mark(db).await? {
        Some((at, id, recent)) => format!(
            "{}-{}-{recent}",
            at.and_utc().timestamp_micros(),
            id.simple()
        ),
        None => "empty".to_owned(),
    })
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    since: Option<String>,
}

pub async fn poll(State(state): State<AppState>, Query(query): Query<LiveQuery>) -> PageResult {
    let mark = mark(state.ingest.db()).await?;
    let changed = query.since.as_deref() != Some(mark.as_str());
    Ok(Json(json!({ "mark": mark, "changed": changed, "pollMs": POLL_MS })).into_response())
}
