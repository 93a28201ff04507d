//! GitHub deliveries: typed `push`, `deployment`, `deployment_status` and `ping`
//! payloads, mapped to [`Event`].

use serde::Deserialize;

use super::{
    ContentType, Delivery, Event, GithubDeployment, MAX_DELIVERY_ID, MAX_EVENT_TYPE, MAX_LOGS_URL,
    MAX_NAME, MAX_URL, Malformed, Provider, Push, Source, Timestamp, body_digest_id, check_len,
    is_commit_sha, now, storable, truncate,
};
use crate::deployments::state::Status;
use crate::store::deployments::{Environment, FailureReason};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    #[serde(default)]
    pusher: Option<Pusher>,
    #[serde(default)]
    sender: Option<User>,
    #[serde(default)]
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct Pusher {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    #[serde(default)]
    timestamp: Option<Timestamp>,
}

/// `deployment` and `deployment_status` payloads (the latter has `deployment_status`).
#[derive(Debug, Deserialize)]
struct DeploymentPayload {
    #[serde(default)]
    deployment_status: Option<DeploymentStatus>,
    deployment: GithubDeploymentObject,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatus {
    state: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    environment_url: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    log_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    creator: Option<User>,
    #[serde(default)]
    created_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
struct GithubDeploymentObject {
    id: i64,
    sha: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    production_environment: bool,
    #[serde(default)]
    creator: Option<User>,
    #[serde(default)]
    created_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    pushed_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
struct FormBody {
    payload: String,
}

/// Builds a delivery from what GitHub sent: the `X-GitHub-Event` and
/// `X-GitHub-Delivery` headers, the content type, and the raw (already verified) body.
pub fn delivery(
    event_type: Option<&str>,
    delivery_id: Option<&str>,
    content_type: ContentType,
    body: Vec<u8>,
) -> Delivery {
    let delivery_id = match delivery_id {
        Some(id) if !id.is_empty() && !id.contains('\0') => id.to_owned(),
        _ => body_digest_id(&body),
    };
    let event_type = storable(event_type.unwrap_or(""));
    let event = check_len("X-GitHub-Delivery", &delivery_id, MAX_DELIVERY_ID)
        .and_then(|()| check_len("X-GitHub-Event", &event_type, MAX_EVENT_TYPE))
        .map_err(Malformed::new)
        .and_then(|()| event(&event_type, content_type, &body))
        .unwrap_or_else(Event::Malformed);
    Delivery {
        provider: Provider::Github,
        delivery_id: truncate(delivery_id, MAX_DELIVERY_ID),
        event_type: truncate(event_type, MAX_EVENT_TYPE),
        body,
        event,
        source: Source::Webhook,
    }
}

fn event(event_type: &str, content_type: ContentType, body: &[u8]) -> Result<Event, Malformed> {
    match event_type {
        "" => Err(Malformed::new("the X-GitHub-Event header is missing")),
        "push" => push(&json_text(content_type, body)?),
        "deployment" | "deployment_status" => {
            deployment(event_type, &json_text(content_type, body)?)
        }
        "ping" => Ok(Event::Ignored("ping".into())),
        other => Ok(Event::Ignored(format!("{other} events are not tracked"))),
    }
}

/// GitHub sends either JSON or a form with the JSON in its `payload` field.
fn json_text(content_type: ContentType, body: &[u8]) -> Result<String, Malformed> {
    match content_type {
        ContentType::Json => String::from_utf8(body.to_vec())
            .map_err(|_| Malformed::new("the body is not valid UTF-8")),
        ContentType::Form => serde_urlencoded::from_bytes::<FormBody>(body)
            .map(|form| form.payload)
            .map_err(|e| Malformed::new(format!("the form body has no usable payload field: {e}"))),
        ContentType::Other => Err(Malformed {
            reason:
                "GitHub deliveries must be application/json or application/x-www-form-urlencoded"
                    .into(),
            unsupported_media_type: true,
        }),
    }
}

fn push(json: &str) -> Result<Event, Malformed> {
    let payload: PushPayload = serde_json::from_str(json)
        .map_err(|e| Malformed::new(format!("not a push payload: {e}")))?;
    let Some(branch) = payload.git_ref.strip_prefix("refs/heads/") else {
        return Ok(Event::Ignored(format!(
            "{} is not a branch",
            shorten(&payload.git_ref)
        )));
    };
    if payload.deleted || payload.after == ZERO_SHA {
        return Ok(Event::Ignored(format!(
            "branch {} was deleted",
            shorten(branch)
        )));
    }
    if !is_commit_sha(&payload.after) {
        return Err(Malformed::new("after is not a commit SHA"));
    }
    check_len(
        "repository.full_name",
        &payload.repository.full_name,
        MAX_NAME,
    )
    .and_then(|()| check_len("ref", branch, MAX_NAME))
    .map_err(Malformed::new)?;
    let pushed_at = payload
        .repository
        .pushed_at
        .and_then(|t| t.to_naive(false))
        .unwrap_or_else(now);
    let pushed_by = payload
        .pusher
        .and_then(|p| p.name)
        .or(payload.sender.and_then(|s| s.login))
        .and_then(|name| login(&name));
    let committed_at = payload
        .head_commit
        .and_then(|c| c.timestamp)
        .and_then(|t| t.to_naive(false))
        .unwrap_or(pushed_at);
    Ok(Event::Push(Push {
        repository: payload.repository.full_name,
        branch: branch.to_owned(),
        commit_sha: payload.after.to_ascii_lowercase(),
        pushed_at,
        pushed_by,
        committed_at,
    }))
}

/// A GitHub `deployment` (its first state, pending) or `deployment_status`.
fn deployment(event_type: &str, json: &str) -> Result<Event, Malformed> {
    let payload: DeploymentPayload = serde_json::from_str(json)
        .map_err(|e| Malformed::new(format!("not a {event_type} payload: {e}")))?;
    let deployment = payload.deployment;
    let status = payload.deployment_status;
    let state = status.as_ref().map_or("pending", |s| s.state.as_str());
    let (next, failure) = match state {
        "queued" | "pending" => (Status::Pending, None),
        "in_progress" => (Status::Building, None),
        "success" => (Status::Ready, None),
        "failure" | "error" => (Status::Failed, Some(FailureReason::Error)),
        "inactive" => {
            return Ok(Event::Ignored(
                "an inactive deployment status (a newer deployment replaced it)".into(),
            ));
        }
        other => {
            return Ok(Event::Ignored(format!(
                "deployment_status state {:?} is not one GitHub documents (queued, pending, in_progress, success, failure, error, inactive)",
                shorten(other)
            )));
        }
    };
    let name = status
        .as_ref()
        .and_then(|s| s.environment.clone())
        .or(deployment.environment.clone())
        .unwrap_or_default();
    let Some((environment, suffix)) = environment_of(&name, deployment.production_environment)
    else {
        return Ok(Event::Ignored(format!(
            "a deployment to {:?}, neither staging nor production",
            shorten(&name)
        )));
    };
    if !is_commit_sha(&deployment.sha) {
        return Err(Malformed::new("deployment.sha is not a commit SHA"));
    }
    check_len(
        "repository.full_name",
        &payload.repository.full_name,
        MAX_NAME,
    )
    .map_err(Malformed::new)?;
    let nonempty = |u: &Option<String>| u.clone().filter(|u| !u.is_empty());
    let (url, logs_url, description, occurred_at, creator) = match &status {
        Some(s) => (
            nonempty(&s.environment_url).or(nonempty(&s.target_url)),
            nonempty(&s.log_url).or(nonempty(&s.target_url)),
            nonempty(&s.description),
            s.created_at.as_ref().and_then(|t| t.to_naive(false)),
            s.creator.as_ref().and_then(|c| c.login.clone()),
        ),
        None => (None, None, None, None, None),
    };
    let url = url.filter(|u| u.len() <= MAX_URL && !u.contains('\0'));
    let logs_url = logs_url.filter(|u| u.len() <= MAX_LOGS_URL && !u.contains('\0'));
    Ok(Event::GithubDeployment(GithubDeployment {
        repository: payload.repository.full_name,
        environment,
        environment_suffix: suffix,
        deployment_id: deployment.id,
        commit_sha: deployment.sha.to_ascii_lowercase(),
        status: next,
        failure,
        description: description.map(|d| truncate(storable(&d), MAX_URL)),
        url: url.filter(|_| next == Status::Ready),
        logs_url,
        triggered_by: creator
            .or(deployment.creator.and_then(|c| c.login))
            .and_then(|name| login(&name)),
        occurred_at: occurred_at
            .or(deployment.created_at.and_then(|t| t.to_naive(false)))
            .unwrap_or_else(now),
    }))
}

/// The environment a GitHub environment name means, case-insensitively, and what
/// follows it after a dash (`Production – web`: the Vercel project `web`).
fn environment_of(name: &str, production: bool) -> Option<(Environment, Option<String>)> {
    let lower = name.trim().to_lowercase();
    let (environment, rest) = if let Some(rest) = lower.strip_prefix("production") {
        (Environment::Production, rest)
    } else if let Some(rest) = lower.strip_prefix("staging") {
        (Environment::Staging, rest)
    } else if production {
        (Environment::Production, "")
    } else {
        return None;
    };
    let suffix = rest
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '-' | '–' | '—' | ':'))
        .trim();
    Some((environment, (!suffix.is_empty()).then(|| suffix.to_owned())))
}

/// A user name as the ledger and the row can hold it, or none.
fn login(name: &str) -> Option<String> {
    (!name.is_empty() && check_len("login", name, MAX_NAME).is_ok()).then(|| name.to_owned())
}

/// Keeps ledger reasons short whatever a sender puts in a ref.
fn shorten(s: &str) -> String {
    truncate(storable(s), 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(event: &str, body: &str) -> Event {
        delivery(Some(event), Some("d-1"), ContentType::Json, body.into()).event
    }

    fn push_body(git_ref: &str, after: &str, extra: &str) -> String {
        format!(
            r#"{{"ref":"{git_ref}","before":"{ZERO_SHA}","after":"{after}",{extra}"repository":{{"full_name":"Acme/Site","pushed_at":1795000000}},"head_commit":null}}"#
        )
    }

    const SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

    #[test]
    fn a_branch_push_becomes_a_push_event() {
        let event = parse("push", &push_body("refs/heads/staging", SHA, ""));
        let Event::Push(push) = event else {
            panic!("{event:?}")
        };
        assert_eq!(push.repository, "Acme/Site");
        assert_eq!(push.branch, "staging");
        assert_eq!(push.commit_sha, SHA);
        assert_eq!(push.pushed_at.and_utc().timestamp(), 1_795_000_000);
    }

    #[test]
    fn tags_deletions_and_zero_shas_are_ignored() {
        for body in [
            push_body("refs/tags/v1.0.0", SHA, ""),
            push_body("refs/heads/staging", ZERO_SHA, ""),
            push_body("refs/heads/staging", SHA, r#""deleted":true,"#),
        ] {
            assert!(matches!(parse("push", &body), Event::Ignored(_)), "{body}");
        }
    }

    #[test]
    fn ping_and_other_events_are_ignored_not_malformed() {
        assert_eq!(parse("ping", "{}"), Event::Ignored("ping".into()));
        assert!(matches!(parse("issues", "{}"), Event::Ignored(_)));
    }

    #[test]
    fn a_form_encoded_push_is_read_from_its_payload_field() {
        let form =
            serde_urlencoded::to_string([("payload", push_body("refs/heads/main", SHA, ""))])
                .unwrap();
        let event = delivery(Some("push"), Some("d"), ContentType::Form, form.into()).event;
        assert!(matches!(event, Event::Push(p) if p.branch == "main"));
    }

    #[test]
    fn unreadable_bodies_are_malformed() {
        for body in ["", "{", "[]", r#"{"ref":1}"#, "null"] {
            assert!(
                matches!(parse("push", body), Event::Malformed(_)),
                "{body:?}"
            );
        }
        let bad_sha = push_body("refs/heads/main", "not-a-sha", "");
        assert!(matches!(parse("push", &bad_sha), Event::Malformed(_)));
        let event = delivery(Some("push"), Some("d"), ContentType::Other, b"{}".to_vec()).event;
        assert!(matches!(event, Event::Malformed(m) if m.unsupported_media_type));
    }

    #[test]
    fn a_missing_event_header_is_malformed_and_a_missing_id_uses_the_body_hash() {
        let d = delivery(None, None, ContentType::Json, b"{}".to_vec());
        assert!(matches!(d.event, Event::Malformed(_)));
        assert!(d.delivery_id.starts_with("sha256:"));
    }

    #[test]
    fn over_long_identifiers_are_rejected_before_storage() {
        let long = "x".repeat(300);
        let d = delivery(Some("push"), Some(&long), ContentType::Json, b"{}".to_vec());
        assert!(matches!(d.event, Event::Malformed(_)));
        assert_eq!(d.delivery_id.len(), MAX_DELIVERY_ID);
        let long_repo = push_body("refs/heads/main", SHA, "").replace("Acme/Site", &long);
        assert!(matches!(parse("push", &long_repo), Event::Malformed(_)));
    }

    fn fixture(name: &str) -> Event {
        let body = std::fs::read(format!(
            "{}/fixtures/github/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let event = name.split('.').next().unwrap();
        delivery(Some(event), Some("d"), ContentType::Json, body).event
    }

    #[test]
    fn a_push_says_who_pushed_and_when_the_head_commit_was_made() {
        let Event::Push(push) = fixture("push.production.json") else {
            panic!()
        };
        assert_eq!(push.pushed_by.as_deref(), Some("dana-okafor"));
        // "2026-11-10T16:29:58+01:00"
        assert_eq!(push.committed_at.to_string(), "2026-11-10 15:29:58");
        let Event::Push(push) = fixture("push.null-head-commit.json") else {
            panic!()
        };
        assert_eq!(push.committed_at, push.pushed_at);
    }

    #[test]
    fn every_deployment_status_state_maps_to_a_status_or_is_ignored() {
        let cases = [
            ("deployment.production.json", Some(Status::Pending)),
            (
                "deployment_status.pending.production.json",
                Some(Status::Pending),
            ),
            (
                "deployment_status.queued.staging.json",
                Some(Status::Pending),
            ),
            (
                "deployment_status.in_progress.staging.json",
                Some(Status::Building),
            ),
            (
                "deployment_status.success.production.json",
                Some(Status::Ready),
            ),
            (
                "deployment_status.success.staging.json",
                Some(Status::Ready),
            ),
            (
                "deployment_status.failure.production.json",
                Some(Status::Failed),
            ),
            ("deployment_status.error.staging.json", Some(Status::Failed)),
            ("deployment_status.inactive.production.json", None),
            ("deployment_status.success.preview.json", None),
            ("deployment_status.unknown-state.json", None),
        ];
        for (name, status) in cases {
            match (fixture(name), status) {
                (Event::GithubDeployment(d), Some(status)) => {
                    assert_eq!(d.status, status, "{name}");
                    assert_eq!(d.failure.is_some(), status == Status::Failed, "{name}");
                }
                (Event::Ignored(_), None) => {}
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
        let Event::Ignored(reason) = fixture("deployment_status.unknown-state.json") else {
            panic!()
        };
        assert!(reason.contains("\"exploded\""), "{reason}");
    }

    #[test]
    fn the_vercel_apps_production_status_is_read_despite_its_quirks() {
        // `ref` is a SHA, `Production – web` with an en dash, `production_environment:
        // false`, `environment_url: ""`.
        let Event::GithubDeployment(d) = fixture("deployment_status.success.production.json")
        else {
            panic!()
        };
        assert_eq!(d.environment, Environment::Production);
        assert_eq!(d.environment_suffix.as_deref(), Some("web"));
        assert_eq!(d.deployment_id, 6_912_054_387);
        assert_eq!(d.commit_sha, "28b46f9426190a0e67ec5e6e0809ad5b110e142d");
        assert_eq!(
            d.url.as_deref(),
            Some("https://storefront-3efkf6xdw-acme.vercel.app")
        );
        assert_eq!(
            d.logs_url.as_deref(),
            Some("https://vercel.com/acme/storefront/MHU6u5PV6crcoYeV9mCQdeG57TGx")
        );
        assert_eq!(d.triggered_by.as_deref(), Some("vercel[bot]"));
        assert_eq!(d.occurred_at.to_string(), "2026-11-10 15:31:33");
        let Event::GithubDeployment(d) = fixture("deployment_status.in_progress.staging.json")
        else {
            panic!()
        };
        assert_eq!((d.environment, d.url), (Environment::Staging, None));
    }

    #[test]
    fn environment_names_are_read_case_insensitively_with_their_suffix() {
        let cases = [
            ("Production", false, Some((Environment::Production, None))),
            (
                "production – web",
                false,
                Some((Environment::Production, Some("web"))),
            ),
            (
                "Production - api",
                false,
                Some((Environment::Production, Some("api"))),
            ),
            ("STAGING", false, Some((Environment::Staging, None))),
            ("Preview – web", false, None),
            ("qa", false, None),
            ("github-pages", true, Some((Environment::Production, None))),
        ];
        for (name, production, expected) in cases {
            let got = environment_of(name, production);
            let got = got.as_ref().map(|(e, s)| (*e, s.as_deref()));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("ééé".into(), 3), "é");
    }
}
