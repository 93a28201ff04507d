//! Payload parsing and mapping: any body, as JSON or a form, with any event header,
//! becomes a delivery whose stored fields fit their columns. Never a panic.

#![no_main]

use deploy_tracker::webhooks::{
    ContentType, Delivery, Event, MAX_DELIVERY_ID, MAX_EVENT_TYPE, MAX_NAME, MAX_URL,
    MAX_VERCEL_ID, github, vercel,
};
use libfuzzer_sys::fuzz_target;

fn check(delivery: &Delivery) {
    assert!(!delivery.delivery_id.is_empty());
    assert!(delivery.delivery_id.len() <= MAX_DELIVERY_ID);
    assert!(delivery.event_type.len() <= MAX_EVENT_TYPE);
    // Postgres text cannot hold NUL: nothing that reaches a text column may carry one.
    assert!(!delivery.delivery_id.contains('\0'));
    assert!(!delivery.event_type.contains('\0'));
    match &delivery.event {
        Event::Push(push) => {
            assert!(push.repository.len() <= MAX_NAME && push.branch.len() <= MAX_NAME);
            assert!(!push.repository.contains('\0') && !push.branch.contains('\0'));
            assert!(matches!(push.commit_sha.len(), 40 | 64));
        }
        Event::Vercel(v) => {
            assert!(!v.deployment_id.is_empty() && v.deployment_id.len() <= MAX_VERCEL_ID);
            assert!(v.url.as_ref().is_none_or(|u| u.len() <= MAX_URL));
            for text in [&v.project_id, &v.repository, &v.commit_ref, &v.url]
                .into_iter()
                .flatten()
                .chain([&v.deployment_id])
            {
                assert!(text.len() <= MAX_NAME && !text.contains('\0'), "{text:?}");
            }
        }
        Event::Ignored(reason) => assert!(!reason.contains('\0')),
        Event::Malformed(m) => assert!(!m.reason.contains('\0')),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 3 {
        0 => ContentType::Json,
        1 => ContentType::Form,
        _ => ContentType::Other,
    };
    let event = ["push", "ping", "", "issues"][(selector as usize / 3) % 4];
    check(&github::delivery(
        Some(event),
        Some("fuzz"),
        content_type,
        body.to_vec(),
    ));
    check(&github::delivery(
        Some(event),
        None,
        ContentType::sniff(body),
        body.to_vec(),
    ));
    check(&vercel::delivery(content_type, body.to_vec()));
});
