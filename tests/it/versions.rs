//! On Postgres, ingest writes a batch without a transaction, on condition that its
//! keys still name the apps it read and none of them changed version since
//! (`WRITE_UNLOCKED`); every writer that takes an app's lock instead raises its
//! version. These tests hold each side of that bargain on a real database, and show
//! that the apps a writer keeps from one batch to the next are never trusted.

use axum::http::StatusCode;
use deploy_tracker::deployments::ingest::{Ingest, WRITE_UNLOCKED, write_values};
use deploy_tracker::store::deliveries;
use deploy_tracker::sweep::{self, Sweeper};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp};

async fn postgres() -> Option<TestApp> {
    let app = TestApp::try_new(Backend::Postgres).await;
    if app.is_none() {
        eprintln!("TEST_DATABASE_URL is not set; skipped (the versions are Postgres's)");
    }
    app
}

async fn version(app: &TestApp, id: Uuid) -> i64 {
    app.db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"SELECT "ingestVersion" FROM apps WHERE id = $1"#,
            [id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "ingestVersion")
        .unwrap()
}

const STOREFRONT_REPO: &str = "acme-apps/storefront";

/// `WRITE_UNLOCKED` for one ledger row and no deployment row, planned with `app` at
/// `version` as the one app the storefront's repository names; the rows it inserted.
async fn write_unlocked(app: &TestApp, app_id: Uuid, version: i64, delivery_id: &str) -> u64 {
    let now = chrono::Utc::now().naive_utc();
    let row = deliveries::Model {
        id: Uuid::now_v7(),
        provider: "github".into(),
        delivery_id: delivery_id.into(),
        event_type: "ping".into(),
        body: b"{}".to_vec(),
        received_at: now,
        outcome: "ignored".into(),
        reason: "ping".into(),
        deployment_id: None,
        attempts: 1,
        last_received_at: Some(now),
        source: "webhook".into(),
    };
    let mut values = write_values([], vec![row]);
    values.extend([
        vec![app_id].into(),
        vec![version].into(),
        vec![STOREFRONT_REPO.to_owned()].into(),
        Vec::<String>::new().into(),
    ]);
    app.db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            WRITE_UNLOCKED.as_str(),
            values,
        ))
        .await
        .unwrap()
        .rows_affected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlocked_write_holds_only_at_the_version_it_read_and_raises_it() {
    let Some(app) = postgres().await else { return };
    let app_id: Uuid = app.storefront().await.parse().unwrap();
    let read = version(&app, app_id).await;

    // Another writer got there first: nothing of the batch is written.
    assert_eq!(write_unlocked(&app, app_id, read - 1, "stale").await, 0);
    assert_eq!(app.delivery_count().await, 0);
    assert_eq!(version(&app, app_id).await, read);

    assert_eq!(write_unlocked(&app, app_id, read, "held").await, 1);
    assert_eq!(app.delivery_count().await, 1);
    assert_eq!(version(&app, app_id).await, read + 1);
    // A batch that read before that write now holds a stale version.
    assert_eq!(write_unlocked(&app, app_id, read, "late").await, 0);
    assert_eq!(app.delivery_count().await, 1);

    // An app registered since under the same repository: the batch was planned
    // without it, so it writes nothing, though its one app's version holds.
    app.register(serde_json::json!({"name": "storefront-docs", "githubRepo": STOREFRONT_REPO}))
        .await;
    assert_eq!(
        write_unlocked(&app, app_id, read + 1, "unseen app").await,
        0
    );
    assert_eq!(app.delivery_count().await, 1);
    assert_eq!(version(&app, app_id).await, read + 1);
}

/// A writer keeps the apps it read for its next batches (one round trip fewer each);
/// an app registered meanwhile under a repository it kept is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_registered_after_its_repository_was_seen_gets_its_deployment() {
    let Some(app) = postgres().await else { return };
    let storefront: Uuid = app.storefront().await.parse().unwrap();
    let body = std::fs::read("fixtures/github/push.staging.json").unwrap();
    let (status, answer) = app.github("push", "first-push", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let docs: Uuid = app
        .register(serde_json::json!({"name": "storefront-docs", "githubRepo": STOREFRONT_REPO}))
        .await
        .parse()
        .unwrap();
    let (status, answer) = app.github("push", "second-push", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let mut apps: Vec<Uuid> = app.deployments().await.iter().map(|d| d.app_id).collect();
    apps.sort();
    let mut expected = vec![storefront, docs];
    expected.sort();
    assert_eq!(
        apps, expected,
        "one pending row for each app of the repository"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writer_of_an_apps_rows_raises_its_version() {
    let Some(app) = postgres().await else { return };
    let app_id: Uuid = app.storefront().await.parse().unwrap();
    let mut last = version(&app, app_id).await;
    let mut raised = |now: i64, by: &str| {
        assert!(now > last, "{by} left the version at {now}");
        last = now;
    };

    // A delivery, written unlocked.
    let (status, body) = app.fixture("github/push.staging.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    raised(version(&app, app_id).await, "ingest");

    // Reprocessing, under the app's lock.
    let ledger_id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    Ingest::new(app.db.clone())
        .reprocess(ledger_id)
        .await
        .unwrap();
    raised(version(&app, app_id).await, "reprocess");

    // The sweeper settling the stuck row, under the app's lock.
    let pushed = app.deployments().await.remove(0);
    let sweeper = Sweeper {
        stuck_after: "30m".parse().unwrap(),
        vercel: None,
    };
    let now = pushed.updated_at + chrono::Duration::minutes(31);
    let report = sweep::run_once(&app.db, &sweeper, now).await.unwrap();
    assert_eq!(report.changes.len(), 1);
    raised(version(&app, app_id).await, "the sweeper");
}
