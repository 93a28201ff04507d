//! The one error type of the HTTP edge: a status, a stable code and a sentence.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::{DbErr, RuntimeErr, sqlx};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("the database is unavailable; try again")]
    Unavailable(#[source] DbErr),
    #[error("internal error")]
    Internal(#[source] DbErr),
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The body of every error answer, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, …
    error: String,
    /// A sentence for people.
    message: String,
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_configured"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// A database error is "unavailable" (the sender should retry) unless the database
/// answered and refused the statement, which is a bug of ours.
impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        if refused_by_database(&err) {
            ApiError::Internal(err)
        } else {
            ApiError::Unavailable(err)
        }
    }
}

/// Whether the database answered and refused the statement, as opposed to being
/// unreachable, going away or too busy, which a retry can outlast.
fn refused_by_database(err: &DbErr) -> bool {
    if err.sql_err().is_some() {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    let sqlx::Error::Database(db) = e.as_ref() else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // Connection exceptions, insufficient resources, operator intervention (a
        // shutdown), and serialization failures or deadlocks.
        !["08", "53", "57", "40"]
            .iter()
            .any(|class| code.starts_with(class))
    } else {
        // SQLite's extended codes; the primary one is the low byte. Busy, locked,
        // I/O errors, a full disk and an unopenable file are passing conditions.
        let primary = code.parse::<u32>().unwrap_or_default() & 0xff;
        ![5, 6, 10, 13, 14].contains(&primary)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            // Logged once here; the client sees only the opaque sentence.
            ApiError::Internal(err) => tracing::error!(error = %err, "request failed"),
            ApiError::Unavailable(err) => tracing::warn!(error = %err, "database unavailable"),
            _ => tracing::debug!(%status, message = %self, "request refused"),
        }
        (
            status,
            Json(json!({ "error": code, "message": self.to_string() })),
        )
            .into_response()
    }
}
