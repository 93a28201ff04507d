//! The sweeper of stuck deployments with an injected clock, against a local fake of
//! Vercel's `GET /v13/deployments/{id}`, beside real deliveries, and as a command.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDate, NaiveDateTime};
use deploy_tracker::clients::vercel::{VercelClient, VercelConfig};
use deploy_tracker::store::deployments::{self, Environment, FailureReason, Status};
use deploy_tracker::sweep::{self, Report, Settled, StuckAfter, Sweeper};
use sea_orm::{ActiveModelTrait, EntityTrait};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::db_test;
use crate::helpers::{TestApp, sample};

const TOKEN: &str = "test-vercel-token";
const TEAM: &str = "team_acme000000000000000001";
/// The Vercel deployment of the staging fixtures.
const FIXTURE_DEPLOYMENT: &str = "dpl_QraLNYdYHMtJFjYejoSuw8b6zBmN";

/// The sweep's clock in the tests that insert their own rows.
fn t0() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn stuck_after(s: &str) -> StuckAfter {
    s.parse().unwrap()
}

fn offline(s: &str) -> Sweeper {
    Sweeper {
        stuck_after: stuck_after(s),
        vercel: None,
    }
}

async fn app_id(app: &TestApp) -> Uuid {
    app.storefront().await.parse().unwrap()
}

/// A staging row last touched at `updated_at`.
async fn row(
    app: &TestApp,
    app_id: Uuid,
    status: Status,
    updated_at: NaiveDateTime,
    vercel_id: Option<&str>,
) -> deployments::Model {
    let model = deployments::Model {
        vercel_deployment_id: vercel_id.map(str::to_owned),
        ..deployments::Model::new(
            app_id,
            Environment::Staging,
            status,
            updated_at - minutes(5),
            updated_at,
        )
    };
    deployments::ActiveModel::from(model)
        .insert(&app.db)
        .await
        .unwrap()
}

async fn reread(app: &TestApp, id: Uuid) -> deployments::Model {
    deployments::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
}

/// `deploy_tracker_swept_total{result}` as `/metrics` shows it.
async fn swept_total(app: &TestApp, result: &str) -> f64 {
    let (_, text) = app.get("/metrics").await;
    sample(
        text.as_str().unwrap(),
        "deploy_tracker_swept_total",
        &[("result", result)],
    )
}

fn changed_ids(report: &Report) -> Vec<Uuid> {
    report.changes.iter().map(|c| c.deployment_id).collect()
}

/// Milliseconds of a time, as Vercel writes them.
fn ms(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

/// A deployment as Vercel's API documents it, in `state`, built from `t0()`.
fn vercel_deployment(id: &str, state: &str) -> Value {
    let created = ms(t0() - minutes(120));
    let mut d = json!({
        "id": id,
        "name": "storefront",
        "url": "storefront-6hwqnpxot-acme.vercel.app",
        "inspectorUrl": format!("https://vercel.com/acme/storefront/{}", &id[4..]),
        "readyState": state,
        "status": state,
        "type": "LAMBDAS",
        "target": "staging",
        "projectId": "prj_storefront0000000000000001",
        "createdAt": created,
        "buildingAt": created + 2_000,
        "bootedAt": created + 1_000,
        "aliasAssigned": false,
        "buildSkipped": false,
        "public": false,
        "creator": { "uid": "Xk3pV9rTq2LmN8aZ5sW1cY7d", "username": "dana-okafor" },
        "meta": {
            "githubCommitRef": "staging",
            "githubCommitSha": "95fba5a7ac4bec75f64568229f125c7f526ed240",
            "githubOrg": "acme-apps",
            "githubRepo": "storefront"
        },
        "regions": ["iad1"],
        "errorMessage": null
    });
    match state {
        "READY" => d["ready"] = json!(created + 95_000),
        "ERROR" => {
            d["errorCode"] = json!("BUILD_FAILED");
            d["errorMessage"] = json!(format!(
                "Command \"npm run build\" exited with 1: {}",
                "Type error: ".repeat(30)
            ));
            d["buildErrorAt"] = json!(created + 40_000);
        }
        "CANCELED" => d["canceledAt"] = json!(created + 20_000),
        _ => {}
    }
    d
}

/// A local stand-in for Vercel's API: answers the deployments it is given, 404 for
/// others, 401 without the test token; records each request's id and `teamId`.
struct FakeVercel {
    url: String,
    hits: Hits,
}

/// Each request's deployment id and `teamId`.
type Hits = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct FakeState {
    answers: Arc<HashMap<String, Value>>,
    hits: Hits,
    /// A look-up of this id waits at each barrier in turn before it is answered.
    hold: Option<(String, Vec<Arc<Barrier>>)>,
}

impl FakeVercel {
    async fn start(answers: Vec<Value>, hold: Option<(&str, Vec<Arc<Barrier>>)>) -> Self {
        let answers = answers
            .into_iter()
            .map(|d| (d["id"].as_str().unwrap().to_owned(), d))
            .collect();
        let state = FakeState {
            answers: Arc::new(answers),
            hits: Arc::default(),
            hold: hold.map(|(id, barriers)| (id.to_owned(), barriers)),
        };
        let hits = state.hits.clone();
        let router = axum::Router::new()
            .route("/v13/deployments/{id}", get(answer))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeVercel { url, hits }
    }

    fn sweeper(&self, stuck: &str) -> Sweeper {
        Sweeper {
            stuck_after: stuck_after(stuck),
            vercel: Some(client(&self.url, TOKEN)),
        }
    }

    fn hits(&self) -> Vec<(String, Option<String>)> {
        self.hits.lock().unwrap().clone()
    }
}

fn client(url: &str, token: &str) -> VercelClient {
    VercelClient::new(VercelConfig {
        token: token.to_owned(),
        api_url: url.to_owned(),
        team_id: Some(TEAM.to_owned()),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn answer(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state
        .hits
        .lock()
        .unwrap()
        .push((id.clone(), query.get("teamId").cloned()));
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        let body = json!({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": true}});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    if let Some((held, barriers)) = &state.hold
        && *held == id
    {
        for barrier in barriers {
            barrier.wait().await;
        }
    }
    match state.answers.get(&id) {
        Some(d) => Json(d.clone()).into_response(),
        None => {
            let body = json!({"error": {"code": "not_found", "message": "The deployment could not be found."}});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

/// Sweeps one stuck building row with a Vercel id against a fake answering `answers`.
async fn sweep_one_looked_up(
    app: &TestApp,
    answers: Vec<Value>,
) -> (deployments::Model, deployments::Model, Report, FakeVercel) {
    let app_id = app_id(app).await;
    let before = row(
        app,
        app_id,
        Status::Building,
        t0() - minutes(45),
        Some("dpl_one"),
    )
    .await;
    let vercel = FakeVercel::start(answers, None).await;
    let report = sweep::run_once(&app.db, &vercel.sweeper("30m"), t0())
        .await
        .unwrap();
    let after = reread(app, before.id).await;
    (before, after, report, vercel)
}

db_test!(stuck_pending_and_building_rows_time_out_and_the_rest_stay_as_they_are);
async fn stuck_pending_and_building_rows_time_out_and_the_rest_stay_as_they_are(app: TestApp) {
    let app_id = app_id(&app).await;
    // A row a real push made, swept 31 minutes after it arrived.
    let (status, _) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::OK);
    let pushed = app.deployments().await.remove(0);
    assert_eq!(pushed.status, Status::Pending);
    let now = pushed.updated_at + minutes(31);
    let building = row(&app, app_id, Status::Building, now - minutes(120), None).await;
    let fresh = row(&app, app_id, Status::Building, now - minutes(29), None).await;
    let ready = row(&app, app_id, Status::Ready, now - minutes(300), None).await;
    let failed = row(&app, app_id, Status::Failed, now - minutes(300), None).await;
    let timeouts_before = swept_total(&app, "timeout").await;

    let report = sweep::run_once(&app.db, &offline("30m"), now)
        .await
        .unwrap();

    assert_eq!(
        changed_ids(&report),
        [building.id, pushed.id],
        "oldest first"
    );
    for (change, from) in report
        .changes
        .iter()
        .zip([Status::Building, Status::Pending])
    {
        assert_eq!(
            (change.from, change.to, change.settled, change.why.as_str()),
            (from, Status::Failed, Settled::Timeout, "no event for 30m")
        );
        assert_eq!(
            (change.app.as_str(), change.environment),
            ("storefront", Environment::Staging)
        );
    }
    for before in [&pushed, &building] {
        let after = reread(&app, before.id).await;
        assert_eq!(after.status, Status::Failed);
        assert_eq!(after.failure_reason, Some(FailureReason::Timeout));
        assert_eq!(after.error_message.as_deref(), Some("no event for 30m"));
        assert_eq!((after.finished_at, after.updated_at), (Some(now), now));
        assert_eq!(after.build_duration_ms, None);
        assert_eq!(
            (after.created_at, &after.github_commit_sha, after.app_id),
            (before.created_at, &before.github_commit_sha, before.app_id),
            "nothing else moves"
        );
    }
    for untouched in [&fresh, &ready, &failed] {
        assert_eq!(&reread(&app, untouched.id).await, untouched);
    }
    assert!(report.still_building.is_empty() && report.moved_meanwhile.is_empty());
    // Other tests in this process sweep too: at least this test's two.
    assert!(swept_total(&app, "timeout").await - timeouts_before >= 2.0);

    let again = sweep::run_once(&app.db, &offline("30m"), now)
        .await
        .unwrap();
    assert!(again.is_empty(), "a second sweep finds nothing: {again:?}");
}

db_test!(the_configured_duration_is_the_threshold_and_the_message);
async fn the_configured_duration_is_the_threshold_and_the_message(app: TestApp) {
    let app_id = app_id(&app).await;
    let old = row(
        &app,
        app_id,
        Status::Pending,
        t0() - chrono::Duration::seconds(91),
        None,
    )
    .await;
    let young = row(
        &app,
        app_id,
        Status::Pending,
        t0() - chrono::Duration::seconds(89),
        None,
    )
    .await;

    let report = sweep::run_once(&app.db, &offline("90s"), t0())
        .await
        .unwrap();

    assert_eq!(changed_ids(&report), [old.id]);
    assert_eq!(
        reread(&app, old.id).await.error_message.as_deref(),
        Some("no event for 90s")
    );
    assert_eq!(reread(&app, young.id).await.status, Status::Pending);
}

db_test!(off_sweeps_nothing);
async fn off_sweeps_nothing(app: TestApp) {
    let app_id = app_id(&app).await;
    let ancient = row(
        &app,
        app_id,
        Status::Building,
        t0() - minutes(60 * 24 * 30),
        None,
    )
    .await;

    let report = sweep::run_once(&app.db, &offline("off"), t0())
        .await
        .unwrap();

    assert_eq!(report, Report::default());
    assert_eq!(reread(&app, ancient.id).await, ancient);
}

db_test!(vercel_ready_settles_the_row_as_the_webhook_would);
async fn vercel_ready_settles_the_row_as_the_webhook_would(app: TestApp) {
    let answer = vercel_deployment("dpl_one", "READY");
    let (_, after, report, vercel) = sweep_one_looked_up(&app, vec![answer.clone()]).await;

    assert_eq!(report.changes.len(), 1);
    let change = &report.changes[0];
    assert_eq!(
        (change.from, change.to, change.settled, change.why.as_str()),
        (
            Status::Building,
            Status::Ready,
            Settled::Ready,
            "Vercel reports READY"
        )
    );
    assert_eq!(after.status, Status::Ready);
    assert_eq!(
        after.deployment_url.as_deref(),
        Some("https://storefront-6hwqnpxot-acme.vercel.app")
    );
    let ready = answer["ready"].as_i64().unwrap();
    let building = answer["buildingAt"].as_i64().unwrap();
    assert_eq!(after.finished_at.map(ms), Some(ready));
    assert_eq!(after.started_at.map(ms), Some(building));
    assert_eq!(after.build_duration_ms, Some(ready - building));
    assert_eq!(
        after.build_logs.as_deref(),
        Some("https://vercel.com/acme/storefront/one")
    );
    assert_eq!((after.failure_reason, after.error_message), (None, None));
    assert_eq!(after.updated_at, t0());
    assert_eq!(
        vercel.hits(),
        [("dpl_one".to_owned(), Some(TEAM.to_owned()))],
        "one look-up, with the team"
    );
}

db_test!(a_row_vercel_reports_ready_joins_its_chain_of_ready_rows);
async fn a_row_vercel_reports_ready_joins_its_chain_of_ready_rows(app: TestApp) {
    let app_id = app_id(&app).await;
    // Ready rows created before and after the stuck one, linked as ingest links them.
    let earlier = row(&app, app_id, Status::Ready, t0() - minutes(60), None).await;
    let later = deployments::ActiveModel::from(deployments::Model {
        previous_deployment_id: Some(earlier.id),
        ..deployments::Model::new(
            app_id,
            Environment::Staging,
            Status::Ready,
            t0() - minutes(20),
            t0() - minutes(15),
        )
    })
    .insert(&app.db)
    .await
    .unwrap();
    let stuck = t0() - minutes(45);
    let before = row(&app, app_id, Status::Building, stuck, Some("dpl_one")).await;
    let vercel = FakeVercel::start(vec![vercel_deployment("dpl_one", "READY")], None).await;
    let report = sweep::run_once(&app.db, &vercel.sweeper("30m"), t0())
        .await
        .unwrap();
    assert_eq!(report.changes.len(), 1);
    let after = reread(&app, before.id).await;
    assert_eq!(after.status, Status::Ready);
    assert!(earlier.created_at < before.created_at && before.created_at < later.created_at);
    assert_eq!(after.previous_deployment_id, Some(earlier.id));
    assert_eq!(
        reread(&app, later.id).await.previous_deployment_id,
        Some(after.id),
        "the row after it now follows it"
    );
}

db_test!(vercel_building_keeps_the_row);
async fn vercel_building_keeps_the_row(app: TestApp) {
    let app_id = app_id(&app).await;
    for state in ["BUILDING", "QUEUED", "INITIALIZING"] {
        let id = format!("dpl_{}", state.to_lowercase());
        let before = row(
            &app,
            app_id,
            Status::Building,
            t0() - minutes(45),
            Some(&id),
        )
        .await;
        let vercel = FakeVercel::start(vec![vercel_deployment(&id, state)], None).await;

        let report = sweep::run_once(&app.db, &vercel.sweeper("30m"), t0())
            .await
            .unwrap();

        assert_eq!(report.still_building, [before.id], "{state}");
        assert!(report.changes.is_empty(), "{state}");
        assert_eq!(reread(&app, before.id).await, before, "{state}");
        deployments::Entity::delete_by_id(before.id)
            .exec(&app.db)
            .await
            .unwrap();
    }
}

db_test!(vercel_error_fails_the_row_with_its_message);
async fn vercel_error_fails_the_row_with_its_message(app: TestApp) {
    let answer = vercel_deployment("dpl_one", "ERROR");
    let (_, after, report, _) = sweep_one_looked_up(&app, vec![answer.clone()]).await;

    assert_eq!(report.changes[0].settled, Settled::Error);
    assert_eq!(after.status, Status::Failed);
    assert_eq!(after.failure_reason, Some(FailureReason::Error));
    let full = answer["errorMessage"].as_str().unwrap();
    assert!(full.len() > 255);
    assert_eq!(after.error_message.as_deref(), Some(&full[..255]));
    assert_eq!(after.finished_at.map(ms), answer["buildErrorAt"].as_i64());
    assert_eq!(after.build_duration_ms, Some(38_000));
    assert_eq!(after.deployment_url, None);
}

db_test!(vercel_canceled_fails_the_row_as_canceled);
async fn vercel_canceled_fails_the_row_as_canceled(app: TestApp) {
    let answer = vercel_deployment("dpl_one", "CANCELED");
    let (_, after, report, _) = sweep_one_looked_up(&app, vec![answer.clone()]).await;

    assert_eq!(report.changes[0].settled, Settled::Canceled);
    assert_eq!(after.status, Status::Failed);
    assert_eq!(after.failure_reason, Some(FailureReason::Canceled));
    assert_eq!(after.error_message.as_deref(), Some("canceled"));
    assert_eq!(after.finished_at.map(ms), answer["canceledAt"].as_i64());
}

db_test!(a_deployment_vercel_does_not_know_times_out);
async fn a_deployment_vercel_does_not_know_times_out(app: TestApp) {
    let (_, after, report, vercel) = sweep_one_looked_up(&app, vec![]).await;

    assert_eq!(vercel.hits().len(), 1, "it was asked");
    assert_eq!(report.changes[0].settled, Settled::Timeout);
    assert_eq!(
        report.changes[0].why,
        "no event for 30m; unknown to Vercel (404)"
    );
    assert_eq!(after.failure_reason, Some(FailureReason::Timeout));
    assert_eq!(after.error_message.as_deref(), Some("no event for 30m"));
    assert_eq!(after.finished_at, Some(t0()));
}

db_test!(an_unreachable_vercel_or_a_refused_token_times_out);
async fn an_unreachable_vercel_or_a_refused_token_times_out(app: TestApp) {
    let app_id = app_id(&app).await;
    // A port nothing listens on any more.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let fake = FakeVercel::start(vec![vercel_deployment("dpl_one", "READY")], None).await;
    for (url, token, vercel_id, says) in [
        (
            closed.as_str(),
            TOKEN,
            "dpl_one",
            "Vercel could not be reached",
        ),
        (
            fake.url.as_str(),
            "a-revoked-token",
            "dpl_two",
            "Vercel refused the token (403)",
        ),
    ] {
        let before = row(
            &app,
            app_id,
            Status::Building,
            t0() - minutes(45),
            Some(vercel_id),
        )
        .await;
        let sweeper = Sweeper {
            stuck_after: stuck_after("30m"),
            vercel: Some(client(url, token)),
        };

        let report = sweep::run_once(&app.db, &sweeper, t0()).await.unwrap();

        assert_eq!(changed_ids(&report), [before.id]);
        let why = &report.changes[0].why;
        assert!(
            why.starts_with("no event for 30m; ") && why.contains(says),
            "{why}"
        );
        assert!(!why.contains(token), "the token stays out: {why}");
        let after = reread(&app, before.id).await;
        assert_eq!(after.failure_reason, Some(FailureReason::Timeout));
        assert_eq!(after.error_message.as_deref(), Some("no event for 30m"));
    }
}

db_test!(a_row_without_a_vercel_id_times_out_without_a_look_up);
async fn a_row_without_a_vercel_id_times_out_without_a_look_up(app: TestApp) {
    let app_id = app_id(&app).await;
    let before = row(&app, app_id, Status::Pending, t0() - minutes(45), None).await;
    let vercel = FakeVercel::start(vec![], None).await;

    let report = sweep::run_once(&app.db, &vercel.sweeper("30m"), t0())
        .await
        .unwrap();

    assert_eq!(changed_ids(&report), [before.id]);
    assert_eq!(report.changes[0].why, "no event for 30m");
    assert!(vercel.hits().is_empty());
}

db_test!(a_row_a_delivery_moves_during_the_look_up_is_left_to_the_delivery);
async fn a_row_a_delivery_moves_during_the_look_up_is_left_to_the_delivery(app: TestApp) {
    app.storefront().await;
    app.fixture("vercel/deployment.created.staging.json").await;
    let before = app.deployments().await.remove(0);
    assert_eq!(before.status, Status::Building);
    let (reached, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let vercel = FakeVercel::start(
        vec![vercel_deployment(FIXTURE_DEPLOYMENT, "ERROR")],
        Some((FIXTURE_DEPLOYMENT, vec![reached.clone(), release.clone()])),
    )
    .await;
    let sweeper = vercel.sweeper("30m");
    let db = app.db.clone();
    let now = before.updated_at + minutes(31);
    let sweeping = tokio::spawn(async move { sweep::run_once(&db, &sweeper, now).await });

    // The sweep has read the row and is asking Vercel: the real event arrives.
    reached.wait().await;
    let (status, body) = app
        .fixture("vercel/deployment.succeeded.staging.json")
        .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    release.wait().await;
    let report = sweeping.await.unwrap().unwrap();

    assert!(report.changes.is_empty(), "{report:?}");
    assert_eq!(report.moved_meanwhile, [before.id]);
    let after = reread(&app, before.id).await;
    assert_eq!(after.status, Status::Ready, "the delivery wins");
    assert_eq!((after.failure_reason, after.error_message), (None, None));
}

db_test!(two_sweeps_at_once_change_each_row_once);
async fn two_sweeps_at_once_change_each_row_once(app: TestApp) {
    let app_id = app_id(&app).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let vercel_id = format!("dpl_{n:02}");
        let r = row(
            &app,
            app_id,
            Status::Building,
            t0() - minutes(100 - n),
            Some(&vercel_id),
        )
        .await;
        ids.push(r.id);
    }
    // Both sweeps look up the oldest row first, and wait there for each other: both
    // have read every candidate before either writes.
    let both = Arc::new(Barrier::new(2));
    let vercel = FakeVercel::start(vec![], Some(("dpl_00", vec![both]))).await;
    let sweeps: Vec<_> = (0..2)
        .map(|_| {
            let (db, sweeper) = (app.db.clone(), vercel.sweeper("30m"));
            tokio::spawn(async move { sweep::run_once(&db, &sweeper, t0()).await })
        })
        .collect();
    let mut reports = Vec::new();
    for sweep in sweeps {
        reports.push(sweep.await.unwrap().unwrap());
    }

    let mut changed: Vec<Uuid> = reports.iter().flat_map(changed_ids).collect();
    changed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(changed, expected, "each row changed exactly once");
    for report in &reports {
        assert_eq!(
            report.changes.len() + report.moved_meanwhile.len(),
            ids.len(),
            "each sweep saw every row: {report:?}"
        );
    }
    for id in ids {
        let after = reread(&app, id).await;
        assert_eq!(after.failure_reason, Some(FailureReason::Timeout));
        assert_eq!(after.updated_at, t0());
    }
}

db_test!(the_sweep_command_prints_each_change_and_a_summary);
async fn the_sweep_command_prints_each_change_and_a_summary(app: TestApp) {
    let app_id = app_id(&app).await;
    let now = deploy_tracker::webhooks::now();
    let stuck = row(&app, app_id, Status::Building, now - minutes(120), None).await;
    let fresh = row(&app, app_id, Status::Pending, now - minutes(1), None).await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_deploy-tracker"))
            .args(args)
            .env("DATABASE_URL", app.database_url())
            .env_remove("STUCK_AFTER")
            .env_remove("VERCEL_TOKEN")
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    };

    let out = run(&["sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with(&stuck.id.to_string()), "{stdout}");
    for part in [
        "storefront",
        "staging",
        "building -> failed",
        "no event for 30m",
    ] {
        assert!(lines[0].contains(part), "{part}: {stdout}");
    }
    assert_eq!(
        lines[1],
        "swept deployments with no event for 30m: 1 changed (1 timeout), 0 still building at Vercel, 0 moved meanwhile"
    );
    assert_eq!(reread(&app, stuck.id).await.status, Status::Failed);
    assert_eq!(reread(&app, fresh.id).await, fresh);

    let out = run(&["sweep", "--stuck-after", "30s"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&fresh.id.to_string())
            && stdout.contains("pending -> failed  no event for 30s"),
        "{stdout}"
    );

    let out = run(&["sweep", "--stuck-after", "off"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "STUCK_AFTER is off: nothing swept\n"
    );

    let out = run(&["sweep", "--stuck-after", "soon"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"soon\" is not a duration"), "{stderr}");
}

db_test!(a_later_real_event_overrides_a_timeout);
async fn a_later_real_event_overrides_a_timeout(app: TestApp) {
    app.storefront().await;
    app.fixture("vercel/deployment.created.staging.json").await;
    let before = app.deployments().await.remove(0);
    let report = sweep::run_once(&app.db, &offline("30m"), before.updated_at + minutes(31))
        .await
        .unwrap();
    assert_eq!(changed_ids(&report), [before.id]);
    assert_eq!(
        reread(&app, before.id).await.failure_reason,
        Some(FailureReason::Timeout)
    );

    let (status, body) = app
        .fixture("vercel/deployment.succeeded.staging.json")
        .await;

    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let after = reread(&app, before.id).await;
    assert_eq!(after.status, Status::Ready);
    assert_eq!(after.failure_reason, None);
    assert_eq!(after.error_message, None);
    assert_eq!(
        after.deployment_url.as_deref(),
        Some("https://storefront-6hwqnpxot-acme.vercel.app")
    );
}
