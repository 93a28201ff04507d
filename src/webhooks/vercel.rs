//! Vercel deliveries: the `{id, type, createdAt, payload}` envelope and the
//! `deployment.*` events, mapped to [`Event`].

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{
    ContentType, Delivery, Event, MAX_DELIVERY_ID, MAX_EVENT_TYPE, MAX_LOGS_URL, MAX_NAME, MAX_URL,
    MAX_VERCEL_ID, Malformed, Provider, Rollback, Source, Target, Timestamp, VercelDeployment,
    body_digest_id, check_len, is_commit_sha, now, storable, truncate,
};
use crate::deployments::state::Status;
use crate::store::deployments::FailureReason;

/// Only the envelope's id and type: read first, so that a delivery whose payload
/// is not understood is still keyed by its own id.
#[derive(Debug, Deserialize)]
struct EnvelopeHead {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "createdAt", default)]
    created_at: Option<Timestamp>,
    payload: Payload,
}

#[derive(Debug, Deserialize)]
struct Payload {
    deployment: Deployment,
    #[serde(default)]
    links: Option<Links>,
    #[serde(default)]
    project: Option<Project>,
    /// `"production"`, `"staging"`, a custom environment's slug, or null.
    #[serde(default)]
    target: Option<String>,
    #[serde(rename = "customEnvironment", default)]
    custom_environment: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    id: String,
    #[serde(default)]
    url: Option<String>,
    /// Vercel's meta values are strings; anything else is ignored rather than fatal.
    #[serde(default)]
    meta: HashMap<String, serde_json::Value>,
    #[serde(rename = "customEnvironment", default)]
    custom_environment: Option<IgnoredAny>,
    #[serde(rename = "inspectorUrl", default)]
    inspector_url: Option<String>,
    #[serde(rename = "errorMessage", default)]
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Links {
    #[serde(default)]
    deployment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Project {
    id: String,
}

/// `deployment.rollback` and `deployment.promoted`: which deployment serves now.
#[derive(Debug, Deserialize)]
struct ServingEnvelope {
    #[serde(rename = "createdAt", default)]
    created_at: Option<Timestamp>,
    payload: ServingPayload,
}

#[derive(Debug, Deserialize)]
struct ServingPayload {
    project: Project,
    #[serde(rename = "toDeploymentId", default)]
    to_deployment_id: Option<String>,
    #[serde(default)]
    deployment: Option<DeploymentId>,
}

#[derive(Debug, Deserialize)]
struct DeploymentId {
    id: String,
}

/// Builds a delivery from a raw (already verified) Vercel body.
pub fn delivery(content_type: ContentType, body: Vec<u8>) -> Delivery {
    let head = serde_json::from_slice::<EnvelopeHead>(&body);
    let (delivery_id, event_type, event) = match (content_type, head) {
        (ContentType::Json, Ok(head)) => {
            let event = check_len("id", &head.id, MAX_DELIVERY_ID)
                .and_then(|()| check_len("type", &head.event_type, MAX_EVENT_TYPE))
                .map_err(Malformed::new)
                .and_then(|()| event(&head.event_type, &body))
                .unwrap_or_else(Event::Malformed);
            // Kept in the ledger whatever they hold, so made storable.
            let id = if head.id.contains('\0') {
                body_digest_id(&body)
            } else {
                head.id
            };
            (id, storable(&head.event_type), event)
        }
        (ContentType::Json, Err(e)) => (
            body_digest_id(&body),
            String::new(),
            Event::Malformed(Malformed::new(format!(
                "not a Vercel webhook envelope: {e}"
            ))),
        ),
        (_, _) => (
            body_digest_id(&body),
            String::new(),
            Event::Malformed(Malformed {
                reason: "Vercel deliveries must be application/json".into(),
                unsupported_media_type: true,
            }),
        ),
    };
    let delivery_id = if delivery_id.is_empty() {
        body_digest_id(&body)
    } else {
        delivery_id
    };
    Delivery {
        provider: Provider::Vercel,
        delivery_id: truncate(delivery_id, MAX_DELIVERY_ID),
        event_type: truncate(event_type, MAX_EVENT_TYPE),
        body,
        event,
        source: Source::Webhook,
    }
}

fn event(event_type: &str, body: &[u8]) -> Result<Event, Malformed> {
    let (status, failure) = match event_type {
        "deployment.created" => (Status::Building, None),
        "deployment.succeeded" | "deployment.ready" => (Status::Ready, None),
        "deployment.error" => (Status::Failed, Some(FailureReason::Error)),
        "deployment.canceled" => (Status::Failed, Some(FailureReason::Canceled)),
        "deployment.rollback" | "deployment.promoted" => return serving(event_type, body),
        other => {
            return Ok(Event::Ignored(format!(
                "{} events are not tracked",
                truncate(other.to_owned(), 100)
            )));
        }
    };
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| Malformed::new(format!("not a {event_type} payload: {e}")))?;
    let payload = envelope.payload;
    let deployment = payload.deployment;
    let meta = |key: &str| {
        deployment
            .meta
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let commit_sha = meta("githubCommitSha").map(|s| s.to_ascii_lowercase());
    let commit_ref = meta("githubCommitRef");
    let repository = match (meta("githubOrg"), meta("githubRepo")) {
        (Some(org), Some(repo)) => Some(format!("{org}/{repo}")),
        _ => None,
    };
    let url = deployment
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| {
            if u.starts_with("https://") {
                u.to_owned()
            } else {
                format!("https://{u}")
            }
        });
    let project_id = payload.project.map(|p| p.id);
    let logs_url = payload
        .links
        .and_then(|links| links.deployment)
        .or(deployment.inspector_url)
        .filter(|u| !u.is_empty());
    let error_message = match failure {
        Some(FailureReason::Error) => deployment
            .error_message
            .filter(|m| !m.is_empty())
            .map(|m| truncate(storable(&m), MAX_URL)),
        _ => None,
    };
    let triggered_by = meta("githubCommitAuthorLogin");
    let custom = payload.custom_environment.is_some() || deployment.custom_environment.is_some();
    // Vercel documents `production`, `staging` and null; a custom environment shows
    // up as a `customEnvironment` object or as its slug in `target`. Only an
    // explicit preview is ignored here; null is decided by branch later.
    let target = match payload.target.as_deref() {
        Some("production") => Target::Production,
        Some("preview") => return Ok(Event::Ignored("a preview deployment".into())),
        Some(_) => Target::Staging,
        None if custom => Target::Staging,
        None => Target::ByBranch,
    };

    if deployment.id.is_empty() {
        return Err(Malformed::new("deployment.id is empty"));
    }
    check_len("deployment.id", &deployment.id, MAX_VERCEL_ID)
        .and_then(|()| {
            url.as_deref()
                .map_or(Ok(()), |u| check_len("deployment.url", u, MAX_URL))
        })
        .and_then(|()| {
            project_id
                .as_deref()
                .map_or(Ok(()), |p| check_len("project.id", p, MAX_NAME))
        })
        .and_then(|()| {
            repository
                .as_deref()
                .map_or(Ok(()), |r| check_len("meta.githubRepo", r, MAX_NAME))
        })
        .and_then(|()| {
            commit_ref
                .as_deref()
                .map_or(Ok(()), |r| check_len("meta.githubCommitRef", r, MAX_NAME))
        })
        .and_then(|()| {
            triggered_by.as_deref().map_or(Ok(()), |r| {
                check_len("meta.githubCommitAuthorLogin", r, MAX_NAME)
            })
        })
        .and_then(|()| {
            logs_url
                .as_deref()
                .map_or(Ok(()), |u| check_len("links.deployment", u, MAX_LOGS_URL))
        })
        .map_err(Malformed::new)?;
    if let Some(sha) = &commit_sha
        && !is_commit_sha(sha)
    {
        return Err(Malformed::new("meta.githubCommitSha is not a commit SHA"));
    }

    Ok(Event::Vercel(VercelDeployment {
        status,
        failure,
        error_message,
        triggered_by,
        logs_url,
        deployment_id: deployment.id,
        url,
        project_id,
        repository,
        target,
        commit_sha,
        commit_ref,
        occurred_at: envelope
            .created_at
            .and_then(|t| t.to_naive(true))
            .unwrap_or_else(now),
    }))
}

/// `deployment.rollback` (`payload.toDeploymentId`) or `deployment.promoted`
/// (`payload.deployment.id`): the deployment production serves from now on.
fn serving(event_type: &str, body: &[u8]) -> Result<Event, Malformed> {
    let envelope: ServingEnvelope = serde_json::from_slice(body)
        .map_err(|e| Malformed::new(format!("not a {event_type} payload: {e}")))?;
    let promoted = event_type == "deployment.promoted";
    let payload = envelope.payload;
    let to = if promoted {
        payload.deployment.map(|d| d.id)
    } else {
        payload
            .to_deployment_id
            .or(payload.deployment.map(|d| d.id))
    };
    let Some(to) = to.filter(|id| !id.is_empty()) else {
        return Err(Malformed::new(if promoted {
            "deployment.promoted has no deployment.id"
        } else {
            "deployment.rollback has no toDeploymentId"
        }));
    };
    check_len("toDeploymentId", &to, MAX_VERCEL_ID)
        .and_then(|()| check_len("project.id", &payload.project.id, MAX_NAME))
        .map_err(Malformed::new)?;
    Ok(Event::Rollback(Rollback {
        project_id: payload.project.id,
        to,
        promoted,
        occurred_at: envelope
            .created_at
            .and_then(|t| t.to_naive(true))
            .unwrap_or_else(now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

    fn body(event_type: &str, target: &str, extra_payload: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"evt_1","type":"{event_type}","createdAt":1795000000123,"payload":{{"team":null,{extra_payload}"deployment":{{"id":"dpl_1","url":"site-abc.vercel.app","meta":{{"githubCommitSha":"{SHA}","githubCommitRef":"staging","githubOrg":"acme","githubRepo":"site"}}}},"project":{{"id":"prj_1"}},"target":{target}}}}}"#
        )
        .into_bytes()
    }

    fn parse(bytes: Vec<u8>) -> Delivery {
        delivery(ContentType::Json, bytes)
    }

    #[test]
    fn each_deployment_type_maps_to_its_status() {
        let cases = [
            ("deployment.created", Status::Building, None),
            ("deployment.succeeded", Status::Ready, None),
            ("deployment.ready", Status::Ready, None),
            (
                "deployment.error",
                Status::Failed,
                Some(FailureReason::Error),
            ),
            (
                "deployment.canceled",
                Status::Failed,
                Some(FailureReason::Canceled),
            ),
        ];
        for (event_type, status, failure) in cases {
            let d = parse(body(event_type, r#""production""#, ""));
            assert_eq!(d.delivery_id, "evt_1");
            assert_eq!(d.event_type, event_type);
            let Event::Vercel(v) = d.event else {
                panic!("{event_type}: {:?}", d.event)
            };
            assert_eq!((v.status, v.failure), (status, failure), "{event_type}");
            assert_eq!(v.deployment_id, "dpl_1");
            assert_eq!(v.url.as_deref(), Some("https://site-abc.vercel.app"));
            assert_eq!(v.project_id.as_deref(), Some("prj_1"));
            assert_eq!(v.repository.as_deref(), Some("acme/site"));
            assert_eq!(v.commit_sha.as_deref(), Some(SHA));
            assert_eq!(v.target, Target::Production);
            assert_eq!(
                v.occurred_at.and_utc().timestamp_millis(),
                1_795_000_000_123
            );
        }
    }

    #[test]
    fn targets_map_to_environments_or_previews() {
        let target = |t: &str, extra: &str| match parse(body("deployment.created", t, extra)).event
        {
            Event::Vercel(v) => Some(v.target),
            _ => None,
        };
        assert_eq!(target(r#""staging""#, ""), Some(Target::Staging));
        assert_eq!(target("null", ""), Some(Target::ByBranch));
        assert_eq!(
            target(
                r#""qa""#,
                r#""customEnvironment":{"id":"env_1","slug":"qa"},"#
            ),
            Some(Target::Staging)
        );
        assert_eq!(target(r#""qa""#, ""), Some(Target::Staging));
        assert_eq!(
            target("null", r#""customEnvironment":{"id":"env_1","slug":"qa"},"#),
            Some(Target::Staging)
        );
        assert_eq!(target(r#""preview""#, ""), None);
    }

    #[test]
    fn unknown_and_legacy_types_are_ignored_but_keep_their_id() {
        for t in ["deployment-ready", "test-webhook", "project.created"] {
            let d = parse(format!(r#"{{"id":"evt_9","type":"{t}","payload":{{}}}}"#).into_bytes());
            assert_eq!(d.delivery_id, "evt_9");
            assert!(matches!(d.event, Event::Ignored(_)), "{t}");
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/vercel/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_deployment_event_carries_who_triggered_it_and_where_its_logs_are() {
        let Event::Vercel(v) = parse(fixture("deployment.succeeded.production.json")).event else {
            panic!()
        };
        assert_eq!(v.triggered_by.as_deref(), Some("dana-okafor"));
        assert_eq!(
            v.logs_url.as_deref(),
            Some("https://vercel.com/acme/storefront/MHU6u5PV6crcoYeV9mCQdeG57TGx")
        );
        assert_eq!((v.failure, v.error_message), (None, None));
        let Event::Vercel(v) = parse(fixture("deployment.canceled.staging.json")).event else {
            panic!()
        };
        assert_eq!(v.failure, Some(FailureReason::Canceled));
    }

    #[test]
    fn rollbacks_and_promotions_name_the_deployment_that_serves_now() {
        let Event::Rollback(r) = parse(fixture("deployment.rollback.production.json")).event else {
            panic!()
        };
        assert_eq!(r.project_id, "prj_storefront0000000000000001");
        assert_eq!(r.to, "dpl_MHU6u5PV6crcoYeV9mCQdeG57TGx");
        assert!(!r.promoted);
        assert_eq!(
            r.occurred_at.and_utc().timestamp_millis(),
            1_794_473_100_512
        );
        let Event::Rollback(p) = parse(fixture("deployment.promoted.production.json")).event else {
            panic!()
        };
        assert_eq!(p.to, "dpl_MHU6u5PV6crcoYeV9mCQdeG57TGx");
        assert!(p.promoted);
        for bad in [
            r#"{"id":"e","type":"deployment.rollback","payload":{"project":{"id":"p"}}}"#,
            r#"{"id":"e","type":"deployment.promoted","payload":{"project":{"id":"p"}}}"#,
            r#"{"id":"e","type":"deployment.rollback","payload":{"toDeploymentId":"d"}}"#,
        ] {
            assert!(
                matches!(parse(bad.into()).event, Event::Malformed(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_envelope_is_malformed_and_keyed_by_body_hash() {
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"type":"deployment.created"}"#,
            b"\xff\xfe",
        ] {
            let d = parse(bad.to_vec());
            assert!(matches!(d.event, Event::Malformed(_)));
            assert!(d.delivery_id.starts_with("sha256:"));
        }
    }

    #[test]
    fn a_known_type_with_a_broken_payload_is_malformed_under_its_own_id() {
        let d = parse(br#"{"id":"evt_2","type":"deployment.created","payload":{}}"#.to_vec());
        assert_eq!(d.delivery_id, "evt_2");
        assert!(matches!(d.event, Event::Malformed(_)));
    }

    #[test]
    fn non_string_meta_values_and_missing_fields_are_tolerated() {
        let bytes = br#"{"id":"e","type":"deployment.created","payload":{"deployment":{"id":"dpl_x","meta":{"githubCommitSha":12,"other":{"a":1}}},"target":null}}"#;
        let Event::Vercel(v) = parse(bytes.to_vec()).event else {
            panic!()
        };
        assert_eq!(v.commit_sha, None);
        assert_eq!(v.url, None);
        assert_eq!(v.project_id, None);
    }

    #[test]
    fn over_long_values_are_malformed() {
        let long_url = body("deployment.succeeded", r#""production""#, "")
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .replace("site-abc.vercel.app", &"a".repeat(300));
        assert!(matches!(
            parse(long_url.into_bytes()).event,
            Event::Malformed(_)
        ));
    }

    #[test]
    fn a_non_json_content_type_is_unsupported() {
        let d = delivery(ContentType::Form, body("deployment.created", "null", ""));
        assert!(matches!(d.event, Event::Malformed(m) if m.unsupported_media_type));
    }
}
