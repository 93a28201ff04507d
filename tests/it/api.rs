//! The `/api` routes: app registry, deployment history, the delivery ledger, auth,
//! and the OpenAPI document.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{NaiveDate, NaiveDateTime};
use deploy_tracker::store::deployments::{Environment, Status};
use deploy_tracker::store::{deliveries, deployments};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::db_test;
use crate::helpers::{TestApp, fixture};

db_test!(apps_are_registered_listed_and_fetched);
async fn apps_are_registered_listed_and_fetched(app: TestApp) {
    let id = app.storefront().await;
    let (status, body) = app.get(&format!("/api/apps/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "storefront");
    assert_eq!(body["stagingBranch"], "staging");
    assert_eq!(body["productionBranch"], "main");
    let (_, list) = app.get("/api/apps").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["nextCursor"], serde_json::Value::Null);

    let (status, body) = app
        .post_json(
            "/api/apps",
            json!({"name": "storefront", "githubRepo": "a/b"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for bad in [
        json!({"name": "x", "githubRepo": "not-a-repo"}),
        json!({"name": "", "githubRepo": "a/b"}),
        json!({"name": "x", "githubRepo": "a/b", "stagingBranch": "main"}),
        json!({"name": "x"}),
        json!({"name": "x", "githubRepo": "a/b", "bogus": 1}),
    ] {
        let (status, body) = app.post_json("/api/apps", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, _) = app.get("/api/apps/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .get("/api/apps/00000000-0000-0000-0000-000000000000/deployments")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

db_test!(the_api_token_guards_every_api_route);
async fn the_api_token_guards_every_api_route(mut app: TestApp) {
    let (status, _) = app
        .send(Request::get("/api/apps").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .send(
            Request::get("/api/apps")
                .header("authorization", "Bearer wrong")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    app.reconfigure(|s| s.api_token = None);
    let (status, _) = app
        .send(Request::get("/api/apps").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "reads are open without API_TOKEN");
    let (status, body) = app
        .send(
            Request::post("/api/apps")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"name":"a","githubRepo":"a/b"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("API_TOKEN"));
}

// ---- history, ledger, OpenAPI ----------------------------------------------------

/// A deployment row written straight to the table, at a chosen time.
async fn insert_deployment(
    app: &TestApp,
    app_id: &str,
    environment: Environment,
    status: Status,
    created_at: NaiveDateTime,
) -> Uuid {
    let id = Uuid::new_v4();
    deployments::ActiveModel {
        id: Set(id),
        app_id: Set(app_id.parse().unwrap()),
        environment: Set(environment),
        status: Set(status),
        deployment_url: Set(None),
        github_commit_sha: Set(None),
        vercel_deployment_id: Set(None),
        created_at: Set(created_at),
        updated_at: Set(created_at),
        error_message: Set(None),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .unwrap();
    id
}

/// A ledger row written straight to the table.
async fn insert_delivery(
    app: &TestApp,
    provider: &str,
    outcome: &str,
    body: &[u8],
    received_at: NaiveDateTime,
) -> Uuid {
    let id = Uuid::new_v4();
    deliveries::ActiveModel {
        id: Set(id),
        provider: Set(provider.into()),
        delivery_id: Set(id.to_string()),
        event_type: Set("push".into()),
        body: Set(body.to_vec()),
        received_at: Set(received_at),
        outcome: Set(outcome.into()),
        reason: Set("test".into()),
        deployment_id: Set(None),
        attempts: Set(1),
        last_received_at: Set(None),
        source: Set("webhook".into()),
    }
    .insert(&app.db)
    .await
    .unwrap();
    id
}

fn at(minute: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 1)
        .unwrap()
        .and_hms_micro_opt(12, minute, 0, 250)
        .unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn other_app(app: &TestApp) -> String {
    app.register(json!({"name": "checkout", "githubRepo": "acme-apps/checkout"}))
        .await
}

db_test!(deployments_are_listed_newest_first_and_narrowed_by_every_filter);
async fn deployments_are_listed_newest_first_and_narrowed_by_every_filter(app: TestApp) {
    let (store, checkout) = (app.storefront().await, other_app(&app).await);
    use Environment::{Production, Staging};
    use Status::{Building, Failed, Pending, Ready};
    let rows = [
        (&store, Staging, Ready, at(1)),
        (&store, Production, Failed, at(2)),
        (&checkout, Staging, Failed, at(3)),
        (&store, Staging, Pending, at(4)),
        (&checkout, Production, Building, at(5)),
    ];
    let mut inserted = Vec::new();
    for (app_id, env, status, t) in rows {
        inserted.push(
            insert_deployment(&app, app_id, env, status, t)
                .await
                .to_string(),
        );
    }
    let newest_first = |picks: &[usize]| -> Vec<String> {
        let mut v: Vec<usize> = picks.to_vec();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|i| inserted[i].clone()).collect()
    };

    for (query, expected) in [
        ("", newest_first(&[0, 1, 2, 3, 4])),
        ("?status=failed", newest_first(&[1, 2])),
        ("?environment=production", newest_first(&[1, 4])),
        ("?status=failed&environment=staging", newest_first(&[2])),
        ("?status=ready&environment=production", vec![]),
        (
            "?status=&environment=&limit=&cursor=",
            newest_first(&[0, 1, 2, 3, 4]),
        ),
        ("?unknown=1", newest_first(&[0, 1, 2, 3, 4])),
    ] {
        let (status, page) = app.get(&format!("/api/deployments{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(&page), expected, "{query}");
        assert_eq!(page["nextCursor"], Value::Null, "{query}");
    }

    for (query, expected) in [
        ("", newest_first(&[0, 1, 3])),
        ("?environment=staging", newest_first(&[0, 3])),
        ("?status=failed", newest_first(&[1])),
        ("?environment=staging&status=ready", newest_first(&[0])),
    ] {
        let (status, page) = app
            .get(&format!("/api/apps/{store}/deployments{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(&page), expected, "{query}");
    }

    // The JSON is the seed's camelCase row with RFC 3339 UTC times.
    let (_, page) = app.get(&format!("/api/apps/{checkout}/deployments")).await;
    let newest = &page["items"][0];
    assert_eq!(newest["appId"], checkout.as_str());
    assert_eq!(newest["environment"], "production");
    assert_eq!(newest["status"], "building");
    assert_eq!(newest["createdAt"], "2026-11-01T12:05:00.000250Z");
    assert_eq!(newest["githubCommitSha"], Value::Null);
}

db_test!(pages_neither_skip_nor_repeat_rows_while_new_ones_arrive);
async fn pages_neither_skip_nor_repeat_rows_while_new_ones_arrive(app: TestApp) {
    let store = app.storefront().await;
    // Three rows share each timestamp, so only the id breaks ties between pages.
    let mut existing = Vec::new();
    for i in 0..11u32 {
        let status = if i % 2 == 0 {
            Status::Failed
        } else {
            Status::Ready
        };
        let id = insert_deployment(&app, &store, Environment::Staging, status, at(i / 3)).await;
        existing.push((at(i / 3), id));
    }
    existing.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = existing.iter().map(|(_, id)| id.to_string()).collect();

    for base in [
        format!("/api/apps/{store}/deployments?limit=4"),
        format!("/api/apps/{store}/deployments?environment=staging&limit=4"),
        "/api/deployments?limit=4".to_owned(),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                Some(c) => format!("{base}&cursor={c}"),
                None => base.clone(),
            };
            let (status, page) = app.get(&url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            seen.extend(ids(&page));
            pages += 1;
            // Newer deployments land while the client pages through older ones.
            insert_deployment(
                &app,
                &store,
                Environment::Staging,
                Status::Pending,
                at(30 + pages),
            )
            .await;
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{base}");
        assert_eq!(seen, expected, "{base}: every row once, in order");
        // The rows added meanwhile are on top of a fresh first page, not in the old walk.
        let (_, first) = app.get(&base).await;
        assert_ne!(ids(&first)[0], expected[0]);
        // Later walks start above the new rows, so clear them for the next base.
        deployments::Entity::delete_many()
            .filter(deployments::Column::Status.eq(Status::Pending))
            .exec(&app.db)
            .await
            .unwrap();
    }

    let (_, page) = app.get("/api/deployments?status=failed&limit=2").await;
    assert_eq!(ids(&page).len(), 2);
    let (_, rest) = app
        .get(&format!(
            "/api/deployments?status=failed&limit=500&cursor={}",
            page["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ids(&rest).len(), 4, "6 failed rows in all");
    assert_eq!(rest["nextCursor"], Value::Null);
}

db_test!(latest_is_the_newest_deployment_of_an_app_to_an_environment);
async fn latest_is_the_newest_deployment_of_an_app_to_an_environment(app: TestApp) {
    let (store, checkout) = (app.storefront().await, other_app(&app).await);
    let latest = format!("/api/apps/{store}/deployments/latest");
    let (status, body) = app.get(&format!("{latest}?environment=staging")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no staging"));

    insert_deployment(&app, &store, Environment::Staging, Status::Ready, at(1)).await;
    let newest = insert_deployment(&app, &store, Environment::Staging, Status::Failed, at(3)).await;
    let production =
        insert_deployment(&app, &store, Environment::Production, Status::Ready, at(2)).await;
    insert_deployment(&app, &checkout, Environment::Staging, Status::Ready, at(9)).await;

    let (status, body) = app.get(&format!("{latest}?environment=staging")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], newest.to_string());
    assert_eq!(body["status"], "failed");
    let (_, body) = app.get(&format!("{latest}?environment=production")).await;
    assert_eq!(body["id"], production.to_string());

    for query in ["", "?environment=", "?environment=qa"] {
        let (status, body) = app.get(&format!("{latest}{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, _) = app
        .get(
            "/api/apps/00000000-0000-0000-0000-000000000000/deployments/latest?environment=staging",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

db_test!(an_orchestrator_records_a_pending_deployment_that_a_push_then_fills);
async fn an_orchestrator_records_a_pending_deployment_that_a_push_then_fills(app: TestApp) {
    let store = app.storefront().await;
    let sha = "95fba5a7ac4bec75f64568229f125c7f526ed240"; // github/push.staging.json
    let url = format!("/api/apps/{store}/deployments");
    let response = app
        .router
        .clone()
        .oneshot(
            Request::post(&url)
                .header("authorization", "Bearer test-token")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"environment": "staging", "githubCommitSha": sha.to_uppercase()})
                        .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, row) = app.get(&location).await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(row["status"], "pending");
    assert_eq!(row["environment"], "staging");
    assert_eq!(row["appId"], store.as_str());
    assert_eq!(row["githubCommitSha"], sha, "stored as git writes it");

    let (status, body) = app
        .post_json(
            &url,
            json!({"environment": "staging", "githubCommitSha": sha}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    let (status, _) = app
        .post_json(
            &url,
            json!({"environment": "production", "githubCommitSha": sha}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another environment is another row"
    );
    for _ in 0..2 {
        let (status, _) = app.post_json(&url, json!({"environment": "staging"})).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "rows without a commit never clash"
        );
    }

    // The push for that commit lands on the recorded row instead of adding one.
    let (status, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deploymentId"], row["id"]);
    assert_eq!(app.deployments().await.len(), 4);

    for bad in [
        json!({"environment": "qa"}),
        json!({}),
        json!({"environment": "staging", "githubCommitSha": "abc123"}),
        json!({"environment": "staging", "githubCommitSha": "g".repeat(40)}),
        json!({"environment": "staging", "githubCommitSha": "a".repeat(41)}),
        json!({"environment": "staging", "status": "ready"}),
    ] {
        let (status, body) = app.post_json(&url, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, _) = app
        .post_json(
            "/api/apps/00000000-0000-0000-0000-000000000000/deployments",
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.deployments().await.len(), 4);
}

db_test!(one_deployment_is_fetched_by_id);
async fn one_deployment_is_fetched_by_id(app: TestApp) {
    let store = app.storefront().await;
    let id = insert_deployment(&app, &store, Environment::Production, Status::Ready, at(7)).await;
    let (status, body) = app.get(&format!("/api/deployments/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["environment"], "production");
    let (status, body) = app
        .get(&format!("/api/deployments/{}", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    let (status, _) = app.get("/api/deployments/42").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

db_test!(the_delivery_ledger_lists_without_bodies_and_shows_one_with_its_body);
async fn the_delivery_ledger_lists_without_bodies_and_shows_one_with_its_body(app: TestApp) {
    app.storefront().await;
    let (status, receipt) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::OK);
    app.fixture("github/push.tag.json").await;
    app.fixture("vercel/deployment.created.unknown-project.json")
        .await;
    app.fixture("vercel/deployment.created.staging.json").await;

    let (status, page) = app.get("/api/deliveries").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|d| d.get("body").is_none()), "{page}");
    assert_eq!(items[3]["id"], receipt["id"], "oldest last");
    assert_eq!(items[3]["deliveryId"], "push.staging.json");
    assert_eq!(items[3]["outcome"], "applied");
    assert_eq!(items[3]["deploymentId"], receipt["deploymentId"]);
    assert!(items[3]["receivedAt"].as_str().unwrap().ends_with('Z'));

    for (query, count) in [
        ("?provider=github", 2),
        ("?provider=vercel", 2),
        ("?outcome=applied", 2),
        ("?outcome=ignored", 1),
        ("?outcome=unmatched&provider=vercel", 1),
        ("?outcome=unmatched&provider=github", 0),
        ("?outcome=&provider=", 4),
    ] {
        let (status, page) = app.get(&format!("/api/deliveries{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(&page).len(), count, "{query}: {page}");
    }

    let (status, one) = app
        .get(&format!(
            "/api/deliveries/{}",
            receipt["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        one["body"].as_str().unwrap().as_bytes(),
        fixture("github/push.staging.json"),
        "the body exactly as received"
    );
    assert_eq!(one["bodyBase64"], Value::Null);
    assert_eq!(one["outcome"], "applied");

    let binary = insert_delivery(
        &app,
        "github",
        "malformed",
        &[0xff, 0xfe, 0x00, b'x'],
        at(0),
    )
    .await;
    let (status, one) = app.get(&format!("/api/deliveries/{binary}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["body"], Value::Null);
    assert_eq!(one["bodyBase64"], "//4AeA==");

    let (status, _) = app
        .get(&format!("/api/deliveries/{}", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/deliveries/push.staging.json").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "ids are the ledger's UUIDs"
    );
}

db_test!(delivery_pages_neither_skip_nor_repeat_rows_while_new_ones_arrive);
async fn delivery_pages_neither_skip_nor_repeat_rows_while_new_ones_arrive(app: TestApp) {
    let mut existing = Vec::new();
    for i in 0..7u32 {
        let id = insert_delivery(&app, "vercel", "unmatched", b"{}", at(i / 2)).await;
        existing.push((at(i / 2), id));
    }
    existing.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = existing.iter().map(|(_, id)| id.to_string()).collect();
    for base in [
        "/api/deliveries?limit=3",
        "/api/deliveries?outcome=unmatched&limit=3",
    ] {
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let url = match &cursor {
                Some(c) => format!("{base}&cursor={c}"),
                None => base.to_owned(),
            };
            let (status, page) = app.get(&url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            seen.extend(ids(&page));
            insert_delivery(
                &app,
                "vercel",
                "unmatched",
                b"{}",
                at(50 + seen.len() as u32),
            )
            .await;
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{base}");
        deliveries::Entity::delete_many()
            .filter(deliveries::Column::ReceivedAt.gt(at(40)))
            .exec(&app.db)
            .await
            .unwrap();
    }
}

db_test!(malformed_ids_and_query_values_are_refused_with_400);
async fn malformed_ids_and_query_values_are_refused_with_400(app: TestApp) {
    let store = app.storefront().await;
    let lists = [
        format!("/api/apps/{store}/deployments"),
        "/api/deployments".to_owned(),
        "/api/deliveries".to_owned(),
    ];
    let mut cases = vec![
        "limit=-1",
        "limit=0",
        "limit=501",
        "limit=ten",
        "limit=1.5",
        "cursor=not-a-cursor",
        "cursor=MTIzOm5vdC1hLXV1aWQ",
        "limit=1&limit=2",
    ];
    for list in &lists {
        let (status, _) = app.get(&format!("{list}?limit=500")).await;
        assert_eq!(status, StatusCode::OK, "{list}: 500 is allowed");
        let specific: &[&str] = if list.contains("deliveries") {
            &["outcome=bogus", "provider=gitlab", "outcome=Applied"]
        } else {
            &["status=bogus", "environment=qa", "status=FAILED"]
        };
        cases.extend_from_slice(specific);
        for query in &cases {
            let (status, body) = app.get(&format!("{list}?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{list}?{query}: {body}");
            assert_eq!(body["error"], "bad_request", "{list}?{query}");
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
        cases.truncate(8);
    }
    for path in [
        "/api/apps/nope",
        "/api/apps/nope/deployments",
        "/api/apps/nope/deployments/latest?environment=staging",
        "/api/deployments/nope",
        "/api/deliveries/nope",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
}

/// Every documented operation, as (METHOD, path).
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.iter().any(|m| m.eq_ignore_ascii_case(k)))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

db_test!(the_openapi_document_lists_every_route_the_router_serves);
async fn the_openapi_document_lists_every_route_the_router_serves(app: TestApp) {
    let (status, doc) = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "public, no token");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented = documented_operations(&doc);

    // axum cannot list its routes, but its Debug output names every path; each
    // path is then probed with each method (405 = not served there).
    let debug = format!("{:?}", app.router);
    let (_, routes) = debug.split_once("path_router").expect("a Router's Debug");
    let (routes, _) = routes
        .split_once("fallback_router")
        .expect("a Router's Debug");
    let paths: BTreeSet<String> = routes
        .split('"')
        .filter(|s| s.starts_with('/') && !s.contains("__private__"))
        .map(str::to_owned)
        .collect();
    assert!(paths.len() >= 12, "paths not found in {debug}");
    let mut served = BTreeSet::new();
    for path in &paths {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let (status, body) = app
                .send(
                    Request::builder()
                        .method(method)
                        .uri(&concrete)
                        .header("authorization", "Bearer test-token")
                        .header("content-type", "application/json")
                        .body(Body::from("{}"))
                        .unwrap(),
                )
                .await;
            assert_ne!(body["message"], "no such route", "{method} {concrete}");
            if status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }
    assert_eq!(
        served, documented,
        "the router's routes (left) and the document's (right) differ"
    );
    for (method, path) in &documented {
        let secured = doc["paths"][path][method.to_lowercase()]
            .get("security")
            .is_some();
        assert_eq!(secured, path.starts_with("/api/"), "{method} {path}");
    }
}

db_test!(every_api_route_needs_the_token_and_reads_are_open_without_one);
async fn every_api_route_needs_the_token_and_reads_are_open_without_one(mut app: TestApp) {
    let (_, doc) = app.get("/openapi.json").await;
    let api: Vec<(String, String)> = documented_operations(&doc)
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/"))
        .map(|(m, path)| {
            (
                m,
                path.replace("{appId}", &Uuid::nil().to_string())
                    .replace("{id}", &Uuid::nil().to_string()),
            )
        })
        .collect();
    assert!(api.len() >= 10);
    let request = |method: &str, path: &str, token: Option<&str>| {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(Body::from("{}")).unwrap()
    };
    for (method, path) in &api {
        for token in [None, Some("wrong"), Some("test-token ")] {
            let (status, body) = app.send(request(method, path, token)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(body["error"], "unauthorized");
        }
        let (status, _) = app.send(request(method, path, Some("test-token"))).await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
            "{method} {path}"
        );
    }
    // Webhooks and the document are never behind the token.
    let (status, body) = app.send(request("POST", "/webhooks/github", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    assert_ne!(
        app.fixture("github/ping.default.json").await.0,
        StatusCode::UNAUTHORIZED
    );

    app.reconfigure(|s| s.api_token = None);
    for (method, path) in &api {
        let (status, body) = app.send(request(method, path, None)).await;
        if method == "GET" {
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::NOT_FOUND,
                    StatusCode::BAD_REQUEST
                ]
                .contains(&status),
                "{method} {path}: {status} {body}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            assert!(body["message"].as_str().unwrap().contains("API_TOKEN"));
        }
    }
    let (status, _) = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}
