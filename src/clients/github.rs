//! GitHub's REST API, the part backfill needs: a hook's deliveries (listed, fetched,
//! redelivered), with errors that say what to do.
//!
//! Every request carries the token as a bearer, `Accept: application/vnd.github+json`
//! and `X-GitHub-Api-Version`. Rate limits (403/429 with `retry-after` or
//! `x-ratelimit-remaining: 0`) are waited out when the wait is short, else reported
//! with the time to retry; network failures, timeouts and 5xx answers are retried a
//! few times with backoff. The token never appears in an error or in `Debug` output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Clock, SystemClock, Token};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
const API_VERSION: &str = "2022-11-28";
/// GitHub's largest page of deliveries.
const PER_PAGE: u32 = 100;

/// Longest an answer may take before it counts as a network failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a rate limit to lift before giving up with the time to retry.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// A webhook whose deliveries GitHub keeps: a repository's or an organisation's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hook {
    Repository {
        owner: String,
        name: String,
        id: u64,
    },
    Organization {
        org: String,
        id: u64,
    },
}

impl Hook {
    pub fn id(&self) -> u64 {
        match self {
            Hook::Repository { id, .. } | Hook::Organization { id, .. } => *id,
        }
    }

    /// `/repos/{owner}/{repo}/hooks/{id}/deliveries` or `/orgs/{org}/hooks/{id}/deliveries`.
    fn deliveries_path(&self) -> String {
        match self {
            Hook::Repository { owner, name, id } => {
                format!("/repos/{owner}/{name}/hooks/{id}/deliveries")
            }
            Hook::Organization { org, id } => format!("/orgs/{org}/hooks/{id}/deliveries"),
        }
    }

    /// Why GitHub may answer 404 for this hook, and what to check.
    fn not_found_hint(&self) -> String {
        match self {
            Hook::Repository { owner, name, id } => format!(
                "the repository {owner}/{name} or its hook {id} does not exist, or the token may not \
                 see the repository's hooks: a classic token needs the admin:repo_hook scope \
                 (read:repo_hook to list), a fine-grained one the repository permission \"Webhooks: read\""
            ),
            Hook::Organization { org, id } => format!(
                "the organisation {org} or its hook {id} does not exist, or the token may not see the \
                 organisation's hooks: a classic token needs the admin:org_hook scope (and read:org), \
                 a fine-grained one the organization permission \"Webhooks: read\""
            ),
        }
    }
}

/// `owner/repo:HOOK_ID` for a repository's hook, `org:ORG:HOOK_ID` for an organisation's.
impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Repository { owner, name, id } => write!(f, "{owner}/{name}:{id}"),
            Hook::Organization { org, id } => write!(f, "org:{org}:{id}"),
        }
    }
}

impl std::str::FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not a hook: give owner/repo:HOOK_ID or org:ORG:HOOK_ID (HOOK_ID a number)"
            )
        };
        let (target, id) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let id = parse_hook_id(id).map_err(|_| bad())?;
        if let Some(org) = target.strip_prefix("org:") {
            return Hook::organization(org, id).map_err(|e| format!("{}: {e}", bad()));
        }
        let (owner, name) = target.split_once('/').ok_or_else(bad)?;
        Hook::repository(owner, name, id).map_err(|e| format!("{}: {e}", bad()))
    }
}

impl Hook {
    pub fn repository(owner: &str, name: &str, id: u64) -> Result<Self, String> {
        Ok(Hook::Repository {
            owner: path_segment("the owner", owner)?,
            name: path_segment("the repository name", name)?,
            id,
        })
    }

    pub fn organization(org: &str, id: u64) -> Result<Self, String> {
        Ok(Hook::Organization {
            org: path_segment("the organisation", org)?,
            id,
        })
    }
}

pub fn parse_hook_id(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a hook id (a positive number)")),
        Ok(id) => Ok(id),
    }
}

/// A name GitHub allows in a URL path: letters, digits, `-`, `_` and `.`, so that
/// nothing the user types can change which URL is asked.
fn path_segment(what: &str, s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{what} {s:?} may hold only letters, digits, '-', '_' and '.'"
        ))
    }
}

/// One delivery in a hook's list (`hook-delivery-item`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeliverySummary {
    /// The delivery's id in GitHub's API.
    pub id: u64,
    /// The `X-GitHub-Delivery` header sent (shared by a delivery's redeliveries).
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    /// What the receiver answered, as GitHub describes it (`OK`, `failed to connect`).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: i64,
    /// The `X-GitHub-Event` sent.
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

/// One delivery with its request (`hook-delivery`).
#[derive(Debug, Deserialize)]
pub struct DeliveryDetail {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub request: Option<DeliveryRequest>,
}

#[derive(Debug, Deserialize)]
pub struct DeliveryRequest {
    #[serde(default)]
    pub headers: Option<HashMap<String, serde_json::Value>>,
    /// The payload exactly as GitHub's answer wrote it.
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
}

impl DeliveryDetail {
    /// A request header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .as_ref()?
            .headers
            .as_ref()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
    }

    /// The payload's JSON text, when GitHub kept it.
    pub fn payload(&self) -> Option<&str> {
        self.request
            .as_ref()?
            .payload
            .as_deref()
            .map(RawValue::get)
            .filter(|json| *json != "null")
    }
}

/// A page of deliveries, newest first, and the URL of the next (older) page.
#[derive(Debug)]
pub struct Page {
    pub deliveries: Vec<DeliverySummary>,
    pub next: Option<String>,
}

/// What went wrong talking to GitHub, as a sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error(
        "GitHub refused the token (401 {message}): it is wrong, expired or revoked; create a new one and set GITHUB_TOKEN"
    )]
    Unauthorized { message: String },
    #[error("GitHub answered 404 to {what}: {hint}")]
    NotFound { what: String, hint: String },
    #[error(
        "GitHub refused {what} (403 {message}): the token lacks a permission it needs, or the organisation requires SSO authorisation of the token"
    )]
    Forbidden { what: String, message: String },
    #[error(
        "GitHub's rate limit stops {what} (HTTP {status}) until {retry_at}; run again after that time"
    )]
    RateLimited {
        what: String,
        status: u16,
        retry_at: DateTime<Utc>,
    },
    #[error(
        "GitHub's API at {api_url} did not answer {what} after {attempts} attempts ({reason}); check GITHUB_API_URL and the network, then run again"
    )]
    Unreachable {
        what: String,
        api_url: String,
        attempts: u32,
        reason: String,
    },
    #[error("GitHub answered {status} to {what}: {message}")]
    Unexpected {
        what: String,
        status: u16,
        message: String,
    },
    #[error("GitHub's answer to {what} could not be read: {reason}")]
    Unreadable { what: String, reason: String },
}

/// How a client reaches GitHub and how patient it is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://api.github.com`, or a GitHub Enterprise Server's `https://HOST/api/v3`.
    pub api_url: String,
    pub token: Token,
    /// Longest one answer may take.
    pub timeout: Duration,
    /// Longest wait for a rate limit to lift; a longer one is an error with the time.
    pub max_wait: Duration,
    /// Tries of one request through network failures, timeouts and 5xx answers.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub backoff: Duration,
}

impl Settings {
    pub fn new(api_url: &str, token: Token) -> Self {
        Settings {
            api_url: api_url.trim_end_matches('/').to_owned(),
            token,
            timeout: DEFAULT_TIMEOUT,
            max_wait: DEFAULT_MAX_WAIT,
            attempts: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// A typed client of GitHub's REST API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a request is for, in the words of an error message.
struct Request<'a> {
    method: Method,
    url: String,
    what: &'a str,
    hook: &'a Hook,
}

/// An answer read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self, String> {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    pub fn with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, String> {
        if !(settings.api_url.starts_with("https://") || settings.api_url.starts_with("http://")) {
            return Err(format!(
                "GITHUB_API_URL {:?} must start with https:// (or http:// for a local server)",
                settings.api_url
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("deploy-tracker/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the GitHub client: {e}"))?;
        Ok(Client {
            http,
            settings: Arc::new(settings),
            clock,
        })
    }

    pub fn api_url(&self) -> &str {
        &self.settings.api_url
    }

    /// A page of the hook's deliveries, newest first: the first page without `next`,
    /// else the page a previous one's `next` named.
    pub async fn deliveries(&self, hook: &Hook, next: Option<&str>) -> Result<Page, GithubError> {
        let url = match next {
            None => format!(
                "{}{}?per_page={PER_PAGE}",
                self.settings.api_url,
                hook.deliveries_path()
            ),
            Some(url) => self.own_url(url)?,
        };
        let what = format!("the list of deliveries of hook {hook}");
        let answer = self
            .send(Request {
                method: Method::GET,
                url,
                what: &what,
                hook,
            })
            .await?;
        let next = next_link(&answer.headers);
        let deliveries = decode(&what, &answer.body)?;
        Ok(Page { deliveries, next })
    }

    /// One delivery with its request headers and payload.
    pub async fn delivery(&self, hook: &Hook, id: u64) -> Result<DeliveryDetail, GithubError> {
        let what = format!("delivery {id} of hook {hook}");
        let answer = self
            .send(Request {
                method: Method::GET,
                url: format!("{}{}/{id}", self.settings.api_url, hook.deliveries_path()),
                what: &what,
                hook,
            })
            .await?;
        decode(&what, &answer.body)
    }

    /// Asks GitHub to send the delivery again (`POST …/attempts`, answered 202).
    pub async fn redeliver(&self, hook: &Hook, id: u64) -> Result<(), GithubError> {
        let what = format!("the redelivery of delivery {id} of hook {hook}");
        self.send(Request {
            method: Method::POST,
            url: format!(
                "{}{}/{id}/attempts",
                self.settings.api_url,
                hook.deliveries_path()
            ),
            what: &what,
            hook,
        })
        .await?;
        Ok(())
    }

    /// A `next` link, only when it points into the API the token is meant for.
    fn own_url(&self, url: &str) -> Result<String, GithubError> {
        let base = &self.settings.api_url;
        match url.strip_prefix(base.as_str()) {
            Some(rest) if rest.starts_with('/') => Ok(url.to_owned()),
            _ => Err(GithubError::Unreadable {
                what: "a page link".into(),
                reason: format!("the next page {url:?} is not under GITHUB_API_URL {base:?}"),
            }),
        }
    }

    /// Sends the request until it succeeds, waiting out short rate limits and
    /// retrying network failures, timeouts and 5xx answers with backoff.
    async fn send(&self, request: Request<'_>) -> Result<Answer, GithubError> {
        let settings = &self.settings;
        let mut failures = 0;
        let mut waits = 0;
        loop {
            let failure = match self.try_once(&request).await {
                Ok(answer) if answer.status.is_success() => return Ok(answer),
                Ok(answer) => {
                    count_error(answer.status.as_str());
                    let now = self.clock.now();
                    match self.refusal(&request, answer, now) {
                        Refusal::Final(err) => return Err(err),
                        Refusal::RateLimited { status, retry_at } => {
                            let wait = (retry_at - now).to_std().unwrap_or(Duration::ZERO);
                            if wait > settings.max_wait || waits >= 3 {
                                return Err(GithubError::RateLimited {
                                    what: request.what.to_owned(),
                                    status,
                                    retry_at,
                                });
                            }
                            waits += 1;
                            tracing::warn!(
                                wait_s = wait.as_secs_f64(),
                                status,
                                "GitHub rate limit: waiting before {}",
                                request.what
                            );
                            self.clock.sleep(wait).await;
                            continue;
                        }
                        Refusal::Retry(reason) => reason,
                    }
                }
                Err(err) => {
                    let label = if err.is_timeout() {
                        "timeout"
                    } else {
                        "network"
                    };
                    count_error(label);
                    describe(err, settings.timeout)
                }
            };
            failures += 1;
            if failures >= settings.attempts.max(1) {
                return Err(GithubError::Unreachable {
                    what: request.what.to_owned(),
                    api_url: settings.api_url.clone(),
                    attempts: failures,
                    reason: failure,
                });
            }
            let backoff = settings.backoff * 2u32.saturating_pow(failures - 1);
            tracing::warn!(
                attempt = failures,
                reason = %failure,
                "GitHub did not answer {}; retrying in {} ms",
                request.what,
                backoff.as_millis()
            );
            self.clock.sleep(backoff).await;
        }
    }

    async fn try_once(&self, request: &Request<'_>) -> Result<Answer, reqwest::Error> {
        let response = self
            .http
            .request(request.method.clone(), &request.url)
            .bearer_auth(self.settings.token.expose())
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// What a non-2xx answer means.
    fn refusal(&self, request: &Request<'_>, answer: Answer, now: DateTime<Utc>) -> Refusal {
        let message = error_message(&answer.body);
        let what = request.what.to_owned();
        let status = answer.status;
        if (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
            && let Some(retry_at) = rate_limit_lifts(
                &answer.headers,
                status == StatusCode::TOO_MANY_REQUESTS || message.contains("rate limit"),
                now,
            )
        {
            return Refusal::RateLimited {
                status: status.as_u16(),
                retry_at,
            };
        }
        Refusal::Final(match status {
            StatusCode::UNAUTHORIZED => GithubError::Unauthorized { message },
            StatusCode::NOT_FOUND => GithubError::NotFound {
                what,
                hint: request.hook.not_found_hint(),
            },
            StatusCode::FORBIDDEN => GithubError::Forbidden { what, message },
            s if s.is_server_error() => return Refusal::Retry(format!("{s}: {message}")),
            s => GithubError::Unexpected {
                what,
                status: s.as_u16(),
                message,
            },
        })
    }
}

enum Refusal {
    Final(GithubError),
    RateLimited {
        status: u16,
        retry_at: DateTime<Utc>,
    },
    Retry(String),
}

/// When a rate limit lifts, if the answer is one: `retry-after` seconds, else
/// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0, else (a secondary limit
/// without headers) a minute from now, as GitHub's docs advise.
fn rate_limit_lifts(
    headers: &HeaderMap,
    says_rate_limit: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<u32>().ok()) {
        return Some(now + chrono::Duration::seconds(seconds.into()));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0));
        return Some(reset.unwrap_or(now + chrono::Duration::minutes(1)).max(now));
    }
    says_rate_limit.then(|| now + chrono::Duration::minutes(1))
}

/// GitHub's `{"message": …}`, or the start of whatever else the body was.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.message,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "no message".into()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

/// A network failure in words: reqwest's own message hides the cause in its sources.
fn describe(err: reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    let err = err.without_url();
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

fn count_error(status: &str) {
    metrics::counter!("deploy_tracker_backfill_api_errors_total", "status" => status.to_owned())
        .increment(1);
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, GithubError> {
    serde_json::from_slice(body).map_err(|e| GithubError::Unreadable {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (url, params) = link.split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| url.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_parse_in_both_forms_and_print_back() {
        let repo: Hook = "acme-apps/storefront:123".parse().unwrap();
        assert_eq!(
            repo,
            Hook::repository("acme-apps", "storefront", 123).unwrap()
        );
        assert_eq!(repo.to_string(), "acme-apps/storefront:123");
        assert_eq!(
            repo.deliveries_path(),
            "/repos/acme-apps/storefront/hooks/123/deliveries"
        );
        let org: Hook = "org:acme-apps:9".parse().unwrap();
        assert_eq!(org.to_string(), "org:acme-apps:9");
        assert_eq!(org.deliveries_path(), "/orgs/acme-apps/hooks/9/deliveries");
        for bad in [
            "acme",
            "acme:1",
            "acme/storefront",
            "acme/storefront:0",
            "acme/storefront:x",
            "acme/../x:1",
            "org::1",
            "acme/store front:1",
            "a/b/c:1",
        ] {
            assert!(bad.parse::<Hook>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/x?cursor=a>; rel=\"prev\", <https://api.github.com/x?per_page=100&cursor=b>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/x?per_page=100&cursor=b")
        );
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("<https://api.github.com/x?cursor=a>; rel=\"prev\""),
        );
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn rate_limits_lift_at_the_time_the_headers_say() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(
            rate_limit_lifts(&headers(&[("retry-after", "30")]), false, now),
            Some(now + chrono::Duration::seconds(30))
        );
        assert_eq!(
            rate_limit_lifts(
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000600")
                ]),
                false,
                now
            ),
            Some(now + chrono::Duration::seconds(600))
        );
        assert_eq!(
            rate_limit_lifts(&headers(&[("x-ratelimit-remaining", "12")]), false, now),
            None,
            "a 403 with quota left is a permission problem"
        );
        assert_eq!(
            rate_limit_lifts(&headers(&[]), true, now),
            Some(now + chrono::Duration::minutes(1))
        );
    }

    #[test]
    fn a_delivery_keeps_its_payload_text_and_reads_headers_in_any_case() {
        let detail: DeliveryDetail = serde_json::from_str(
            r#"{"id":1,"guid":"g","event":"push","delivered_at":"2026-11-30T10:00:00Z",
                "request":{"headers":{"X-GitHub-Event":"push"},"payload":{"b":1, "a":[2]}}}"#,
        )
        .unwrap();
        assert_eq!(detail.header("x-github-event"), Some("push"));
        assert_eq!(detail.payload(), Some(r#"{"b":1, "a":[2]}"#));
        let empty: DeliveryDetail = serde_json::from_str(
            r#"{"id":1,"guid":"g","event":"push","delivered_at":"2026-11-30T10:00:00Z",
                "request":{"headers":null,"payload":null}}"#,
        )
        .unwrap();
        assert_eq!(empty.payload(), None);
        assert_eq!(empty.header("x-github-event"), None);
    }
}
