//! From a verified request to a small normalised event. Provider JSON is typed in
//! `github` and `vercel`; everything past this module sees only [`Event`].

pub mod github;
pub mod signature;
pub mod vercel;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::deployments::state::Status;
use crate::store::deployments::{Environment, FailureReason};

/// Longest values the ledger's and deployments' columns hold.
pub const MAX_DELIVERY_ID: usize = 255;
pub const MAX_EVENT_TYPE: usize = 100;
pub const MAX_NAME: usize = 255;
pub const MAX_VERCEL_ID: usize = 64;
pub const MAX_URL: usize = 255;
pub const MAX_LOGS_URL: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Github,
    Vercel,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Github, Provider::Vercel];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Vercel => "vercel",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Provider::Github),
            "vercel" => Ok(Provider::Vercel),
            other => Err(format!(
                "unknown provider {other:?}: expected github or vercel"
            )),
        }
    }
}

/// A verified delivery, ready for ingest: what the ledger records, and what it means.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub provider: Provider,
    pub delivery_id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub event: Event,
    /// How it reached us; the ledger's `source`.
    pub source: Source,
}

/// How a delivery reached us: a signed request, or fetched from GitHub's API with a
/// token (backfill).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Webhook,
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Backfill => "backfill",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Push(Push),
    Vercel(VercelDeployment),
    /// A GitHub `deployment` or `deployment_status` (posted by Vercel's GitHub app and
    /// other CD tools).
    GithubDeployment(GithubDeployment),
    /// Vercel `deployment.rollback`, or `deployment.promoted` (a rollback when the
    /// promoted deployment is older than the one serving).
    Rollback(Rollback),
    /// Kept and answered, but it maps to no deployment change (ping, tags, previews,
    /// types not handled yet).
    Ignored(String),
    /// Signed, so kept raw for re-processing, but not understood.
    Malformed(Malformed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub reason: String,
    /// The body came in a content type the provider's parser does not read.
    pub unsupported_media_type: bool,
}

impl Malformed {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unsupported_media_type: false,
        }
    }
}

/// The request's content type, reduced to the ones a provider may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Form,
    Other,
}

impl ContentType {
    /// Reads a `Content-Type` header value, ignoring parameters such as `charset`.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return ContentType::Other;
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            ContentType::Json
        } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            ContentType::Form
        } else {
            ContentType::Other
        }
    }

    /// The content type of a body whose header was not kept (the ledger, a fixture
    /// file): GitHub's form deliveries carry the JSON in a `payload=` field, and
    /// everything else is read as JSON.
    pub fn sniff(body: &[u8]) -> Self {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{' | b'[')) {
            return ContentType::Json;
        }
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
            Ok(fields) if fields.iter().any(|(k, _)| k == "payload") => ContentType::Form,
            _ => ContentType::Json,
        }
    }
}

impl Delivery {
    /// Rebuilds a delivery from what the ledger kept, to apply it again: the provider,
    /// its delivery id and event type, and the raw body (content type sniffed).
    pub fn from_stored(
        provider: Provider,
        delivery_id: &str,
        event_type: &str,
        body: Vec<u8>,
    ) -> Self {
        match provider {
            Provider::Github => github::delivery(
                Some(event_type),
                Some(delivery_id),
                ContentType::sniff(&body),
                body,
            ),
            Provider::Vercel => vercel::delivery(ContentType::Json, body),
        }
    }
}

/// A push to a branch, already filtered: tags, deletions and zero SHAs are [`Event::Ignored`].
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// `owner/name` as GitHub spelled it.
    pub repository: String,
    pub branch: String,
    pub commit_sha: String,
    pub pushed_at: NaiveDateTime,
    /// `pusher.name`, else `sender.login`.
    pub pushed_by: Option<String>,
    /// `head_commit.timestamp`, else the push time: when the change was made.
    pub committed_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VercelDeployment {
    pub status: Status,
    /// Why a deployment failed, when the event says.
    pub failure: Option<FailureReason>,
    /// The failure as Vercel states it, when it does.
    pub error_message: Option<String>,
    /// `meta.githubCommitAuthorLogin`.
    pub triggered_by: Option<String>,
    /// `links.deployment`, else `deployment.inspectorUrl`.
    pub logs_url: Option<String>,
    pub deployment_id: String,
    /// `https://` + `deployment.url`, when the event carries one.
    pub url: Option<String>,
    pub project_id: Option<String>,
    /// `meta.githubOrg/meta.githubRepo`, when both are present.
    pub repository: Option<String>,
    pub target: Target,
    pub commit_sha: Option<String>,
    pub commit_ref: Option<String>,
    pub occurred_at: NaiveDateTime,
}

/// A GitHub deployment's state, from a `deployment` (pending) or `deployment_status`.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubDeployment {
    /// `owner/name` as GitHub spelled it.
    pub repository: String,
    pub environment: Environment,
    /// What follows the environment in names such as `Production – web`: the Vercel
    /// project, used to tell the apps of a monorepo apart.
    pub environment_suffix: Option<String>,
    /// `deployment.id`.
    pub deployment_id: i64,
    pub commit_sha: String,
    pub status: Status,
    pub failure: Option<FailureReason>,
    /// The status's `description`, for a failure.
    pub description: Option<String>,
    /// `environment_url`, else `target_url`, for a success (`""` is no URL).
    pub url: Option<String>,
    /// `log_url`, else `target_url`.
    pub logs_url: Option<String>,
    /// `deployment_status.creator.login`, else `deployment.creator.login`.
    pub triggered_by: Option<String>,
    pub occurred_at: NaiveDateTime,
}

/// Production now serves an earlier deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub project_id: String,
    /// The Vercel deployment production serves now.
    pub to: String,
    /// `deployment.promoted`: a rollback only if `to` is older than the deployment
    /// serving when it happened; `deployment.rollback` always is one.
    pub promoted: bool,
    pub occurred_at: NaiveDateTime,
}

/// Where Vercel says a deployment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Production,
    /// `target: "staging"` or a custom environment.
    Staging,
    /// `target: null`: decided by the commit's branch against the app's branches.
    ByBranch,
}

/// The delivery id to key a delivery by when the provider gave none: the body's hash,
/// so a resend of the same bytes is still recognised as a duplicate.
pub fn body_digest_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// A timestamp as providers send it: integer seconds or milliseconds since the
/// epoch, or an RFC 3339 string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Timestamp {
    Number(i64),
    Text(String),
}

impl Timestamp {
    /// `millis` says how to read a number. A value that cannot be a time is `None`.
    pub(crate) fn to_naive(&self, millis: bool) -> Option<NaiveDateTime> {
        let utc = match self {
            Timestamp::Number(n) if millis => DateTime::<Utc>::from_timestamp_millis(*n),
            Timestamp::Number(n) => DateTime::<Utc>::from_timestamp(*n, 0),
            Timestamp::Text(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }?;
        // Both databases order and compare these; outside four-digit years after the
        // epoch, Postgres refuses some and SQLite's text form sorts wrongly.
        (1970..=9999).contains(&utc.year()).then(|| utc.naive_utc())
    }
}

/// Rejects values that would not fit their column, or that Postgres text cannot hold
/// (NUL), before they reach the database.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        Err(format!("{field} is longer than {max} bytes"))
    } else if value.contains('\0') {
        Err(format!("{field} contains a NUL character"))
    } else {
        Ok(())
    }
}

/// Cuts a string to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A value stored whatever it holds (a delivery's event type, a ledger reason), made
/// storable: NUL, which Postgres text refuses, becomes U+FFFD.
pub fn storable(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// A commit SHA as git writes it: 40 (SHA-1) or 64 (SHA-256) hex digits.
pub(crate) fn is_commit_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The current time, truncated to microseconds as both databases store it.
pub fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    DateTime::<Utc>::from_timestamp_micros(now.and_utc().timestamp_micros())
        .map(|t| t.naive_utc())
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_nul_or_over_the_limit_are_refused() {
        assert!(check_len("f", "abc", 3).is_ok());
        assert!(check_len("f", "abcd", 3).is_err());
        assert!(check_len("f", "a\0c", 3).is_err());
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn timestamps_outside_four_digit_years_after_the_epoch_are_not_times() {
        assert!(Timestamp::Number(0).to_naive(true).is_some());
        assert!(Timestamp::Number(-1).to_naive(false).is_none());
        assert!(
            Timestamp::Number(-8_000_000_000_000_000)
                .to_naive(true)
                .is_none()
        );
        assert!(Timestamp::Number(253_402_300_800).to_naive(false).is_none());
        assert!(
            Timestamp::Text("+10000-01-01T00:00:00Z".into())
                .to_naive(true)
                .is_none()
        );
        assert!(Timestamp::Number(253_402_300_799).to_naive(false).is_some());
    }
}
