//! The HTTP interface: routes only. Each handler moves data between HTTP and the core.

pub mod api;
pub mod error;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::deployments::ingest::Ingest;
use crate::webhooks::signature::Secrets;
use error::ApiError;

/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub github_secrets: Arc<Secrets>,
    pub vercel_secrets: Arc<Secrets>,
    pub api_token: Option<Arc<str>>,
    pub max_body_bytes: usize,
}

/// The whole service as one `Router`, for `serve` and for tests alike.
///
/// Every route is registered through `routes!`, which takes its method and path from
/// the handler's `#[utoipa::path]`: the router and `/openapi.json` come from the same
/// list. Do not add routes with a bare `.route(…)`; a test compares the two.
pub fn app(state: AppState) -> Router {
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
        .layer(DefaultBodyLimit::max(64 * 1024))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(webhooks)
        .merge(api)
        .routes(routes!(healthz))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let doc = OpenApiJson(Arc::from(
        doc.to_json().expect("the OpenAPI document serialises"),
    ));
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
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

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = String, example = "ok")))]
async fn healthz() -> &'static str {
    "ok"
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
