//! Operations: health, readiness, metrics, logs, shutdown and start-up checks.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::store;
use deploy_tracker::store::deliveries;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::db_test;
use crate::helpers::{Backend, TestApp, fixture, sample};
use crate::process::{BIN, ScratchDb, Server, post, register};

db_test!(health_and_readiness_follow_the_database);
async fn health_and_readiness_follow_the_database(app: TestApp) {
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.0, StatusCode::OK);
    app.db.clone().close().await.unwrap();
    let started = Instant::now();
    assert_eq!(app.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        app.get("/healthz").await.0,
        StatusCode::OK,
        "liveness needs no I/O"
    );
    // Metrics still answer without the database; the counts it would give are left
    // out rather than shown stale.
    let (status, text) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("deploy_tracker_db_pool_connections{"),
        "{text}"
    );
    assert!(!text.contains("deploy_tracker_deployments{"), "{text}");
    assert!(
        !text.contains("deploy_tracker_deployments_in_progress{"),
        "{text}"
    );
    // With the database gone a delivery is refused with 503, never 2xx.
    let (status, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "database_unavailable");
}

db_test!(metrics_count_every_outcome_of_signed_deliveries);
async fn metrics_count_every_outcome_of_signed_deliveries(mut app: TestApp) {
    app.storefront().await;
    let (_, before) = app.get("/metrics").await;
    let before = before.as_str().unwrap().to_owned();
    let counted = |text: &str, provider: &str, outcome: &str| {
        sample(
            text,
            "deploy_tracker_deliveries_total",
            &[("provider", provider), ("outcome", outcome)],
        )
    };

    app.fixture("github/push.staging.json").await; // applied
    app.fixture("github/push.staging.json").await; // duplicate
    app.fixture("github/push.tag.json").await; // ignored
    app.fixture("vercel/deployment.succeeded.staging.json")
        .await; // applied
    app.fixture("vercel/deployment.created.staging.json").await; // stale
    app.fixture("vercel/deployment.created.unknown-project.json")
        .await; // unmatched
    app.github("push", "broken", b"{").await; // rejected: malformed
    app.send(crate::helpers::github_request("push", "x", b"{}", "wrong"))
        .await; // rejected: signature
    app.reconfigure(|s| s.max_body_bytes = 10);
    app.vercel(&fixture("vercel/deployment.created.staging.json"))
        .await; // rejected: too large

    let (status, after) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let after = after.as_str().unwrap().to_owned();
    for (provider, outcome, at_least) in [
        ("github", "applied", 1.0),
        ("github", "duplicate", 1.0),
        ("github", "ignored", 1.0),
        ("vercel", "applied", 1.0),
        ("vercel", "stale", 1.0),
        ("vercel", "unmatched", 1.0),
    ] {
        let delta = counted(&after, provider, outcome) - counted(&before, provider, outcome);
        assert!(delta >= at_least, "{provider} {outcome}: {delta}\n{after}");
    }
    for (provider, reason) in [
        ("github", "malformed"),
        ("github", "signature"),
        ("vercel", "too_large"),
    ] {
        let labels = [
            ("provider", provider),
            ("outcome", "rejected"),
            ("reason", reason),
        ];
        let delta = sample(&after, "deploy_tracker_deliveries_total", &labels)
            - sample(&before, "deploy_tracker_deliveries_total", &labels);
        assert!(delta >= 1.0, "{reason}: {delta}");
    }
    assert!(sample(&after, "deploy_tracker_ingest_duration_seconds_count", &[]) >= 6.0);
    assert!(
        sample(
            &after,
            "deploy_tracker_http_requests_total",
            &[("route", "/webhooks/github"), ("status", "200")]
        ) >= 2.0
    );
    assert!(after.contains("deploy_tracker_db_pool_connections{state=\"idle\"}"));
    // This app's database holds exactly one deployment, ready; the gauge reports it.
    assert_eq!(
        sample(&after, "deploy_tracker_deployments", &[("status", "ready")]),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "deploy_tracker_deployments",
            &[("status", "failed")]
        ),
        0.0
    );
}

db_test!(scrapes_at_the_same_moment_each_count_their_own_database);
/// The deployment gauges are counted from the app's own database at scrape time.
/// Several apps in one process (as in these tests) share one recorder: scraped at the
/// same moment, each must still report its own counts, never the other's.
async fn scrapes_at_the_same_moment_each_count_their_own_database(app: TestApp) {
    app.storefront().await;
    app.fixture("github/push.staging.json").await;
    let empty = TestApp::new(app.backend).await;
    let in_progress = |text: &str| {
        sample(
            text,
            "deploy_tracker_deployments_in_progress",
            &[("environment", "staging")],
        )
    };
    for _ in 0..40 {
        let ((status, one), (_, none)) = tokio::join!(app.get("/metrics"), empty.get("/metrics"));
        assert_eq!(status, StatusCode::OK);
        let (one, none) = (one.as_str().unwrap(), none.as_str().unwrap());
        assert_eq!(sample(one, "deploy_tracker_deployments", &[]), 1.0, "{one}");
        assert_eq!(
            sample(none, "deploy_tracker_deployments", &[]),
            0.0,
            "{none}"
        );
        assert_eq!((in_progress(one), in_progress(none)), (1.0, 0.0));
    }
}

db_test!(sigterm_during_a_burst_loses_no_answered_delivery);
async fn sigterm_during_a_burst_loses_no_answered_delivery(app: TestApp) {
    let Some(scratch) = ScratchDb::new(app.backend).await else {
        return;
    };
    let server = Server::start(&[("DATABASE_URL", &scratch.url)]);
    let client = reqwest::Client::new();
    let apps: Vec<SimApp> = (0..4).map(SimApp::numbered).collect();
    for sim in &apps {
        register(&client, &server, sim).await;
    }
    let deliveries: Vec<SimDelivery> = (0..150)
        .map(|n| Flow::numbered(n, apps.len(), "term"))
        .flat_map(|f| f.deliveries(&apps[f.app]))
        .collect();
    let queue = Arc::new(Mutex::new(deliveries));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let server = Arc::new(server);
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (queue, answered, server, client) = (
            queue.clone(),
            answered.clone(),
            server.clone(),
            client.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(d) = queue.lock().unwrap().pop() else {
                    break;
                };
                match post(&client, &server.addr, &d).await {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        answered.lock().unwrap().push(d.delivery_id.clone())
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }));
    }
    // Let the burst get going, then ask the server to stop in the middle of it.
    while answered.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.terminate();
    for sender in senders {
        sender.await.unwrap();
    }
    let server = Arc::try_unwrap(server).ok().unwrap();
    let (status, log) = server.wait();
    assert!(status.success(), "exit {status:?}: {log:?}");

    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 60);
    let db = store::connect(&scratch.url).await.unwrap();
    let stored: HashSet<String> = deliveries::Entity::find()
        .filter(deliveries::Column::DeliveryId.is_in(answered.clone()))
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    let missing: Vec<_> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "answered 2xx but not kept: {missing:?}");
    db.close().await.unwrap();
}

#[tokio::test]
async fn json_logs_name_the_delivery_but_never_the_secret_or_body() {
    let scratch = ScratchDb::new(Backend::Sqlite).await.unwrap();
    let secret = "log-test-secret-4f9a1c";
    let server = Server::start(&[
        ("DATABASE_URL", &scratch.url),
        ("GITHUB_WEBHOOK_SECRET", secret),
        ("RUST_LOG", "trace"),
    ]);
    let client = reqwest::Client::new();
    let marker = "BODY-MARKER-7d1e";
    let body = String::from_utf8(fixture("github/push.staging.json"))
        .unwrap()
        .replacen("\"message\": \"", &format!("\"message\": \"{marker} "), 1);
    assert!(body.contains(marker));
    let signature =
        deploy_tracker::webhooks::signature::sign_github(secret.as_bytes(), body.as_bytes());
    for (delivery, sig) in [
        ("log-delivery-1", signature.as_str()),
        ("log-delivery-2", "sha256=00"),
    ] {
        client
            .post(server.url("/webhooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .body(body.clone())
            .send()
            .await
            .unwrap();
    }
    server.terminate();
    let (status, log) = server.wait();
    assert!(status.success());
    assert!(log.len() >= 3, "{log:?}");
    for line in &log {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not JSON: {line}");
        assert!(!line.contains(secret), "secret leaked: {line}");
        assert!(!line.contains(marker), "body leaked: {line}");
    }
    assert!(
        log.iter()
            .any(|l| l.contains("log-delivery-1") && l.contains("delivery recorded"))
    );
    assert!(
        !log.iter().any(|l| l.contains("\"ERROR\"")),
        "a client mistake is not an error: {log:?}"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_one_sentence_before_listening() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("BIND", "not-an-address")], "BIND"),
        (
            &[("DATABASE_URL", "bogus://nowhere")],
            "cannot open the database",
        ),
        (
            &[("GITHUB_WEBHOOK_SECRET", "a,,b")],
            "GITHUB_WEBHOOK_SECRET",
        ),
        (
            &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")],
            "cannot open the database",
        ),
        (&[("MAX_CONCURRENCY", "0")], "positive"),
    ];
    for (env, expected) in cases {
        let started = Instant::now();
        let output = Command::new(BIN)
            .arg("serve")
            .env("BIND", "127.0.0.1:0")
            .env("DATABASE_URL", "sqlite::memory:")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} should fail");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{env:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}

#[test]
fn serve_help_lists_every_option_with_its_environment_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for var in [
        "DATABASE_URL",
        "GITHUB_WEBHOOK_SECRET",
        "VERCEL_WEBHOOK_SECRET",
        "API_TOKEN",
        "BIND",
        "MAX_BODY_BYTES",
        "LOG_FORMAT",
        "REQUEST_TIMEOUT_MS",
        "MAX_CONCURRENCY",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing:\n{help}"
        );
    }
    assert!(help.contains("default: 127.0.0.1:8080"));
}
