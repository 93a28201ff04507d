//! The HTML pages: a dashboard, one page per app and one per delivery, rendered by the
//! server with maud; the login form; the embedded CSS and script; the live-update poll.
//!
//! The pages are read-only views over the queries in [`crate::store`] and
//! [`crate::stats`]. They are not part of the API, so they are mounted with a plain
//! `Router` and are not in `/openapi.json`; [`PATHS`] lists them.

mod app_page;
mod assets;
mod auth;
mod charts;
mod dashboard;
mod delivery;
mod figures;
mod live;
mod view;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use sea_orm::DbErr;

use crate::http::AppState;
use crate::http::error::ApiError;

pub const DASHBOARD: &str = "/";
pub const APP: &str = "/apps/{appId}";
pub const DELIVERY: &str = "/deliveries/{id}";
pub const LIVE: &str = "/live";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
pub const STYLE: &str = "/assets/style.css";
pub const SCRIPT: &str = "/assets/live.js";

/// Every path the pages' router serves: none of them is API.
pub const PATHS: [&str; 8] = [DASHBOARD, APP, DELIVERY, LIVE, LOGIN, LOGOUT, STYLE, SCRIPT];

/// The pages, each behind the session cookie when `API_TOKEN` is set; the login form
/// and the assets (which the form needs) are open.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route(DASHBOARD, get(dashboard::show))
        .route(APP, get(app_page::show))
        .route(DELIVERY, get(delivery::show))
        .route(LIVE, get(live::poll))
        .route(LOGOUT, post(auth::logout))
        .route_layer(middleware::from_fn_with_state(state, auth::require));
    Router::new()
        .merge(pages)
        .route(LOGIN, get(auth::form).post(auth::login))
        .route(STYLE, get(assets::style))
        .route(SCRIPT, get(assets::script))
        // The only body a page takes is the login form's.
        .layer(DefaultBodyLimit::max(4096))
        .layer(middleware::map_response(page_headers))
}

/// Scripts and styles only from this server, no framing, no referrer to the
/// deployments' URLs; pages are never cached (assets set their own).
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Why a page could not be shown; rendered as a small HTML page with the status.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            // The API's classification and its one log line; the page shows only the
            // opaque sentence.
            PageError::Db(err) => {
                let api = ApiError::from(err);
                match &api {
                    ApiError::Internal(err) => tracing::error!(error = %err, "page failed"),
                    other => tracing::warn!(error = %other, "database unavailable"),
                }
                (api.status(), api.to_string())
            }
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            section.panel {
                h1 { (status.as_u16()) " " (title) }
                p.error-message { (message) }
                p { a href=(DASHBOARD) { "Back to the dashboard" } }
            }
        };
        (status, view::layout(title, view::Chrome::plain(), body)).into_response()
    }
}

type PageResult<T = Response> = Result<T, PageError>;
