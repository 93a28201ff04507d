//! `POST /webhooks/github` and `POST /webhooks/vercel`: extract, verify, parse,
//! ingest, answer. The answer is sent only after the ledger row has committed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, ErrorBody, Result};
use crate::deployments::ingest::Outcome;
use crate::webhooks::signature::{self, SignatureError};
use crate::webhooks::{ContentType, Delivery, Event, github, vercel};

/// A GitHub delivery, signed with `X-Hub-Signature-256`.
#[utoipa::path(
    post, path = "/webhooks/github", tag = "webhooks",
    params(
        ("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body>"),
        ("X-GitHub-Event" = String, Header),
        ("X-GitHub-Delivery" = String, Header),
    ),
    request_body(content = String, content_type = "application/json", description = "the raw push payload (form-encoded `payload=` too)"),
    responses(
        (status = 200, description = "applied, a duplicate delivery id, or ping: a receipt {id, outcome, reason, deploymentId}"),
        (status = 202, description = "kept, but ignored, unmatched or stale: a receipt"),
        (status = 400, description = "signed but malformed (kept raw)", body = ErrorBody),
        (status = 401, description = "missing or wrong signature (nothing stored)", body = ErrorBody),
        (status = 413, description = "body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "unsupported content type", body = ErrorBody),
        (status = 503, description = "no secret configured, or the database is unavailable", body = ErrorBody),
    ),
)]
pub async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = read_body(body, state.max_body_bytes)?;
    signature::verify_github(
        &state.github_secrets,
        headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        &body,
    )
    .map_err(rejected)?;
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
    responses(
        (status = 200, description = "applied, a duplicate delivery id, or ping: a receipt {id, outcome, reason, deploymentId}"),
        (status = 202, description = "kept, but ignored, unmatched or stale: a receipt"),
        (status = 400, description = "signed but malformed (kept raw)", body = ErrorBody),
        (status = 401, description = "missing or wrong signature (nothing stored)", body = ErrorBody),
        (status = 413, description = "body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "unsupported content type", body = ErrorBody),
        (status = 503, description = "no secret configured, or the database is unavailable", body = ErrorBody),
    ),
)]
pub async fn vercel(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = read_body(body, state.max_body_bytes)?;
    signature::verify_vercel(
        &state.vercel_secrets,
        headers.get("x-vercel-signature").map(|v| v.as_bytes()),
        &body,
    )
    .map_err(rejected)?;
    let delivery = vercel::delivery(content_type(&headers), body.to_vec());
    ingest(&state, delivery).await
}

fn content_type(headers: &HeaderMap) -> ContentType {
    ContentType::from_header(headers.get("content-type").map(|v| v.as_bytes()))
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
        deployment_id = tracing::field::Empty,
    );
    async move {
        let receipt = state.ingest.ingest(&delivery).await?;
        if let Some(id) = receipt.deployment_id {
            tracing::Span::current().record("deployment_id", tracing::field::display(id));
        }
        tracing::info!(outcome = receipt.outcome.as_str(), reason = %receipt.reason, "delivery recorded");
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
