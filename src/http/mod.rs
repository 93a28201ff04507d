//! The HTTP interface: routes only. Each handler moves data between HTTP and the core.

pub mod api;
pub mod error;
pub mod ops;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

use crate::deployments::ingest::Ingest;
use crate::webhooks::signature::Secrets;
use error::ApiError;

/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Shorter than GitHub's 10 s, so a slow request is answered 503 (and retried by
/// Vercel) before the sender gives up on it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
pub const DEFAULT_MAX_CONCURRENCY: usize = 512;

#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub github_secrets: Arc<Secrets>,
    pub vercel_secrets: Arc<Secrets>,
    pub api_token: Option<Arc<str>>,
    pub max_body_bytes: usize,
    pub limits: Limits,
}

/// How much work the server takes on at once, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    /// Requests in flight beyond this are refused with 503 at once, not queued.
    pub max_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// The whole service as one `Router`, for `serve` and for tests alike.
pub fn app(state: AppState) -> Router {
    // Installed before the first request so nothing counted early is lost.
    ops::prometheus();
    let webhooks = Router::new()
        .route("/webhooks/github", post(webhooks::github))
        .route("/webhooks/vercel", post(webhooks::vercel))
        .layer(DefaultBodyLimit::max(state.max_body_bytes));
    let api = Router::new()
        .route("/api/apps", get(api::list_apps).post(api::create_app))
        .route("/api/apps/{app_id}", get(api::get_app))
        .route(
            "/api/apps/{app_id}/deployments",
            get(api::list_app_deployments),
        )
        .layer(DefaultBodyLimit::max(64 * 1024))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let limits = state.limits;
    let guarded = Router::new().merge(webhooks).merge(api).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                overloaded()
            }))
            .load_shed()
            .concurrency_limit(limits.max_concurrency)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                limits.request_timeout,
            )),
    );
    // Health and metrics stay outside the limits so probes still answer under load.
    Router::new()
        .merge(guarded)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn(ops::track))
        .with_state(state)
}

fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "error": "overloaded",
            "message": "the server is at its concurrency limit; try again",
        })),
    )
        .into_response()
}

/// `/api` auth: with `API_TOKEN` set every route needs the bearer token; without it
/// reads are open and writes are refused.
async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.api_token {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match presented {
                Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {}
                Some(_) => return Err(ApiError::Unauthorized("the bearer token is not valid")),
                None => {
                    return Err(ApiError::Unauthorized(
                        "this route needs an Authorization: Bearer <API_TOKEN> header",
                    ));
                }
            }
        }
        None if !matches!(*request.method(), Method::GET | Method::HEAD) => {
            return Err(ApiError::Forbidden(
                "writes are disabled: set API_TOKEN on the server and send Authorization: Bearer <token>",
            ));
        }
        None => {}
    }
    Ok(next.run(request).await)
}

/// Compares without an early exit, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
