//! `POST /webhooks/github` and `POST /webhooks/vercel`: extract, verify, parse,
//! ingest, answer. The answer is sent only after the ledger row has committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use std::time::Instant;

use super::error::{ApiError, ErrorBody, Result};
use super::{AppState, ops};
use crate::deployments::ingest::Outcome;
use crate::webhooks::signature::{self, Secrets, SignatureError};
use crate::webhooks::{ContentType, Delivery, Event, Provider, github, vercel};

/// What a webhook route answers, for the OpenAPI document. A receipt is
/// `{id, outcome, reason, appId, deploymentId}`; an error is `{error, message}`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum WebhookResponses {
    /// Applied, a duplicate delivery id, or ping: a receipt.
    #[response(status = 200)]
    Applied,
    /// Kept, but ignored, unmatched or stale: a receipt.
    #[response(status = 202)]
    Accepted,
    /// Signed but malformed (kept raw with outcome `malformed`).
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// Missing or wrong signature, or more than one signature header (nothing stored).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The body did not arrive within three quarters of REQUEST_TIMEOUT_MS.
    #[response(status = 408)]
    SlowBody(ErrorBody),
    /// Body over MAX_BODY_BYTES.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Unsupported content type.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// No secret configured, the database is unavailable, or the server is overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A GitHub delivery, signed with `X-Hub-Signature-256`.
#[utoipa::path(
    post, path = "/webhooks/github", tag = "webhooks",
    params(
        ("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body>"),
        ("X-GitHub-Event" = String, Header),
        ("X-GitHub-Delivery" = String, Header),
    ),
    request_body(content = String, content_type = "application/json", description = "the raw push payload (form-encoded `payload=` too)"),
    responses(WebhookResponses),
)]
pub async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    TimedBody(body): TimedBody,
) -> Result<Response> {
    let body = verified(&state, Provider::Github, &headers, body)?;
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = github::delivery(
        header("x-github-event"),
        header("x-github-delivery"),
        content_type(&headers),
        body.to_vec(),
    );
    ingest(&state, delivery).await
}

/// A Vercel delivery, signed with `x-vercel-signature`.
#[utoipa::path(
    post, path = "/webhooks/vercel", tag = "webhooks",
    params(("x-vercel-signature" = String, Header, description = "hex HMAC-SHA1 of the raw body")),
    request_body(content = String, content_type = "application/json", description = "the raw event envelope {id, type, createdAt, payload}"),
    responses(WebhookResponses),
)]
pub async fn vercel(
    State(state): State<AppState>,
    headers: HeaderMap,
    TimedBody(body): TimedBody,
) -> Result<Response> {
    let body = verified(&state, Provider::Vercel, &headers, body)?;
    let delivery = vercel::delivery(content_type(&headers), body.to_vec());
    ingest(&state, delivery).await
}

/// The body, once it is within the size limit and its signature verifies over the
/// raw bytes; a refusal is counted by reason.
fn verified(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: Result<Bytes>,
) -> Result<Bytes> {
    type Verify = fn(&Secrets, Option<&[u8]>, &[u8]) -> std::result::Result<(), SignatureError>;
    let (secrets, header, verify): (_, _, Verify) = match provider {
        Provider::Github => (
            &state.github_secrets,
            "x-hub-signature-256",
            signature::verify_github,
        ),
        Provider::Vercel => (
            &state.vercel_secrets,
            "x-vercel-signature",
            signature::verify_vercel,
        ),
    };
    body.and_then(|body| {
        verify(secrets, signature_header(headers, header)?, &body)
            .map(|()| body)
            .map_err(rejected)
    })
    .inspect_err(|e| refused(provider.as_str(), e))
}

fn content_type(headers: &HeaderMap) -> ContentType {
    ContentType::from_header(headers.get("content-type").map(|v| v.as_bytes()))
}

/// The signature header, when at most one was sent. A provider sends one; with
/// several, checking any single one would leave the others unexamined.
fn signature_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first.map(|v| v.as_bytes())),
        (_, Some(_)) => Err(ApiError::Unauthorized(
            "more than one signature header was sent",
        )),
    }
}

/// The raw body, read within [`super::Limits::body_deadline`]. A sender whose body
/// trickles in is answered 408 (its own doing), before the whole request's timeout
/// would answer 503 (ours).
pub struct TimedBody(Result<Bytes>);

impl FromRequest<AppState> for TimedBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        request: Request,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        let deadline = state.limits.body_deadline();
        let body = match tokio::time::timeout(deadline, Bytes::from_request(request, state)).await {
            Ok(read) => read_body(read, state.max_body_bytes),
            Err(_) => Err(ApiError::BodyTimeout(deadline)),
        };
        Ok(TimedBody(body))
    }
}

fn read_body(body: std::result::Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("the body could not be read: {rejection}"))
        }
    })
}

/// Counts a delivery refused before or during ingest, by why.
fn refused(provider: &'static str, err: &ApiError) {
    let reason = match err {
        ApiError::Unauthorized(_) => "signature",
        ApiError::PayloadTooLarge(_) => "too_large",
        ApiError::BodyTimeout(_) => "slow_body",
        ApiError::NotConfigured(_) => "not_configured",
        ApiError::BadRequest(_) => "malformed",
        ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
        ApiError::Unavailable(_) | ApiError::Internal(_) => "database",
        ApiError::Forbidden(_) | ApiError::NotFound(_) | ApiError::Conflict(_) => "other",
    };
    ops::count_delivery(provider, "rejected", reason);
}

fn rejected(err: SignatureError) -> ApiError {
    match err {
        SignatureError::NotConfigured => ApiError::NotConfigured(
            "no webhook secret is configured for this provider; unsigned deliveries are never accepted",
        ),
        SignatureError::Missing => ApiError::Unauthorized("the signature header is missing"),
        SignatureError::Malformed => {
            ApiError::Unauthorized("the signature header is not of the form the provider sends")
        }
        SignatureError::Mismatch => ApiError::Unauthorized("the signature does not match the body"),
    }
}

async fn ingest(state: &AppState, delivery: Delivery) -> Result<Response> {
    let span = tracing::info_span!(
        "delivery",
        provider = delivery.provider.as_str(),
        delivery_id = %delivery.delivery_id,
        event_type = %delivery.event_type,
        app_id = tracing::field::Empty,
        deployment_id = tracing::field::Empty,
    );
    let provider = delivery.provider.as_str();
    async move {
        let started = Instant::now();
        let receipt = state
            .ingest
            .ingest(&delivery)
            .await
            .map_err(ApiError::from)
            .inspect_err(|e| refused(provider, e))?;
        metrics::histogram!("deploy_tracker_ingest_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let span = tracing::Span::current();
        if let Some(id) = receipt.app_id {
            span.record("app_id", tracing::field::display(id));
        }
        if let Some(id) = receipt.deployment_id {
            span.record("deployment_id", tracing::field::display(id));
        }
        tracing::info!(outcome = receipt.outcome.as_str(), reason = %receipt.reason, "delivery recorded");
        match receipt.outcome {
            Outcome::Malformed => ops::count_delivery(provider, "rejected", "malformed"),
            outcome => ops::count_delivery(provider, outcome.as_str(), ""),
        }
        let status = match (&delivery.event, receipt.outcome) {
            (Event::Malformed(m), Outcome::Malformed) if m.unsupported_media_type => {
                return Err(ApiError::UnsupportedMediaType(receipt.reason));
            }
            (_, Outcome::Malformed) => return Err(ApiError::BadRequest(receipt.reason)),
            (_, Outcome::Applied | Outcome::Duplicate) => StatusCode::OK,
            (_, Outcome::Ignored) if delivery.event_type == "ping" => StatusCode::OK,
            (_, Outcome::Ignored | Outcome::Unmatched | Outcome::Stale) => StatusCode::ACCEPTED,
        };
        Ok((status, Json(receipt)).into_response())
    }
    .instrument(span)
    .await
}
