//! GitHub deliveries: typed `push` and `ping` payloads, mapped to [`Event`].

use serde::Deserialize;

use super::{
    ContentType, Delivery, Event, MAX_DELIVERY_ID, MAX_EVENT_TYPE, MAX_NAME, Malformed, Provider,
    Push, Source, Timestamp, body_digest_id, check_len, is_commit_sha, now, storable, truncate,
};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
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
    Ok(Event::Push(Push {
        repository: payload.repository.full_name,
        branch: branch.to_owned(),
        commit_sha: payload.after.to_ascii_lowercase(),
        pushed_at,
    }))
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

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("ééé".into(), 3), "é");
    }
}
