//! The `/api` routes this far: app registry, per-app history, auth.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::db_test;
use crate::helpers::TestApp;

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
