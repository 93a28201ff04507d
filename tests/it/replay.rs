//! Replay, export and reprocess: saved payloads reproduce a deployment history.

use std::path::{Path, PathBuf};
use std::process::Output;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy_tracker::deployments::ingest::{Ingest, Outcome};
use deploy_tracker::replay::{self, FreshIds, Options, Report, Target};
use deploy_tracker::webhooks::signature::{Secrets, sign_github};
use tower::ServiceExt;
use uuid::Uuid;

use crate::db_test;
use crate::helpers::{GITHUB_SECRET, Row, TestApp, VERCEL_SECRET, fixture, github_request};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn scenario(name: &str) -> PathBuf {
    fixtures().join("scenarios").join(name)
}

/// A folder of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("deploy-tracker-replay-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves the app's router on a real port, as `deploy-tracker serve` does.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn http(url: &str) -> Target {
    Target::http(
        url,
        &Secrets::parse(GITHUB_SECRET).unwrap(),
        &Secrets::parse(VERCEL_SECRET).unwrap(),
    )
    .unwrap()
}

fn offline(app: &TestApp) -> Target {
    Target::Database(app.state.ingest.clone())
}

async fn run(paths: &[PathBuf], target: &Target, options: &Options) -> Report {
    let fixtures = replay::load(paths).unwrap();
    replay::replay(&fixtures, target, options, |_| {})
        .await
        .unwrap()
}

fn outcomes(report: &Report) -> Vec<Result<Outcome, String>> {
    report.sent.iter().map(|s| s.outcome.clone()).collect()
}

/// The table with app ids blanked, to compare histories kept in two databases.
async fn history(app: &TestApp) -> Vec<Row> {
    let mut rows: Vec<Row> = app
        .table()
        .await
        .into_iter()
        .map(|row| Row {
            app_id: Uuid::nil(),
            ..row
        })
        .collect();
    rows.sort();
    rows
}

db_test!(replay_over_http_and_offline_give_the_same_final_table);
async fn replay_over_http_and_offline_give_the_same_final_table(over_http: TestApp) {
    over_http.storefront().await;
    let url = serve(&over_http).await;
    let offline_app = TestApp::new(over_http.backend).await;
    offline_app.storefront().await;
    let paths = [scenario("all.scenario"), scenario("out-of-order.scenario")];

    let sent = run(&paths, &http(&url), &Options::default()).await;
    let applied = run(&paths, &offline(&offline_app), &Options::default()).await;

    assert_eq!(
        sent.summary(),
        "replayed 19: 6 applied, 7 ignored, 4 duplicate, 1 unmatched, 1 stale, 0 failed"
    );
    assert_eq!(outcomes(&sent), outcomes(&applied));
    assert!(sent.sent.iter().all(|s| s.status.is_some()));
    let table = history(&over_http).await;
    assert_eq!(table, history(&offline_app).await);
    let statuses: Vec<_> = table
        .iter()
        .map(|r| (r.environment.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [("production", "failed"), ("staging", "ready")],
        "{table:#?}"
    );
}

db_test!(a_second_replay_is_all_duplicates_unless_fresh_ids_make_a_second_history);
async fn a_second_replay_is_all_duplicates_unless_fresh_ids_make_a_second_history(app: TestApp) {
    app.storefront().await;
    let paths = [
        scenario("staging-deploy.scenario"),
        scenario("failed-production-deploy.scenario"),
    ];
    let first = run(&paths, &offline(&app), &Options::default()).await;
    assert_eq!(first.failed(), 0, "{}", first.summary());
    let table = app.table().await;
    assert_eq!(table.len(), 2);

    let again = run(&paths, &offline(&app), &Options::default()).await;
    assert!(
        again
            .sent
            .iter()
            .all(|s| s.outcome == Ok(Outcome::Duplicate)),
        "{}",
        again.summary()
    );
    assert_eq!(app.table().await, table);

    for run_number in 2..=3 {
        let fresh = Options {
            fresh_ids: Some(FreshIds::new()),
            ..Options::default()
        };
        let report = run(&paths, &offline(&app), &fresh).await;
        assert_eq!(
            outcomes(&report),
            outcomes(&first),
            "a fresh run repeats the first"
        );
        let rows = app.deployments().await;
        // Two rows per run: each push met its Vercel events on one row.
        assert_eq!(rows.len(), 2 * run_number, "{rows:#?}");
        assert!(
            rows.iter()
                .all(|r| r.github_commit_sha.is_some() && r.vercel_deployment_id.is_some())
        );
    }
    let rows = app.deployments().await;
    let mut shas: Vec<_> = rows.iter().map(|r| r.github_commit_sha.clone()).collect();
    shas.sort();
    shas.dedup();
    assert_eq!(shas.len(), 6, "every history has its own commits");
    for (environment, status) in [("staging", "ready"), ("production", "failed")] {
        let n = rows
            .iter()
            .filter(|r| r.environment.as_str() == environment && r.status.as_str() == status)
            .count();
        assert_eq!(n, 3, "{environment} {status}");
    }

    // Within one fresh run, a delivery listed twice is still a duplicate.
    let fresh = Options {
        fresh_ids: Some(FreshIds::new()),
        ..Options::default()
    };
    let report = run(&[scenario("out-of-order.scenario")], &offline(&app), &fresh).await;
    assert_eq!(report.count(Outcome::Duplicate), 1, "{}", report.summary());
    assert_eq!(app.deployments().await.len(), 7);
}

db_test!(export_then_replay_reproduces_the_original_rows);
async fn export_then_replay_reproduces_the_original_rows(source: TestApp) {
    source.storefront().await;
    let push_id = Uuid::new_v4().to_string();
    let (status, body) = source
        .github("push", &push_id, &fixture("github/push.staging.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for name in [
        "vercel/deployment.created.staging.json",
        "vercel/deployment.succeeded.staging.json",
    ] {
        let (status, body) = source.fixture(name).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // GitHub may also send a push form-encoded; it is exported as it came.
    let form = serde_urlencoded::to_string([(
        "payload",
        String::from_utf8(fixture("github/push.production.json")).unwrap(),
    )])
    .unwrap();
    let form_id = Uuid::new_v4().to_string();
    let request = Request::post("/webhooks/github")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "push")
        .header("x-github-delivery", &form_id)
        .header(
            "x-hub-signature-256",
            sign_github(GITHUB_SECRET.as_bytes(), form.as_bytes()),
        )
        .body(Body::from(form.clone()))
        .unwrap();
    let (status, body) = source.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let dir = TempDir::new();
    let ledger = source.deliveries().await;
    let files: Vec<PathBuf> = ledger
        .iter()
        .map(|d| replay::export(d, &dir.0).unwrap())
        .collect();
    let scenario = replay::write_scenario(&dir.0, "deliveries.scenario", &files).unwrap();
    assert_eq!(
        files[0],
        dir.0.join(format!("github/push.{push_id}.json")),
        "named so replay finds the event and the delivery id"
    );
    assert_eq!(files[3], dir.0.join(format!("github/push.{form_id}.form")));
    assert_eq!(std::fs::read(&files[3]).unwrap(), form.as_bytes());

    let copy = TestApp::new(source.backend).await;
    copy.storefront().await;
    let report = run(
        std::slice::from_ref(&scenario),
        &offline(&copy),
        &Options::default(),
    )
    .await;
    assert_eq!(report.count(Outcome::Applied), 4, "{}", report.summary());
    assert_eq!(history(&copy).await, history(&source).await);
    let copied = copy.deliveries().await;
    let ids = |l: &[deploy_tracker::store::deliveries::Model]| {
        l.iter()
            .map(|d| (d.delivery_id.clone(), d.body.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&copied),
        ids(&ledger),
        "the same delivery ids and bytes"
    );

    // Back into the database they came from, they are duplicates.
    let report = run(
        std::slice::from_ref(&dir.0),
        &offline(&source),
        &Options::default(),
    )
    .await;
    assert_eq!(report.count(Outcome::Duplicate), 4, "{}", report.summary());
}

db_test!(a_push_for_an_unregistered_repo_becomes_pending_after_apps_add_and_reprocess);
async fn a_push_for_an_unregistered_repo_becomes_pending_after_apps_add_and_reprocess(
    app: TestApp,
) {
    let (status, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "unmatched");
    assert!(app.deployments().await.is_empty());

    app.storefront().await;
    let done = replay::reprocess(&app.state.ingest, &[Outcome::Unmatched], None, |_| {})
        .await
        .unwrap();

    assert_eq!(done.len(), 1);
    assert!(done[0].changed);
    assert_eq!(
        (done[0].previous_outcome.as_str(), done[0].outcome.as_str()),
        ("unmatched", "applied")
    );
    let rows = app.deployments().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].environment.as_str(), rows[0].status.as_str()),
        ("staging", "pending")
    );
    let ledger = app.deliveries().await;
    assert_eq!(ledger[0].outcome, "applied");
    assert_eq!(ledger[0].reason, "pending deployment created");
    assert_eq!(ledger[0].deployment_id, Some(rows[0].id));
}

db_test!(reprocess_rebuilds_what_replay_would_and_is_idempotent);
async fn reprocess_rebuilds_what_replay_would_and_is_idempotent(app: TestApp) {
    let paths = [scenario("all.scenario")];
    run(&paths, &offline(&app), &Options::default()).await;
    assert!(app.deployments().await.is_empty(), "no app yet");
    app.storefront().await;

    let first = replay::reprocess(&app.state.ingest, &[], None, |_| {})
        .await
        .unwrap();
    assert_eq!(first.len(), 15);
    assert_eq!(
        replay::reprocess_summary(&first),
        // The promote, unmatched before the app was registered, is now ignored: the
        // deployment it promotes failed.
        "reprocessed 15: 10 changed (6 applied, 3 ignored, 1 stale), 5 unchanged"
    );
    let expected = TestApp::new(app.backend).await;
    expected.storefront().await;
    run(&paths, &offline(&expected), &Options::default()).await;
    assert_eq!(history(&app).await, history(&expected).await);
    let outcomes = |ledger: Vec<deploy_tracker::store::deliveries::Model>| {
        ledger
            .into_iter()
            .map(|d| (d.delivery_id, d.outcome, d.reason))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outcomes(app.deliveries().await),
        outcomes(expected.deliveries().await)
    );

    let (rows, ledger) = (app.deployments().await, app.deliveries().await);
    let second = replay::reprocess(&app.state.ingest, &[], None, |_| {})
        .await
        .unwrap();
    assert!(second.iter().all(|r| !r.changed), "{second:#?}");
    assert_eq!(app.deployments().await, rows);
    assert_eq!(app.deliveries().await, ledger);

    let future = chrono::Utc::now().naive_utc() + chrono::Duration::days(1);
    let none = replay::reprocess(&app.state.ingest, &[], Some(future), |_| {})
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn unreadable_payloads_are_refused_before_anything_is_sent_naming_the_file() {
    let dir = TempDir::new();
    let missing = dir.0.join("github/push.missing.json");
    let error = replay::load(std::slice::from_ref(&missing)).unwrap_err();
    assert_eq!(error.path, missing);
    assert!(error.to_string().contains("no such file"), "{error}");

    let listed = dir.write(
        "bad.scenario",
        b"# a comment\n\ngithub/push.missing.json  # not there\n",
    );
    let error = replay::load(&[listed]).unwrap_err().to_string();
    assert!(
        error.contains("push.missing.json") && error.contains("bad.scenario line 3"),
        "{error}"
    );

    let elsewhere = dir.write("gitlab/push.json", b"{}");
    let error = replay::load(&[elsewhere]).unwrap_err().to_string();
    assert!(
        error.contains("gitlab/push.json") && error.contains("folder named github or vercel"),
        "{error}"
    );

    let not_json = dir.write("vercel/deployment.created.x.json", b"<html>");
    let error = replay::load(&[not_json]).unwrap_err().to_string();
    assert!(
        error.contains("deployment.created.x.json: not JSON"),
        "{error}"
    );

    let looping = dir.write("loop.scenario", b"loop.scenario\n");
    let error = replay::load(&[looping]).unwrap_err().to_string();
    assert!(error.contains("nested too deeply"), "{error}");

    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let error = replay::load(&[empty]).unwrap_err().to_string();
    assert!(error.contains("holds no payloads"), "{error}");
}

#[test]
fn github_delivery_ids_are_stable_per_file_and_kept_from_exported_names() {
    let load = |path: &Path| replay::load(&[path.to_owned()]).unwrap().remove(0);
    let staging = load(&fixtures().join("github/push.staging.json"));
    assert_eq!(staging.event, "push");
    assert_eq!(
        staging.delivery_id,
        load(&fixtures().join("github/push.staging.json")).delivery_id
    );
    assert_ne!(
        staging.delivery_id,
        load(&fixtures().join("github/push.production.json")).delivery_id
    );
    let dir = TempDir::new();
    let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let exported = dir.write(
        &format!("github/push.{id}.json"),
        &fixture("github/push.staging.json"),
    );
    assert_eq!(load(&exported).delivery_id, id);
    let vercel = load(&fixtures().join("vercel/deployment.created.staging.json"));
    assert_eq!(
        (vercel.event.as_str(), vercel.delivery_id.as_str()),
        ("deployment.created", "zMjMtG2J7vW8jw0tCQi6a")
    );
}

/// Runs the real binary against the test's database, off the async workers.
async fn binary(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_deploy-tracker"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", app.database_url())
        .env("LOG_FORMAT", "json");
    for var in [
        "GITHUB_WEBHOOK_SECRET",
        "VERCEL_WEBHOOK_SECRET",
        "REPLAY_URL",
        "REPLAY_FRESH_IDS",
        "REPLAY_DELAY_MS",
        "REPROCESS_OUTCOME",
        "REPROCESS_SINCE",
        "EXPORT_DIR",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

db_test!(the_binary_replays_scenarios_and_exits_non_zero_on_any_failure);
async fn the_binary_replays_scenarios_and_exits_non_zero_on_any_failure(app: TestApp) {
    app.storefront().await;
    let staging = "fixtures/scenarios/staging-deploy.scenario";

    let out = binary(&app, &["replay", staging], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("replayed 3: 3 applied, 0 ignored, 0 duplicate, 0 failed"),
        "{}",
        text(&out.stdout)
    );

    let url = serve(&app).await;
    let secrets = [
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        ("VERCEL_WEBHOOK_SECRET", VERCEL_SECRET),
    ];
    let out = binary(&app, &["replay", "--url", &url, staging], &secrets).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("replayed 3: 0 applied, 0 ignored, 3 duplicate, 0 failed"),
        "{}",
        text(&out.stdout)
    );

    let wrong = [
        ("GITHUB_WEBHOOK_SECRET", "not-the-secret"),
        ("VERCEL_WEBHOOK_SECRET", VERCEL_SECRET),
    ];
    let out = binary(&app, &["replay", "--url", &url, staging], &wrong).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("401 FAILED") && stdout.contains("2 duplicate, 1 failed"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("1 of 3 deliveries failed"),
        "{}",
        text(&out.stderr)
    );

    let out = binary(&app, &["replay", "--url", &url, staging], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("GITHUB_WEBHOOK_SECRET is not set"),
        "{}",
        text(&out.stderr)
    );

    for (path, message) in [
        (
            "fixtures/github/push.nowhere.json",
            "fixtures/github/push.nowhere.json: no such file or folder",
        ),
        (
            "fixtures/README.md",
            "fixtures/README.md: cannot tell the provider",
        ),
    ] {
        let out = binary(&app, &["replay", path], &[]).await;
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "nothing was sent");
    }
    assert_eq!(app.delivery_count().await, 3);
}

db_test!(the_binary_reprocesses_and_exports_stored_deliveries);
async fn the_binary_reprocesses_and_exports_stored_deliveries(app: TestApp) {
    let (_, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(body["outcome"], "unmatched");
    app.storefront().await;

    let out = binary(&app, &["reprocess", "--outcome", "unmatched"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("unmatched -> applied")
            && stdout.contains("reprocessed 1: 1 changed (1 applied), 0 unchanged"),
        "{stdout}"
    );
    let out = binary(&app, &["reprocess"], &[]).await;
    assert!(
        text(&out.stdout).contains("reprocessed 1: 0 changed, 1 unchanged"),
        "{}",
        text(&out.stdout)
    );

    let dir = TempDir::new();
    let id = app.deliveries().await[0].id.to_string();
    let dir_arg = dir.0.to_str().unwrap();
    let out = binary(&app, &["deliveries", "export", &id, "--dir", dir_arg], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = dir.0.join("github/push.push_staging_json.json");
    assert_eq!(text(&out.stdout).trim(), written.display().to_string());
    assert_eq!(
        std::fs::read(&written).unwrap(),
        fixture("github/push.staging.json")
    );

    let out_file = dir.0.join("one/github/push.json");
    let out = binary(
        &app,
        &[
            "deliveries",
            "export",
            "--outcome",
            "applied",
            "--out",
            out_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        fixture("github/push.staging.json")
    );

    let out = binary(&app, &["deliveries", "export"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("give the ids of the deliveries to export"),
        "{}",
        text(&out.stderr)
    );
    let out = binary(
        &app,
        &["deliveries", "export", &Uuid::new_v4().to_string()],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no delivery has id"),
        "{}",
        text(&out.stderr)
    );
}

db_test!(reprocess_gets_the_writers_turn_while_deliveries_keep_coming);
/// A writer goes on from one batch to the next while deliveries are queued; work
/// waiting for its turn (here reprocess, which takes the first writer's) gets it
/// after the batch in hand, however busy the queue stays. Counted in deliveries
/// answered while reprocess waited and ran: a batch or two of the senders' (each
/// sends one at a time), where a writer that kept its turn while anything was queued
/// answered thousands.
async fn reprocess_gets_the_writers_turn_while_deliveries_keep_coming(mut app: TestApp) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    // One writer, so that every delivery waits for the turn reprocess takes.
    app.reconfigure(|state| {
        state.ingest = Ingest::with_writers(state.ingest.db().clone(), Some(1));
    });
    let (status, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.storefront().await;

    const SENDERS: u64 = 16;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let ping = fixture("github/ping.default.json");
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (router, stop, answered) = (app.router.clone(), stop.clone(), answered.clone());
            let ping = ping.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("ping-{sender}-{sent}");
                    let request = github_request("ping", &id, &ping, GITHUB_SECRET);
                    let response = router.clone().oneshot(request).await.unwrap();
                    assert!(response.status().is_success());
                    answered.fetch_add(1, Ordering::SeqCst);
                    sent += 1;
                }
            })
        })
        .collect();
    // The senders keep the queue busy first.
    while answered.load(Ordering::SeqCst) < 10 * SENDERS {
        tokio::task::yield_now().await;
    }
    let before = answered.load(Ordering::SeqCst);
    let done = replay::reprocess(&app.state.ingest, &[Outcome::Unmatched], None, |_| {})
        .await
        .unwrap();
    let meanwhile = answered.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, "applied");
    assert!(
        meanwhile <= 4 * SENDERS,
        "{meanwhile} deliveries were answered while reprocess waited for the turn"
    );
}
