//! Replay: saved payloads (fixtures, exported deliveries, scenario files) sent again,
//! either to a running server over HTTP, signed at send time, or straight into the
//! database through the same [`Ingest`] the server uses.
//!
//! Where a payload comes from decides how it is sent:
//! - its folder names the provider: `…/github/…` or `…/vercel/…`;
//! - a GitHub file name starts with the `X-GitHub-Event` (`push.staging.json` → push);
//!   its `X-GitHub-Delivery` is the rest of the name when that is a UUID (as
//!   `deliveries export` writes it), else a name-based UUID of the file name and
//!   contents, so replaying a file twice is a duplicate;
//! - a Vercel delivery id is the body's `id`, as always;
//! - a body that starts with `payload=` is a GitHub form delivery and is sent as one.
//!
//! A path may be a file, a folder (every `*.json` and `*.form` file below it,
//! recursively, in path order), or a scenario (`*.scenario`, `*.txt`): one path per
//! line, relative to the scenario file, `#` starting a comment. A scenario may list
//! folders and other scenarios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::DbErr;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::deployments::ingest::{Ingest, Outcome};
use crate::store::deliveries;
use crate::webhooks::signature::{Secrets, sign_github, sign_vercel};
use crate::webhooks::{
    ContentType, Delivery, Provider, body_digest_id, github, is_commit_sha, vercel,
};

/// How deep scenarios may list scenarios, so that one listing itself fails cleanly.
const MAX_SCENARIO_DEPTH: usize = 8;

/// Names GitHub delivery ids made up by replay (a UUID v5 namespace of our own).
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_2f0e_9d4b_4e57_8a3f_5b0c_d2e1_7f64);

/// One saved payload, read and checked, ready to send.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    pub provider: Provider,
    /// GitHub: the `X-GitHub-Event` sent. Vercel: the envelope's `type` (for display).
    pub event: String,
    /// GitHub: the `X-GitHub-Delivery` sent. Vercel: the envelope's `id`.
    pub delivery_id: String,
    pub content_type: ContentType,
    pub body: Vec<u8>,
}

/// A payload that cannot be replayed, and why. Displays as `<path>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FixtureError {
    pub path: PathBuf,
    pub message: String,
}

impl FixtureError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads every payload the paths name, in order. Nothing is sent unless all of them
/// can be read, so a typo in a scenario cannot leave half a history behind.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Fixture>, FixtureError> {
    let mut fixtures = Vec::new();
    for path in paths {
        collect(path, None, 0, &mut fixtures)?;
    }
    Ok(fixtures)
}

fn collect(
    path: &Path,
    listed_in: Option<(&Path, usize)>,
    depth: usize,
    out: &mut Vec<Fixture>,
) -> Result<(), FixtureError> {
    let listed = || match listed_in {
        Some((scenario, line)) => format!(" (listed in {} line {line})", scenario.display()),
        None => String::new(),
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            FixtureError::new(path, format!("no such file or folder{}", listed()))
        }
        _ => FixtureError::new(path, format!("{e}{}", listed())),
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(FixtureError::new(
                path,
                "the folder holds no payloads (*.json or *.form files)",
            ));
        }
        for file in files {
            out.push(read_fixture(&file)?);
        }
        return Ok(());
    }
    if is_scenario(path) {
        if depth >= MAX_SCENARIO_DEPTH {
            return Err(FixtureError::new(
                path,
                "scenarios are nested too deeply (does one list itself?)",
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| FixtureError::new(path, e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() {
                collect(
                    &tidy(&base.join(entry)),
                    Some((path, i + 1)),
                    depth + 1,
                    out,
                )?;
            }
        }
        return Ok(());
    }
    out.push(read_fixture(path).map_err(|mut e| {
        e.message.push_str(&listed());
        e
    })?);
    Ok(())
}

/// `fixtures/scenarios/../github/push.json` → `fixtures/github/push.json`, without
/// touching the file system (so paths stay as short as the user wrote them).
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn is_scenario(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("scenario" | "txt")
    )
}

/// Payload files below a folder; hidden entries and other files are skipped.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), FixtureError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FixtureError::new(dir, e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| FixtureError::new(dir, e.to_string()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "form")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads one payload file and works out how to send it.
pub fn read_fixture(path: &Path) -> Result<Fixture, FixtureError> {
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let provider: Provider = folder.parse().map_err(|_| {
        FixtureError::new(
            path,
            format!(
                "cannot tell the provider from the folder {folder:?}: put the file in a folder named github or vercel"
            ),
        )
    })?;
    let body = std::fs::read(path).map_err(|e| FixtureError::new(path, e.to_string()))?;
    let content_type = ContentType::sniff(&body);
    let json = match content_type {
        ContentType::Form if provider == Provider::Github => form_payload(&body)
            .ok_or_else(|| FixtureError::new(path, "a form body without a payload field"))?
            .into_bytes(),
        _ => body.clone(),
    };
    let value: Value = serde_json::from_slice(&json)
        .map_err(|e| FixtureError::new(path, format!("not JSON: {e}")))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (event, delivery_id) = match provider {
        Provider::Github => {
            let event = name.split('.').next().unwrap_or("");
            if event.is_empty() {
                return Err(FixtureError::new(
                    path,
                    "a GitHub file name must start with the event, as in push.staging.json",
                ));
            }
            (event.to_owned(), github_delivery_id(name, &body))
        }
        Provider::Vercel => (
            value["type"].as_str().unwrap_or("").to_owned(),
            match value["id"].as_str() {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => body_digest_id(&body),
            },
        ),
    };
    Ok(Fixture {
        path: path.to_owned(),
        provider,
        event,
        delivery_id,
        content_type,
        body,
    })
}

fn form_payload(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
}

/// `push.<uuid>.json` keeps its delivery id; any other name gets one made from the
/// file name and contents, the same on every run.
fn github_delivery_id(name: &str, body: &[u8]) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    if let Some((_, case)) = stem.split_once('.')
        && let Ok(id) = Uuid::parse_str(case)
    {
        return id.to_string();
    }
    let mut named = name.as_bytes().to_vec();
    named.push(0);
    named.extend_from_slice(body);
    name_uuid(&named).to_string()
}

/// A UUID v5 in [`DELIVERY_NAMESPACE`].
fn name_uuid(name: &[u8]) -> Uuid {
    let mut hash = Sha1::new();
    hash.update(DELIVERY_NAMESPACE.as_bytes());
    hash.update(name);
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// New identities for one `--fresh-ids` run. Each new value is derived from the run's
/// nonce and the original, so within a run the same original always maps to the same
/// new value: a push and the Vercel events for its commit still meet on one row, and a
/// delivery a scenario lists twice is still a duplicate.
#[derive(Debug, Clone)]
pub struct FreshIds {
    nonce: String,
}

impl FreshIds {
    /// A new run.
    pub fn new() -> Self {
        Self::with_nonce(&Uuid::new_v4().simple().to_string())
    }

    pub fn with_nonce(nonce: &str) -> Self {
        Self {
            nonce: nonce.to_owned(),
        }
    }

    fn derive(&self, kind: &str, original: &str) -> String {
        let mut hash = Sha256::new();
        for part in [self.nonce.as_str(), kind, original] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hex::encode(hash.finalize())
    }

    fn sha(&self, original: &str) -> String {
        let original = original.to_ascii_lowercase();
        self.derive("sha", &original)[..original.len().min(64)].to_owned()
    }

    /// The fixture with new delivery and deployment ids and commit SHAs.
    pub fn apply(&self, fixture: &Fixture) -> Result<Fixture, FixtureError> {
        let mut fresh = fixture.clone();
        match fixture.provider {
            Provider::Github => {
                fresh.delivery_id =
                    name_uuid(self.derive("delivery", &fixture.delivery_id).as_bytes()).to_string();
                fresh.body = match fixture.content_type {
                    ContentType::Form => {
                        let payload = form_payload(&fixture.body).unwrap_or_default();
                        let json = self.rewrite_json(fixture, payload.as_bytes())?;
                        serde_urlencoded::to_string([("payload", String::from_utf8_lossy(&json))])
                            .expect("a form of one string field serialises")
                            .into_bytes()
                    }
                    _ => self.rewrite_json(fixture, &fixture.body)?,
                };
            }
            Provider::Vercel => {
                fresh.body = self.rewrite_json(fixture, &fixture.body)?;
                fresh.delivery_id = serde_json::from_slice::<Value>(&fresh.body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| body_digest_id(&fresh.body));
            }
        }
        Ok(fresh)
    }

    fn rewrite_json(&self, fixture: &Fixture, json: &[u8]) -> Result<Vec<u8>, FixtureError> {
        let mut value: Value = serde_json::from_slice(json)
            .map_err(|e| FixtureError::new(&fixture.path, format!("not JSON: {e}")))?;
        self.rewrite_shas(&mut value);
        if fixture.provider == Provider::Vercel {
            if let Some(id) = value.get_mut("id") {
                self.replace_string(id, |s| self.derive("id", s)[..24].to_owned());
            }
            if let Some(payload) = value.get_mut("payload") {
                let dpl = |s: &str| format!("dpl_{}", &self.derive("dpl", s)[..28]);
                if let Some(id) = payload.pointer_mut("/deployment/id") {
                    self.replace_string(id, dpl);
                }
                // The legacy envelope names it here.
                if let Some(id) = payload.get_mut("deploymentId") {
                    self.replace_string(id, dpl);
                }
            }
        }
        Ok(serde_json::to_vec(&value).expect("a JSON value serialises"))
    }

    fn replace_string(&self, value: &mut Value, f: impl Fn(&str) -> String) {
        if let Value::String(s) = value
            && !s.is_empty()
        {
            *s = f(s);
        }
    }

    /// Every commit SHA anywhere in the body (`after`, `before`, commit ids,
    /// `meta.githubCommitSha`), except the all-zero one that means "no commit".
    fn rewrite_shas(&self, value: &mut Value) {
        match value {
            Value::String(s) if is_commit_sha(s) && s.bytes().any(|b| b != b'0') => {
                *s = self.sha(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite_shas(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.rewrite_shas(v)),
            _ => {}
        }
    }
}

impl Default for FreshIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Where replayed deliveries go.
#[derive(Clone)]
pub enum Target {
    /// POSTed to a running server, signed with each provider's first secret.
    Http {
        client: reqwest::Client,
        base_url: String,
        github_secret: Option<Vec<u8>>,
        vercel_secret: Option<Vec<u8>>,
    },
    /// Applied to the database through the server's ingest: no HTTP, no signatures.
    Database(Ingest),
}

impl Target {
    /// A running server at `url` (`http://host:port`). Only plain HTTP: replay is for
    /// a server you run yourself.
    pub fn http(url: &str, github: &Secrets, vercel: &Secrets) -> Result<Self, String> {
        if !url.starts_with("http://") {
            return Err(format!(
                "--url {url:?} must start with http:// (replay does not speak TLS; point it at the server directly)"
            ));
        }
        Ok(Target::Http {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            base_url: url.trim_end_matches('/').to_owned(),
            github_secret: github.primary().map(<[u8]>::to_vec),
            vercel_secret: vercel.primary().map(<[u8]>::to_vec),
        })
    }

    /// Refuses before sending anything when a fixture's provider has no secret to sign with.
    fn check_secrets(&self, fixtures: &[Fixture]) -> Result<(), String> {
        let Target::Http {
            github_secret,
            vercel_secret,
            ..
        } = self
        else {
            return Ok(());
        };
        for (provider, secret, var) in [
            (Provider::Github, github_secret, "GITHUB_WEBHOOK_SECRET"),
            (Provider::Vercel, vercel_secret, "VERCEL_WEBHOOK_SECRET"),
        ] {
            if secret.is_none()
                && let Some(f) = fixtures.iter().find(|f| f.provider == provider)
            {
                return Err(format!(
                    "{var} is not set, and {} needs it to be signed for the server",
                    f.path.display()
                ));
            }
        }
        Ok(())
    }
}

/// What became of one replayed delivery.
#[derive(Debug, Clone)]
pub struct Sent {
    pub path: PathBuf,
    pub provider: Provider,
    pub event: String,
    pub delivery_id: String,
    /// The server's answer; `None` when applied to the database directly or when
    /// the server could not be reached.
    pub status: Option<u16>,
    pub over_http: bool,
    /// The outcome, or why the delivery failed.
    pub outcome: Result<Outcome, String>,
    pub reason: String,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match (self.status, self.over_http) {
            (Some(status), _) => status.to_string(),
            (None, true) => "---".to_owned(),
            (None, false) => "db".to_owned(),
        };
        let outcome = match &self.outcome {
            Ok(outcome) => outcome.as_str(),
            Err(_) => "FAILED",
        };
        let detail = match &self.outcome {
            Ok(_) => self.reason.as_str(),
            Err(message) => message.as_str(),
        };
        write!(
            f,
            "{status:>3} {outcome:<9} {:<6} {:<22} {}  {detail}",
            self.provider.as_str(),
            self.event,
            self.path.display()
        )
    }
}

/// Everything one replay run sent.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sent: Vec<Sent>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.sent.iter().filter(|s| s.outcome.is_err()).count()
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.sent
            .iter()
            .filter(|s| s.outcome.as_ref().ok() == Some(&outcome))
            .count()
    }

    /// `replayed 6: 4 applied, 1 ignored, 1 duplicate, 0 failed`; unmatched and stale
    /// are named only when some were.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("{} applied", self.count(Outcome::Applied)),
            format!("{} ignored", self.count(Outcome::Ignored)),
            format!("{} duplicate", self.count(Outcome::Duplicate)),
        ];
        for outcome in [Outcome::Unmatched, Outcome::Stale] {
            let n = self.count(outcome);
            if n > 0 {
                parts.push(format!("{n} {}", outcome.as_str()));
            }
        }
        parts.push(format!("{} failed", self.failed()));
        format!("replayed {}: {}", self.sent.len(), parts.join(", "))
    }
}

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// New delivery ids, deployment ids and commit SHAs for this run.
    pub fresh_ids: Option<FreshIds>,
    /// Pause between deliveries.
    pub delay: Duration,
}

/// Sends the fixtures in order, one at a time, calling `each` after every delivery.
/// A failed delivery does not stop the run; the report counts it.
pub async fn replay(
    fixtures: &[Fixture],
    target: &Target,
    options: &Options,
    mut each: impl FnMut(&Sent),
) -> Result<Report, String> {
    target.check_secrets(fixtures)?;
    let mut report = Report::default();
    for (i, fixture) in fixtures.iter().enumerate() {
        if i > 0 && !options.delay.is_zero() {
            tokio::time::sleep(options.delay).await;
        }
        let fixture = match &options.fresh_ids {
            Some(fresh) => fresh.apply(fixture).map_err(|e| e.to_string())?,
            None => fixture.clone(),
        };
        let (status, outcome, reason) = match target {
            Target::Http {
                client,
                base_url,
                github_secret,
                vercel_secret,
            } => {
                let secrets = (github_secret.as_deref(), vercel_secret.as_deref());
                post(client, base_url, secrets, &fixture).await
            }
            Target::Database(ingest) => {
                let (outcome, reason) = apply(ingest, &fixture).await;
                (None, outcome, reason)
            }
        };
        let sent = Sent {
            path: fixture.path,
            provider: fixture.provider,
            event: fixture.event,
            delivery_id: fixture.delivery_id,
            status,
            over_http: matches!(target, Target::Http { .. }),
            outcome,
            reason,
        };
        each(&sent);
        report.sent.push(sent);
    }
    Ok(report)
}

fn to_delivery(fixture: &Fixture) -> Delivery {
    match fixture.provider {
        Provider::Github => github::delivery(
            Some(&fixture.event),
            Some(&fixture.delivery_id),
            fixture.content_type,
            fixture.body.clone(),
        ),
        Provider::Vercel => vercel::delivery(fixture.content_type, fixture.body.clone()),
    }
}

async fn apply(ingest: &Ingest, fixture: &Fixture) -> (Result<Outcome, String>, String) {
    match ingest.ingest(&to_delivery(fixture)).await {
        // The server answers these 400 or 415: the same failure here.
        Ok(receipt) if receipt.outcome == Outcome::Malformed => (
            Err(format!("malformed: {}", receipt.reason)),
            receipt.reason,
        ),
        Ok(receipt) => (Ok(receipt.outcome), receipt.reason),
        Err(e) => (Err(format!("database error: {e}")), String::new()),
    }
}

async fn post(
    client: &reqwest::Client,
    base_url: &str,
    (github_secret, vercel_secret): (Option<&[u8]>, Option<&[u8]>),
    fixture: &Fixture,
) -> (Option<u16>, Result<Outcome, String>, String) {
    let content_type = match fixture.content_type {
        ContentType::Form => "application/x-www-form-urlencoded",
        _ => "application/json",
    };
    let request = match fixture.provider {
        Provider::Github => client
            .post(format!("{base_url}/webhooks/github"))
            .header("x-github-event", &fixture.event)
            .header("x-github-delivery", &fixture.delivery_id)
            .header(
                "x-hub-signature-256",
                sign_github(github_secret.unwrap_or_default(), &fixture.body),
            ),
        Provider::Vercel => client.post(format!("{base_url}/webhooks/vercel")).header(
            "x-vercel-signature",
            sign_vercel(vercel_secret.unwrap_or_default(), &fixture.body),
        ),
    };
    let response = match request
        .header("content-type", content_type)
        .body(fixture.body.clone())
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => {
            // reqwest's own message hides the cause ("connection refused") in its sources.
            let mut message = format!("cannot reach {base_url}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            return (None, Err(message), String::new());
        }
    };
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |key: &str| json[key].as_str().map(str::to_owned);
    if !status.is_success() {
        let message =
            text("message").unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return (Some(status.as_u16()), Err(message), String::new());
    }
    let outcome = text("outcome")
        .ok_or_else(|| "the answer has no outcome".to_owned())
        .and_then(|o| o.parse::<Outcome>());
    (
        Some(status.as_u16()),
        outcome,
        text("reason").unwrap_or_default(),
    )
}

/// Where `deliveries export` writes a stored delivery, relative to its folder, so that
/// `replay` reads it back the same: `github/<event>.<delivery id>.json` (`.form` for a
/// form-encoded body, kept as it came), `vercel/<type>.<delivery id>.json`.
pub fn fixture_name(delivery: &deliveries::Model) -> PathBuf {
    let safe = |s: &str, keep_dots: bool| {
        let s: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || (keep_dots && c == '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.is_empty() {
            "unknown".to_owned()
        } else {
            s
        }
    };
    let is_github = delivery.provider == Provider::Github.as_str();
    // A dot in a GitHub name would end the event name early.
    let event = safe(&delivery.event_type, !is_github);
    let id = safe(&delivery.delivery_id, false);
    let extension = if is_github && ContentType::sniff(&delivery.body) == ContentType::Form {
        "form"
    } else {
        "json"
    };
    Path::new(&delivery.provider).join(format!("{event}.{id}.{extension}"))
}

/// Writes a stored delivery's raw body under `dir` (see [`fixture_name`]) and returns
/// the file's path.
pub fn export(delivery: &deliveries::Model, dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join(fixture_name(delivery));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, &delivery.body)?;
    Ok(path)
}

/// Writes a scenario listing `files` (paths under `dir`) in the order given, so that a
/// replay of it keeps the order the deliveries were received in.
pub fn write_scenario(dir: &Path, name: &str, files: &[PathBuf]) -> std::io::Result<PathBuf> {
    let mut text =
        String::from("# Exported by `deploy-tracker deliveries export`, in received order.\n");
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(file);
        text.push_str(&relative.to_string_lossy());
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Deliveries for [`Ingest::reprocess`], in received order.
pub async fn reprocess(
    ingest: &Ingest,
    outcomes: &[Outcome],
    since: Option<chrono::NaiveDateTime>,
    mut each: impl FnMut(&crate::deployments::ingest::Reprocessed),
) -> Result<Vec<crate::deployments::ingest::Reprocessed>, DbErr> {
    use sea_orm::QuerySelect;
    // Ids only: bodies are read one at a time, inside each delivery's transaction.
    let ids: Vec<Uuid> = deliveries::Entity::find_received(outcomes, since)
        .select_only()
        .column(deliveries::Column::Id)
        .into_tuple()
        .all(ingest.db())
        .await?;
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        let result = ingest.reprocess(id).await?;
        each(&result);
        done.push(result);
    }
    Ok(done)
}

/// Counts what a reprocess run did, by outcome now: `reprocessed 3: 2 changed (2 applied), 1 unchanged`.
pub fn reprocess_summary(done: &[crate::deployments::ingest::Reprocessed]) -> String {
    let changed: Vec<_> = done.iter().filter(|r| r.changed).collect();
    let mut by_outcome = BTreeMap::<&str, usize>::new();
    for r in &changed {
        *by_outcome.entry(r.outcome.as_str()).or_default() += 1;
    }
    let detail = if by_outcome.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = by_outcome.iter().map(|(o, n)| format!("{n} {o}")).collect();
        format!(" ({})", parts.join(", "))
    };
    format!(
        "reprocessed {}: {} changed{detail}, {} unchanged",
        done.len(),
        changed.len(),
        done.len() - changed.len()
    )
}
