//! A fake of GitHub's hook-deliveries API on 127.0.0.1: the documented shapes
//! (`hook-delivery-item` lists with `Link: rel="next"` pages, `hook-delivery` with
//! `request.headers` and `request.payload`, `POST …/attempts` answered 202), the
//! documented errors (401, 404, rate limits), slow answers, and counts of what was
//! asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

pub const TOKEN: &str = "ghp_fake_token_never_shown_0123456789";
pub const HOOK_ID: u64 = 4242;
pub const OWNER: &str = "acme-apps";
pub const REPO: &str = "storefront";

/// One delivery GitHub made, with the payload it sent (JSON text).
#[derive(Debug, Clone)]
pub struct FakeDelivery {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub delivered_at: DateTime<Utc>,
    pub status_code: u16,
    pub redelivery: bool,
    pub payload: String,
}

impl FakeDelivery {
    pub fn new(id: u64, guid: &str, event: &str, minutes_ago: i64, payload: &[u8]) -> Self {
        FakeDelivery {
            id,
            guid: guid.to_owned(),
            event: event.to_owned(),
            delivered_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
            status_code: 503,
            redelivery: false,
            payload: String::from_utf8(payload.to_vec())
                .unwrap()
                .trim()
                .to_owned(),
        }
    }

    fn item(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "redelivery": self.redelivery,
            "duration": 0.27,
            "status": if self.status_code == 503 { "Service Unavailable" } else { "OK" },
            "status_code": self.status_code,
            "event": self.event,
            "action": null,
            "installation_id": null,
            "repository_id": 1003512877,
            "throttled_at": null,
        })
    }

    /// The `hook-delivery` answer, the payload written in as it was sent.
    fn detail(&self) -> String {
        let mut item = self.item();
        item["url"] = "https://deploy.acme.example/webhooks/github".into();
        item["request"] = serde_json::json!({
            "headers": {
                "Accept": "*/*",
                "X-GitHub-Delivery": self.guid,
                "X-GitHub-Event": self.event,
                "X-GitHub-Hook-ID": HOOK_ID.to_string(),
                "User-Agent": "GitHub-Hookshot/b8c71d8",
                "content-type": "application/json",
                "X-Hub-Signature-256": "sha256=0000",
            },
            "payload": "PAYLOAD",
        });
        item["response"] = serde_json::json!({"headers": {}, "payload": "Service Unavailable"});
        item.to_string().replace("\"PAYLOAD\"", &self.payload)
    }
}

/// How the fake answers for now.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// `x-ratelimit-remaining: 0` with a reset this many seconds ahead, for this
    /// many answers (then normal).
    RateLimited { reset_in: i64, times: usize },
    /// 429 with `retry-after`, for this many answers.
    RetryAfter { seconds: u64, times: usize },
    /// Answers that many requests only after the delay.
    Slow { delay: Duration, times: usize },
    /// 502 to that many requests.
    ServerError { times: usize },
}

#[derive(Debug, Default)]
pub struct Counts {
    pub lists: usize,
    /// GETs of one delivery, by id.
    pub fetches: HashMap<u64, usize>,
    /// Redelivery POSTs, by id.
    pub attempts: HashMap<u64, usize>,
    /// What the list requests said in `per_page`, and the headers they carried.
    pub per_page: Vec<Option<String>>,
    pub api_versions: Vec<Option<String>>,
    pub accepts: Vec<Option<String>>,
    pub user_agents: Vec<Option<String>>,
}

struct Inner {
    deliveries: Vec<FakeDelivery>,
    page_size: usize,
    list_delay: Duration,
    /// While true, list requests are counted and then kept waiting.
    hold: tokio::sync::watch::Sender<bool>,
    mode: Mutex<Mode>,
    counts: Mutex<Counts>,
}

#[derive(Clone)]
pub struct FakeGithub {
    inner: Arc<Inner>,
    pub url: String,
}

impl FakeGithub {
    /// Serves `deliveries` (any order; listed newest first), `page_size` per page.
    pub async fn start(deliveries: Vec<FakeDelivery>, page_size: usize) -> FakeGithub {
        Self::start_with(deliveries, page_size, Duration::ZERO).await
    }

    /// Also waits `list_delay` before each list page (for overlapping replicas).
    pub async fn start_with(
        mut deliveries: Vec<FakeDelivery>,
        page_size: usize,
        list_delay: Duration,
    ) -> FakeGithub {
        deliveries.sort_by(|a, b| b.delivered_at.cmp(&a.delivered_at).then(b.id.cmp(&a.id)));
        let inner = Arc::new(Inner {
            deliveries,
            page_size,
            list_delay,
            hold: tokio::sync::watch::Sender::new(false),
            mode: Mutex::new(Mode::Normal),
            counts: Mutex::new(Counts::default()),
        });
        let hooks = Router::new()
            .route("/deliveries", get(list))
            .route("/deliveries/{id}", get(detail))
            .route("/deliveries/{id}/attempts", post(attempt));
        let app = Router::new()
            .nest("/repos/{owner}/{repo}/hooks/{hook}", hooks.clone())
            .nest("/orgs/{org}/hooks/{hook}", hooks)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGithub { inner, url }
    }

    /// Keeps list requests waiting (after counting them) until [`Self::release`].
    pub fn hold(&self) {
        self.inner.hold.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.hold.send_replace(false);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    pub fn counts<T>(&self, f: impl FnOnce(&Counts) -> T) -> T {
        f(&self.inner.counts.lock().unwrap())
    }

    pub fn fetches(&self, id: u64) -> usize {
        self.counts(|c| c.fetches.get(&id).copied().unwrap_or(0))
    }

    pub fn lists(&self) -> usize {
        self.counts(|c| c.lists)
    }
}

type Params = HashMap<String, String>;

/// The checks GitHub makes before it answers: the token, then the hook.
async fn gate(inner: &Inner, headers: &HeaderMap, params: &Params) -> Option<Response> {
    let mode = {
        let mut mode = inner.mode.lock().unwrap();
        let now = mode.clone();
        match &mut *mode {
            Mode::RateLimited { times, .. }
            | Mode::RetryAfter { times, .. }
            | Mode::Slow { times, .. }
            | Mode::ServerError { times } => {
                *times = times.saturating_sub(1);
                if *times == 0 {
                    *mode = Mode::Normal;
                }
            }
            Mode::Normal => {}
        }
        now
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
            "https://docs.github.com/rest",
        ));
    }
    match mode {
        Mode::RateLimited { reset_in, .. } => {
            let reset = Utc::now().timestamp() + reset_in;
            let mut response = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for user ID 1.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            );
            let h = response.headers_mut();
            h.insert("x-ratelimit-limit", "5000".parse().unwrap());
            h.insert("x-ratelimit-remaining", "0".parse().unwrap());
            h.insert("x-ratelimit-used", "5000".parse().unwrap());
            h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            return Some(response);
        }
        Mode::RetryAfter { seconds, .. } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded a secondary rate limit.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            );
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return Some(response);
        }
        Mode::Slow { delay, .. } => tokio::time::sleep(delay).await,
        Mode::ServerError { .. } => {
            return Some(error(StatusCode::BAD_GATEWAY, "Server Error", ""));
        }
        Mode::Normal => {}
    }
    let hook_ok = params.get("hook").map(String::as_str) == Some(&HOOK_ID.to_string())
        && match (params.get("owner"), params.get("repo"), params.get("org")) {
            (Some(owner), Some(repo), None) => owner == OWNER && repo == REPO,
            (None, None, Some(org)) => org == OWNER,
            _ => false,
        };
    (!hook_ok).then(|| {
        error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "https://docs.github.com/rest/repos/webhooks",
        )
    })
}

fn error(status: StatusCode, message: &str, docs: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"message": message, "documentation_url": docs, "status": status.as_str()})),
    )
        .into_response()
}

async fn list(
    State(inner): State<Arc<Inner>>,
    Path(params): Path<Params>,
    Query(query): Query<Params>,
    headers: HeaderMap,
) -> Response {
    {
        let mut counts = inner.counts.lock().unwrap();
        counts.lists += 1;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        counts.per_page.push(query.get("per_page").cloned());
        counts.api_versions.push(header("x-github-api-version"));
        counts.accepts.push(header("accept"));
        counts.user_agents.push(header("user-agent"));
    }
    let _ = inner.hold.subscribe().wait_for(|held| !held).await;
    if let Some(refused) = gate(&inner, &headers, &params).await {
        return refused;
    }
    tokio::time::sleep(inner.list_delay).await;
    // The cursor names the first delivery of the page, as GitHub's opaque one does.
    let start = match query.get("cursor") {
        None => 0,
        Some(cursor) => match inner
            .deliveries
            .iter()
            .position(|d| format!("v1_{}", d.id) == *cursor)
        {
            Some(i) => i,
            None => return error(StatusCode::BAD_REQUEST, "Bad cursor", ""),
        },
    };
    let page: Vec<serde_json::Value> = inner
        .deliveries
        .iter()
        .skip(start)
        .take(inner.page_size)
        .map(FakeDelivery::item)
        .collect();
    let mut response = axum::Json(page).into_response();
    if let Some(next) = inner.deliveries.get(start + inner.page_size) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1");
        let base = match (params.get("owner"), params.get("repo"), params.get("org")) {
            (Some(owner), Some(repo), _) => format!("/repos/{owner}/{repo}"),
            (_, _, Some(org)) => format!("/orgs/{org}"),
            _ => unreachable!(),
        };
        let path = format!("http://{host}{base}/hooks/{HOOK_ID}/deliveries");
        let link = format!(
            "<{path}?per_page=100&cursor=v1_{}>; rel=\"next\", <{path}?per_page=100>; rel=\"first\"",
            next.id
        );
        response
            .headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    response
}

async fn detail(
    State(inner): State<Arc<Inner>>,
    Path(params): Path<Params>,
    headers: HeaderMap,
) -> Response {
    let id: u64 = params["id"].parse().unwrap();
    *inner.counts.lock().unwrap().fetches.entry(id).or_default() += 1;
    if let Some(refused) = gate(&inner, &headers, &params).await {
        return refused;
    }
    match inner.deliveries.iter().find(|d| d.id == id) {
        Some(d) => ([(header::CONTENT_TYPE, "application/json")], d.detail()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found", ""),
    }
}

async fn attempt(
    State(inner): State<Arc<Inner>>,
    Path(params): Path<Params>,
    headers: HeaderMap,
) -> Response {
    let id: u64 = params["id"].parse().unwrap();
    *inner.counts.lock().unwrap().attempts.entry(id).or_default() += 1;
    if let Some(refused) = gate(&inner, &headers, &params).await {
        return refused;
    }
    if inner.deliveries.iter().any(|d| d.id == id) {
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({}))).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "Not Found", "")
    }
}
