//! The pages' session: with `API_TOKEN` set, `/login` takes the token in a form and
//! sets a cookie; every page then needs that cookie. Without it, pages are open, as
//! the API's GET routes are.
//!
//! The cookie holds an HMAC of the token, not the token: it proves the token was
//! typed, it stops working when the token is changed, and the token itself is never
//! stored by the browser or put in a URL.

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, KeyInit, Mac};
use maud::html;
use serde::Deserialize;
use sha2::Sha256;

use super::view::{self, Chrome};
use super::{DASHBOARD, LIVE, LOGIN};
use crate::http::{AppState, constant_time_eq};

pub const COOKIE: &str = "dt_session";
/// How long a login lasts: long enough for a wall screen left open for weeks.
const MAX_AGE_SECS: u32 = 30 * 24 * 3600;

/// The cookie value that the token `token` opens.
fn session_value(token: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"deploy-tracker page session v1");
    hex::encode(mac.finalize().into_bytes())
}

fn presented_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request may see the pages: always without `API_TOKEN`; with it, the
/// session cookie, or the API's `Authorization: Bearer` header (for scripts and
/// benchmarks).
pub fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.api_token else {
        return true;
    };
    let cookie = presented_session(headers).is_some_and(|presented| {
        constant_time_eq(presented.as_bytes(), session_value(token).as_bytes())
    });
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| constant_time_eq(presented.as_bytes(), token.as_bytes()));
    cookie || bearer
}

/// Whether the page should offer to log out: only a cookie session can.
pub fn has_session(state: &AppState, headers: &HeaderMap) -> bool {
    state.api_token.is_some() && presented_session(headers).is_some() && signed_in(state, headers)
}

/// The pages' guard: without a valid session a page redirects to the login form
/// (which brings the reader back), and the live poll answers 401 so the script
/// reloads into that form.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if signed_in(&state, request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path() == LIVE {
        return (StatusCode::UNAUTHORIZED, "sign in at /login").into_response();
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let query = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
    Redirect::to(&format!("{LOGIN}?{query}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct FormQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only a path on this server, so the form cannot be made to send a reader elsewhere.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => DASHBOARD,
    }
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        section.panel.login {
            h1 { "Sign in" }
            p { "This server has an " code { "API_TOKEN" } ". Enter it to see the pages." }
            @if let Some(error) = error {
                p.error-message role="alert" { (error) }
            }
            form method="post" action=(LOGIN) {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, view::layout("Sign in", Chrome::plain(), body)).into_response()
}

pub async fn form(State(state): State<AppState>, Query(query): Query<FormQuery>) -> Response {
    let next = local_path(query.next.as_deref());
    if state.api_token.is_none() {
        return Redirect::to(next).into_response();
    }
    login_page(StatusCode::OK, next, None)
}

pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &state.api_token else {
        return Redirect::to(DASHBOARD).into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            DASHBOARD,
            Some("The form was not understood; enter the token again."),
        );
    };
    let next = local_path(form.next.as_deref());
    if !constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        tracing::info!("page sign-in refused: wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That token is not the server's API_TOKEN."),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Strict{}",
        session_value(token),
        secure(&headers)
    );
    with_cookie(Redirect::to(next), &cookie)
}

pub async fn logout(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure(&headers)
    );
    with_cookie(Redirect::to(LOGIN), &cookie)
}

/// `Secure` when a TLS-terminating proxy says the request came over https.
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            local_path(Some("/apps/web?status=failed")),
            "/apps/web?status=failed"
        );
        for outside in ["https://evil.example", "//evil.example", "/\\evil", "apps"] {
            assert_eq!(local_path(Some(outside)), "/", "{outside}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_is_not_the_token() {
        let mut headers = HeaderMap::new();
        let value = session_value("secret");
        assert_ne!(value, "secret");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={value}; b=2")).unwrap(),
        );
        assert_eq!(presented_session(&headers), Some(value.as_str()));
        assert_ne!(session_value("secret"), session_value("other"));
    }
}
