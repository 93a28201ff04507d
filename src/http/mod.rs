//! The HTTP interface: routes only. Each handler moves data between HTTP and the core.

pub mod api;
pub mod error;
pub mod ops;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

impl Limits {
    /// How long a webhook body may take to arrive: three quarters of the request
    /// timeout, so a slow sender gets its 408 before the request as a whole times out.
    pub fn body_deadline(&self) -> Duration {
        self.request_timeout * 3 / 4
    }
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
///
/// Every route is registered through `routes!`, which takes its method and path from
/// the handler's `#[utoipa::path]`: the router and `/openapi.json` come from the same
/// list. Do not add routes with a bare `.route(…)`; a test compares the two. The one
/// exception is the HTML pages of [`crate::web`], listed in [`crate::web::PATHS`].
pub fn app(state: AppState) -> Router {
    // Installed before the first request so nothing counted early is lost.
    ops::prometheus();
    let webhooks = OpenApiRouter::new()
        .routes(routes!(webhooks::github))
        .routes(routes!(webhooks::vercel))
        .layer(DefaultBodyLimit::max(state.max_body_bytes));
    let api = OpenApiRouter::new()
        .routes(routes!(api::list_apps, api::create_app))
        .routes(routes!(api::get_app))
        .routes(routes!(api::list_app_deployments, api::create_deployment))
        .routes(routes!(api::latest_app_deployment))
        .routes(routes!(api::list_deployments))
        .routes(routes!(api::get_deployment))
        .routes(routes!(api::list_deliveries))
        .routes(routes!(api::get_delivery))
        .routes(routes!(api::stats))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    // The HTML pages are not API: a plain router, under the same limits, left out of
    // the document.
    let pages = OpenApiRouter::from(crate::web::router(state.clone()));
    let limits = state.limits;
    let guarded = OpenApiRouter::new()
        .merge(webhooks)
        .merge(api)
        .merge(pages)
        .layer(
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
    // Health, metrics and the document stay outside the limits so probes still
    // answer under load.
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(guarded)
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let doc = OpenApiJson(Arc::from(
        doc.to_json().expect("the OpenAPI document serialises"),
    ));
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn(ops::track))
        .with_state(state)
        .layer(Extension(doc))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "deploy-tracker",
        description = "An exact history of staging and production deployments, from verified GitHub and Vercel webhooks.\n\n\
With `API_TOKEN` set on the server, every `/api` route needs `Authorization: Bearer <token>`; \
without it, GET routes are open and writes answer 403. Lists are newest first as `{items, nextCursor}`: \
pass `nextCursor` back as `cursor` for the next page. Errors are `{error, message}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "webhooks", description = "Signed deliveries from GitHub and Vercel (no token)"),
        (name = "apps", description = "The app registry"),
        (name = "deployments", description = "Deployment history"),
        (name = "deliveries", description = "The ledger of every verified delivery"),
        (name = "stats", description = "DORA figures computed from the history"),
        (name = "service", description = "Health and this document (no token)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The document, serialised once when the router is built.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// This OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
async fn openapi_json(Extension(OpenApiJson(doc)): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
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
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
