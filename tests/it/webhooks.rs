//! Webhook deliveries end to end: verification, mapping, ordering and duplicates.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy_tracker::webhooks::signature::{sign_github, sign_vercel};
use serde_json::json;

use crate::db_test;
use crate::helpers::{
    GITHUB_SECRET, TestApp, VERCEL_SECRET, fixture, github_request, vercel_request,
};

const STAGING_SHA: &str = "95fba5a7ac4bec75f64568229f125c7f526ed240";
const STAGING_DPL: &str = "dpl_QraLNYdYHMtJFjYejoSuw8b6zBmN";
const PRODUCTION_SHA: &str = "28b46f9426190a0e67ec5e6e0809ad5b110e142d";

const STAGING_FLOW: [&str; 3] = [
    "github/push.staging.json",
    "vercel/deployment.created.staging.json",
    "vercel/deployment.succeeded.staging.json",
];

db_test!(a_staging_push_build_and_success_give_one_ready_row);
async fn a_staging_push_build_and_success_give_one_ready_row(app: TestApp) {
    let app_id = app.storefront().await;

    for (name, expected) in STAGING_FLOW.iter().zip(["pending", "building", "ready"]) {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["outcome"], "applied", "{name}: {body}");
        let (_, list) = app.get(&format!("/api/apps/{app_id}/deployments")).await;
        assert_eq!(list["items"][0]["status"], expected, "{name}");
    }

    let (status, list) = app.get(&format!("/api/apps/{app_id}/deployments")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["nextCursor"], serde_json::Value::Null);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let row = &items[0];
    assert_eq!(row["appId"], app_id.as_str());
    assert_eq!(row["environment"], "staging");
    assert_eq!(row["status"], "ready");
    assert_eq!(row["githubCommitSha"], STAGING_SHA);
    assert_eq!(row["vercelDeploymentId"], STAGING_DPL);
    assert_eq!(
        row["deploymentUrl"],
        "https://storefront-6hwqnpxot-acme.vercel.app"
    );
    assert!(row["createdAt"].as_str().unwrap().ends_with('Z'));

    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|d| d.outcome == "applied"));
    assert!(ledger.iter().all(|d| d.deployment_id.is_some()));
    assert_eq!(
        ledger[0].body,
        fixture(STAGING_FLOW[0]),
        "raw body kept byte for byte"
    );
}

db_test!(a_production_build_error_leaves_a_failed_row);
async fn a_production_build_error_leaves_a_failed_row(app: TestApp) {
    app.storefront().await;
    for name in [
        "github/push.production.json",
        "vercel/deployment.created.production.json",
        "vercel/deployment.error.production.json",
    ] {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    // A success reported after the failure is stale: failed is final.
    let (status, body) = app
        .fixture("vercel/deployment.succeeded.production.json")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "stale");

    let rows = app.deployments().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].environment.as_str(), "production");
    assert_eq!(rows[0].status.as_str(), "failed");
    assert_eq!(rows[0].error_message.as_deref(), Some("error"));
    assert_eq!(rows[0].github_commit_sha.as_deref(), Some(PRODUCTION_SHA));
    assert_eq!(rows[0].deployment_url, None);
}

db_test!(a_canceled_deployment_is_failed_with_reason_canceled);
async fn a_canceled_deployment_is_failed_with_reason_canceled(app: TestApp) {
    app.storefront().await;
    let (status, body) = app.fixture("vercel/deployment.canceled.staging.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = app.deployments().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status.as_str(), "failed");
    assert_eq!(rows[0].error_message.as_deref(), Some("canceled"));
    assert_eq!(rows[0].environment.as_str(), "staging");
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

db_test!(every_arrival_order_of_a_flow_ends_in_the_same_single_row);
async fn every_arrival_order_of_a_flow_ends_in_the_same_single_row(first: TestApp) {
    let backend = first.backend;
    drop(first);
    let mut tables = Vec::new();
    for order in permutations(&STAGING_FLOW) {
        let app = TestApp::new(backend).await;
        app.storefront().await;
        for name in &order {
            let (status, body) = app.fixture(name).await;
            assert!(status.is_success(), "{order:?} {name}: {body}");
        }
        let rows = app.deployments().await;
        assert_eq!(rows.len(), 1, "{order:?}");
        let row = &rows[0];
        tables.push((
            row.status.as_str(),
            row.github_commit_sha.clone(),
            row.vercel_deployment_id.clone(),
            row.deployment_url.clone(),
            row.created_at,
            row.error_message.clone(),
        ));
    }
    assert_eq!(tables.len(), 6);
    assert!(tables.iter().all(|t| t == &tables[0]), "{tables:#?}");
    assert_eq!(tables[0].0, "ready");
}

db_test!(every_delivery_sent_twice_changes_nothing);
async fn every_delivery_sent_twice_changes_nothing(app: TestApp) {
    app.storefront().await;
    let all = [
        &STAGING_FLOW[..],
        &[
            "github/push.production.json",
            "vercel/deployment.created.production.json",
            "vercel/deployment.succeeded.production.json",
            "vercel/deployment.canceled.staging.json",
            "github/push.tag.json",
            "vercel/deployment.created.unknown-project.json",
            "github/ping.default.json",
        ],
    ]
    .concat();
    for name in &all {
        app.fixture(name).await;
    }
    let table = app.table().await;
    let ledger = app.deliveries().await;
    for name in &all {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["outcome"], "duplicate", "{name}");
    }
    assert_eq!(app.table().await, table);
    // Only each row's count of copies moved.
    let again = app.deliveries().await;
    assert_eq!(again.len(), all.len());
    for (before, after) in ledger.iter().zip(&again) {
        assert_eq!(
            (before.attempts, after.attempts),
            (1, 2),
            "{}",
            after.delivery_id
        );
        assert!(after.last_received_at > before.last_received_at);
        let after = deploy_tracker::store::deliveries::Model {
            attempts: 1,
            last_received_at: before.last_received_at,
            ..after.clone()
        };
        assert_eq!(&after, before, "the ledger row is otherwise untouched");
    }
}

db_test!(tags_deletions_other_branches_and_previews_leave_no_rows);
async fn tags_deletions_other_branches_and_previews_leave_no_rows(app: TestApp) {
    app.storefront().await;
    let ignored = [
        "github/push.tag.json",
        "github/push.branch-deletion.json",
        "github/push.other-branch.json",
        "vercel/deployment.created.preview.json",
        "vercel/deployment-ready.legacy.json",
        "vercel/deployment.check-rerequested.default.json",
        "vercel/test-webhook.default.json",
    ];
    for name in ignored {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(body["outcome"], "ignored", "{name}: {body}");
    }
    assert!(app.deployments().await.is_empty());
    let ledger = app.deliveries().await;
    assert_eq!(
        ledger.len(),
        ignored.len(),
        "every ignored delivery is kept"
    );
    assert!(
        ledger
            .iter()
            .all(|d| d.outcome == "ignored" && !d.reason.is_empty())
    );
}

db_test!(ping_answers_200_and_is_recorded);
async fn ping_answers_200_and_is_recorded(app: TestApp) {
    let (status, body) = app.fixture("github/ping.default.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "ignored");
    assert_eq!(app.delivery_count().await, 1);
}

db_test!(deliveries_for_unknown_apps_are_kept_as_unmatched);
async fn deliveries_for_unknown_apps_are_kept_as_unmatched(app: TestApp) {
    app.storefront().await;
    let (status, body) = app
        .fixture("vercel/deployment.created.unknown-project.json")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "unmatched");
    let (status, body) = app.fixture("github/push.monorepo.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "unmatched");

    assert!(app.deployments().await.is_empty());
    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|d| d.outcome == "unmatched"));
    assert_eq!(
        ledger[0].body,
        fixture("vercel/deployment.created.unknown-project.json")
    );
}

db_test!(a_monorepo_push_creates_a_row_for_each_app_of_the_repo);
async fn a_monorepo_push_creates_a_row_for_each_app_of_the_repo(app: TestApp) {
    for name in ["web", "admin"] {
        app.register(json!({"name": name, "githubRepo": "acme-apps/monorepo"}))
            .await;
    }
    let (status, body) = app.fixture("github/push.monorepo.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = app.deployments().await;
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].app_id, rows[1].app_id);
    assert!(
        rows.iter()
            .all(|r| r.environment.as_str() == "production" && r.status.as_str() == "pending")
    );
}

db_test!(repositories_match_case_insensitively_and_branches_per_app);
async fn repositories_match_case_insensitively_and_branches_per_app(app: TestApp) {
    app.storefront().await;
    let (status, body) = app.fixture("github/push.uppercase-repo.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.deployments().await[0].environment.as_str(), "staging");

    // An app whose production branch is "release" treats main as just another branch.
    let other = TestApp::new(app.backend).await;
    other
        .register(json!({
            "name": "storefront",
            "githubRepo": "acme-apps/storefront",
            "productionBranch": "release",
            "stagingBranch": "main",
        }))
        .await;
    let (_, body) = other.fixture("github/push.production.json").await;
    assert_eq!(body["outcome"], "applied");
    assert_eq!(other.deployments().await[0].environment.as_str(), "staging");
    let (status, body) = other.fixture("github/push.staging.json").await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
}

db_test!(vercel_targets_null_and_custom_environments_map_to_staging);
async fn vercel_targets_null_and_custom_environments_map_to_staging(app: TestApp) {
    app.storefront().await;
    for name in [
        "vercel/deployment.created.target-null.json",
        "vercel/deployment.created.custom-environment.json",
        "vercel/deployment.created.custom-environment-target-slug.json",
        "vercel/deployment.created.team-null.json",
        "vercel/deployment.created.no-region.json",
    ] {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let rows = app.deployments().await;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.status.as_str() == "building"));
    let staging = rows
        .iter()
        .filter(|r| r.environment.as_str() == "staging")
        .count();
    assert!(staging >= 3, "{rows:#?}");
}

db_test!(a_vercel_event_links_to_the_row_its_push_created);
async fn a_vercel_event_links_to_the_row_its_push_created(app: TestApp) {
    app.storefront().await;
    app.fixture("github/push.new-branch.json").await;
    let (_, body) = app
        .fixture("vercel/deployment.created.target-null.json")
        .await;
    assert_eq!(body["outcome"], "applied");
    let rows = app.deployments().await;
    assert_eq!(rows.len(), 1, "linked, not a second row");
    assert_eq!(rows[0].status.as_str(), "building");
    assert!(rows[0].vercel_deployment_id.is_some());
}

db_test!(a_form_encoded_push_is_verified_over_the_form_bytes);
async fn a_form_encoded_push_is_verified_over_the_form_bytes(app: TestApp) {
    app.storefront().await;
    let json = String::from_utf8(fixture("github/push.staging.json")).unwrap();
    let form = format!("payload={}", urlencode(&json));
    let request = Request::post("/webhooks/github")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "push")
        .header("x-github-delivery", "form-1")
        .header(
            "x-hub-signature-256",
            sign_github(GITHUB_SECRET.as_bytes(), form.as_bytes()),
        )
        .body(Body::from(form.clone()))
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.deployments().await.len(), 1);
    assert_eq!(app.deliveries().await[0].body, form.into_bytes());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

db_test!(a_rotated_secret_still_verifies);
async fn a_rotated_secret_still_verifies(app: TestApp) {
    let app = TestApp::with_secrets(app.backend, "gh-new,gh-old", "vc-new, vc-old")
        .await
        .unwrap();
    app.storefront().await;
    let push = fixture("github/push.staging.json");
    let (status, body) = app
        .send(github_request("push", "r-1", &push, "gh-old"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = fixture("vercel/deployment.created.staging.json");
    let (status, body) = app.send(vercel_request(&created, "vc-new")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app
        .send(vercel_request(
            &fixture("vercel/deployment.succeeded.staging.json"),
            "vc-retired",
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

db_test!(bad_signatures_are_refused_and_nothing_is_stored);
async fn bad_signatures_are_refused_and_nothing_is_stored(app: TestApp) {
    app.storefront().await;
    let body = fixture("github/push.staging.json");
    let good = sign_github(GITHUB_SECRET.as_bytes(), &body);
    let hex = good.trim_start_matches("sha256=").to_owned();
    let mut flipped = hex.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let github_headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("sha256=".into()),
        Some(hex.clone()),
        Some(format!("sha1={hex}")),
        Some(format!("sha256={}", &hex[..20])),
        Some(format!("sha256={hex}00")),
        Some(format!("sha256={flipped}")),
        Some(format!("sha256={}", "g".repeat(64))),
        Some(format!(" {good}")),
        Some(format!("SHA256={hex}")),
        Some(sign_github(b"wrong-secret", &body)),
        Some(sign_github(GITHUB_SECRET.as_bytes(), b"another body")),
    ];
    let total = github_headers.len();
    for header in github_headers {
        let mut request = Request::post("/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", "sig-test");
        if let Some(h) = &header {
            request = request.header("x-hub-signature-256", h.as_str());
        }
        let (status, response) = app
            .send(request.body(Body::from(body.clone())).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}: {response}");
        assert_eq!(response["error"], "unauthorized");
    }
    // The legacy SHA-1 header alone is not enough.
    let legacy = Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header(
            "x-hub-signature",
            format!("sha1={}", sign_vercel(GITHUB_SECRET.as_bytes(), &body)),
        )
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(app.send(legacy).await.0, StatusCode::UNAUTHORIZED);

    let vercel_body = fixture("vercel/deployment.created.staging.json");
    let good = sign_vercel(VERCEL_SECRET.as_bytes(), &vercel_body);
    for header in [
        None,
        Some(String::new()),
        Some(format!("sha1={good}")),
        Some(good[..39].to_owned()),
        Some(sign_vercel(b"wrong", &vercel_body)),
        Some(sign_github(VERCEL_SECRET.as_bytes(), &vercel_body)),
    ] {
        let mut request =
            Request::post("/webhooks/vercel").header("content-type", "application/json");
        if let Some(h) = &header {
            request = request.header("x-vercel-signature", h.as_str());
        }
        let (status, _) = app
            .send(request.body(Body::from(vercel_body.clone())).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
    }
    assert!(total >= 10);
    assert_eq!(
        app.delivery_count().await,
        0,
        "nothing unverified is stored"
    );
    assert!(app.deployments().await.is_empty());
}

db_test!(a_provider_without_a_secret_refuses_everything_with_503);
async fn a_provider_without_a_secret_refuses_everything_with_503(app: TestApp) {
    let app = TestApp::with_secrets(app.backend, "", VERCEL_SECRET)
        .await
        .unwrap();
    let body = fixture("github/push.staging.json");
    for request in [
        github_request("push", "x", &body, GITHUB_SECRET),
        github_request("push", "x", &body, ""),
        Request::post("/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .body(Body::from(body.clone()))
            .unwrap(),
    ] {
        let (status, response) = app.send(request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{response}");
        assert_eq!(response["error"], "not_configured");
    }
    assert_eq!(app.delivery_count().await, 0);
}

db_test!(malformed_oversized_and_wrongly_typed_bodies_get_4xx);
async fn malformed_oversized_and_wrongly_typed_bodies_get_4xx(mut app: TestApp) {
    app.storefront().await;
    // Signed but unreadable: refused with 400, and kept raw for re-processing.
    for (i, body) in [&b"{not json"[..], b"[]", b"{\"ref\": 7}", b"\xff\xfe\xfd"]
        .iter()
        .enumerate()
    {
        let (status, response) = app.github("push", &format!("bad-{i}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{response}");
        assert_eq!(response["error"], "bad_request");
        assert!(response["message"].as_str().unwrap().len() > 5);
    }
    let (status, _) = app.vercel(b"{\"type\":\"deployment.created\"}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 5);
    assert!(ledger.iter().all(|d| d.outcome == "malformed"));

    // Wrong content type.
    let body = fixture("vercel/deployment.created.staging.json");
    let request = Request::post("/webhooks/vercel")
        .header("content-type", "text/plain")
        .header(
            "x-vercel-signature",
            sign_vercel(VERCEL_SECRET.as_bytes(), &body),
        )
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, response) = app.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{response}");

    // Over the limit.
    app.reconfigure(|s| s.max_body_bytes = 1024);
    let big = format!("{{\"id\":\"big\",\"pad\":\"{}\"}}", "x".repeat(4096));
    let (status, response) = app.vercel(big.as_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{response}");
    assert_eq!(response["error"], "payload_too_large");
    assert!(app.deployments().await.is_empty());
}
