//! Vercel's REST API, the one call the sweeper needs: `GET /v13/deployments/{id}`
//! ("Get a deployment by ID or URL"), with a bearer token and an optional team.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Deserializer};

pub const DEFAULT_API_URL: &str = "https://api.vercel.com";

/// How long one look-up may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error body an error message quotes.
const MAX_QUOTED: usize = 200;

/// Where and as whom to call the API.
#[derive(Clone)]
pub struct VercelConfig {
    pub token: String,
    /// `https://api.vercel.com` unless pointed elsewhere (a proxy, a test server).
    pub api_url: String,
    /// Sent as `?teamId=` when the deployments belong to a team.
    pub team_id: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for VercelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VercelConfig")
            .field("token", &"***")
            .field("api_url", &self.api_url)
            .field("team_id", &self.team_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A client for Vercel's REST API. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct VercelClient {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <token>`, marked sensitive so that no debug output shows it.
    authorization: HeaderValue,
    team_id: Option<String>,
}

impl fmt::Debug for VercelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VercelClient")
            .field("base", &self.base.as_str())
            .field("team_id", &self.team_id)
            .field("token", &"***")
            .finish()
    }
}

/// What went wrong with a call. No variant carries the token.
#[derive(Debug, thiserror::Error)]
pub enum VercelError {
    #[error("{0}")]
    Config(String),
    /// 404: Vercel knows no such deployment (or not for this token and team).
    #[error("Vercel knows no deployment {0:?} (404)")]
    NotFound(String),
    /// 401/403: the token is wrong, expired, or not allowed to see the deployment.
    #[error(
        "Vercel refused the token ({status}): check VERCEL_TOKEN and, for a team's deployments, VERCEL_TEAM_ID{}",
        quoted(message)
    )]
    Unauthorized { status: u16, message: String },
    /// Any other answer that is not a deployment.
    #[error("Vercel answered {status}{}", quoted(message))]
    Status { status: u16, message: String },
    /// Not reached, or no answer in time.
    #[error("Vercel could not be reached: {0}")]
    Network(String),
    /// A 200 whose body is not a deployment.
    #[error("Vercel's answer is not a deployment: {0}")]
    Body(String),
}

fn quoted(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// A deployment as `GET /v13/deployments/{id}` describes it: the fields the sweeper
/// reads. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    /// The deployment's hostname, without a scheme.
    #[serde(default)]
    pub url: Option<String>,
    pub ready_state: ReadyState,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default, deserialize_with = "millis")]
    pub created_at: Option<i64>,
    /// When the build started.
    #[serde(default, deserialize_with = "millis")]
    pub building_at: Option<i64>,
    /// When it became ready.
    #[serde(default, deserialize_with = "millis")]
    pub ready: Option<i64>,
    #[serde(default, deserialize_with = "millis")]
    pub build_error_at: Option<i64>,
    #[serde(default, deserialize_with = "millis")]
    pub canceled_at: Option<i64>,
    /// The deployment's page on vercel.com, build logs included.
    #[serde(default)]
    pub inspector_url: Option<String>,
}

/// `readyState`. A value this version does not know is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyState {
    Queued,
    Initializing,
    Building,
    Ready,
    Error,
    Canceled,
    Other(String),
}

impl ReadyState {
    pub fn as_str(&self) -> &str {
        match self {
            ReadyState::Queued => "QUEUED",
            ReadyState::Initializing => "INITIALIZING",
            ReadyState::Building => "BUILDING",
            ReadyState::Ready => "READY",
            ReadyState::Error => "ERROR",
            ReadyState::Canceled => "CANCELED",
            ReadyState::Other(other) => other,
        }
    }
}

impl<'de> Deserialize<'de> for ReadyState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = String::deserialize(deserializer)?;
        Ok(match state.as_str() {
            "QUEUED" => ReadyState::Queued,
            "INITIALIZING" => ReadyState::Initializing,
            "BUILDING" => ReadyState::Building,
            "READY" => ReadyState::Ready,
            "ERROR" => ReadyState::Error,
            "CANCELED" => ReadyState::Canceled,
            _ => ReadyState::Other(state),
        })
    }
}

/// Milliseconds as the API's schema types them: a JSON number, which may be written
/// with a fraction.
fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?
        .filter(|ms| ms.is_finite())
        .map(|ms| ms.round() as i64))
}

/// Unix milliseconds as the UTC time the database stores; `None` out of range.
pub fn time(ms: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms).map(|t| t.naive_utc())
}

/// The error body Vercel sends: `{"error": {"code", "message"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

impl VercelClient {
    pub fn new(config: VercelConfig) -> Result<Self, VercelError> {
        let base = Url::parse(&config.api_url).map_err(|e| {
            VercelError::Config(format!(
                "VERCEL_API_URL {:?} is not a URL: {e}",
                config.api_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(VercelError::Config(format!(
                "VERCEL_API_URL {:?} must be an http or https URL",
                config.api_url
            )));
        }
        if config.token.trim().is_empty() {
            return Err(VercelError::Config("VERCEL_TOKEN is empty".into()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.token.trim()))
            .map_err(|_| {
            VercelError::Config("VERCEL_TOKEN holds characters an HTTP header cannot carry".into())
        })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("deploy-tracker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VercelError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            authorization,
            team_id: config.team_id.filter(|team| !team.trim().is_empty()),
        })
    }

    /// `GET /v13/deployments/{id}`.
    pub async fn deployment(&self, id: &str) -> Result<Deployment, VercelError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the base URL can be a base")
            .pop_if_empty()
            .extend(["v13", "deployments", id]);
        if let Some(team) = &self.team_id {
            url.query_pairs_mut().append_pair("teamId", team);
        }
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        let body = response.bytes().await.map_err(network)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| VercelError::Body(e.to_string()));
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_default();
        let message = crate::webhooks::truncate(message, MAX_QUOTED);
        Err(match status {
            StatusCode::NOT_FOUND => VercelError::NotFound(id.to_owned()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => VercelError::Unauthorized {
                status: status.as_u16(),
                message,
            },
            _ => VercelError::Status {
                status: status.as_u16(),
                message,
            },
        })
    }
}

/// A transport error as one sentence, its causes included (the URL left out: it
/// says nothing the caller does not know).
fn network(err: reqwest::Error) -> VercelError {
    if err.is_timeout() {
        return VercelError::Network("no answer in time".into());
    }
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.ends_with(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    VercelError::Network(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str, api_url: &str) -> VercelConfig {
        VercelConfig {
            token: token.to_owned(),
            api_url: api_url.to_owned(),
            team_id: Some("team_1".into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn a_deployment_reads_the_documented_fields() {
        let body = br#"{"id":"dpl_1","url":"app-abc.vercel.app","readyState":"READY",
            "createdAt":1794301962841,"buildingAt":1794301963000.0,"ready":1794302056113,
            "inspectorUrl":"https://vercel.com/acme/app/abc","errorMessage":null,
            "meta":{"githubCommitSha":"95fb"},"regions":["iad1"]}"#;
        let d: Deployment = serde_json::from_slice(body).unwrap();
        assert_eq!(d.ready_state, ReadyState::Ready);
        assert_eq!(d.url.as_deref(), Some("app-abc.vercel.app"));
        assert_eq!(
            (d.created_at, d.building_at, d.ready),
            (
                Some(1794301962841),
                Some(1794301963000),
                Some(1794302056113)
            )
        );
        assert_eq!(d.error_message, None);
        assert_eq!(
            time(1794302056113).unwrap().and_utc().to_rfc3339(),
            "2026-11-10T09:14:16.113+00:00"
        );
        let other: Deployment =
            serde_json::from_slice(br#"{"id":"dpl_2","readyState":"DELETED"}"#).unwrap();
        assert_eq!(other.ready_state, ReadyState::Other("DELETED".into()));
        assert_eq!(other.ready_state.as_str(), "DELETED");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let secret = "vc_secret_token_123";
        let client = VercelClient::new(config(secret, DEFAULT_API_URL)).unwrap();
        assert!(!format!("{client:?}").contains(secret));
        assert!(!format!("{:?}", config(secret, DEFAULT_API_URL)).contains(secret));
    }

    #[test]
    fn bad_settings_are_refused_with_a_sentence() {
        let err = |token: &str, url: &str| VercelClient::new(config(token, url)).unwrap_err();
        assert!(err("t", "not a url").to_string().contains("is not a URL"));
        assert!(err("t", "ftp://x").to_string().contains("http or https"));
        assert!(err(" ", DEFAULT_API_URL).to_string().contains("empty"));
        let bad = err("tok\nen", DEFAULT_API_URL).to_string();
        assert!(bad.contains("header") && !bad.contains("tok"), "{bad}");
    }
}
