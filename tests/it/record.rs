//! The complete deployment record (DESIGN section 6): every new column from real
//! payloads, GitHub deployment statuses meeting their Vercel twins on one row in any
//! order, GitHub-only CD, promotions and rollbacks, redeliveries counted, a timeout
//! replaced by a real event, and the bad inputs kept and answered 202.

use axum::http::StatusCode;
use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::store::deployments::{self, FailureReason};
use deploy_tracker::webhooks::Provider;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::Value;

use crate::db_test;
use crate::helpers::{Row, TestApp};

const SHA_PRODUCTION: &str = "28b46f9426190a0e67ec5e6e0809ad5b110e142d";
const INSPECTOR: &str = "https://vercel.com/acme/storefront/MHU6u5PV6crcoYeV9mCQdeG57TGx";

async fn only_row(app: &TestApp) -> Value {
    let (status, page) = app.get("/api/deployments").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    items[0].clone()
}

db_test!(a_production_deploy_told_by_both_providers_fills_every_new_column);
async fn a_production_deploy_told_by_both_providers_fills_every_new_column(app: TestApp) {
    app.storefront().await;
    for name in [
        "github/push.production.json",
        "vercel/deployment.created.production.json",
        "github/deployment_status.pending.production.json",
        "vercel/deployment.succeeded.production.json",
        "github/deployment_status.success.production.json",
    ] {
        let (status, body) = app.fixture(name).await;
        // GitHub's pending, after Vercel's building, is stale: 202.
        assert!(status.is_success(), "{name}: {body}");
    }
    let row = only_row(&app).await;
    assert_eq!(row["status"], "ready");
    assert_eq!(row["githubCommitSha"], SHA_PRODUCTION);
    assert_eq!(
        row["vercelDeploymentId"],
        "dpl_MHU6u5PV6crcoYeV9mCQdeG57TGx"
    );
    assert_eq!(row["githubDeploymentId"], 6_912_054_387i64);
    // Vercel's URL, not GitHub's (equal here), and Vercel's inspector for the logs.
    assert_eq!(
        row["deploymentUrl"],
        "https://storefront-3efkf6xdw-acme.vercel.app"
    );
    assert_eq!(row["buildLogs"], INSPECTOR);
    // The push says who pushed; the GitHub app's vercel[bot] does not win.
    assert_eq!(row["triggeredBy"], "dana-okafor");
    // head_commit.timestamp 2026-11-10T16:29:58+01:00.
    assert_eq!(row["committedAt"], "2026-11-10T15:29:58.000000Z");
    // The push at 15:30:05 is the earliest event.
    assert_eq!(row["createdAt"], "2026-11-10T15:30:05.000000Z");
    // Vercel's created at 15:30:08.012; ready at GitHub's 15:31:33 (earlier than
    // Vercel's 15:31:33.420): 84,988 ms.
    assert_eq!(row["startedAt"], "2026-11-10T15:30:08.012000Z");
    assert_eq!(row["finishedAt"], "2026-11-10T15:31:33.000000Z");
    assert_eq!(row["buildDurationMs"], 84_988);
    assert_eq!(row["failureReason"], Value::Null);
    assert_eq!(row["errorMessage"], Value::Null);
    assert_eq!(row["isRollback"], false);
    assert_eq!(row["previousDeploymentId"], Value::Null);
}

db_test!(a_deployment_status_and_its_vercel_twin_meet_on_one_row_in_every_order);
async fn a_deployment_status_and_its_vercel_twin_meet_on_one_row_in_every_order(app: TestApp) {
    let names = [
        "vercel/deployment.created.production.json",
        "vercel/deployment.succeeded.production.json",
        "github/deployment_status.pending.production.json",
        "github/deployment_status.success.production.json",
    ];
    let mut tables: Vec<(Vec<usize>, Vec<Row>)> = Vec::new();
    for order in permutations(names.len()) {
        let app = TestApp::new(app.backend).await;
        app.storefront().await;
        for &i in &order {
            let (status, body) = app.fixture(names[i]).await;
            assert!(status.is_success(), "{}: {body}", names[i]);
        }
        let table = without_app_ids(app.table().await);
        assert_eq!(table.len(), 1, "{order:?}: {table:?}");
        tables.push((order, table));
    }
    let (first_order, first) = &tables[0];
    assert_eq!(first[0].status, "ready");
    assert_eq!(first[0].github_deployment_id, Some(6_912_054_387));
    for (order, table) in &tables[1..] {
        assert_eq!(table, first, "{order:?} against {first_order:?}");
    }
}

/// Tables of two databases, whose apps have different ids.
fn without_app_ids(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|row| Row {
            app_id: uuid::Uuid::nil(),
            ..row
        })
        .collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

db_test!(github_only_cd_creates_and_moves_rows_on_its_own);
async fn github_only_cd_creates_and_moves_rows_on_its_own(app: TestApp) {
    app.storefront().await;
    let (status, body) = app
        .fixture("github/deployment_status.queued.staging.json")
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &"applied".into())
    );
    assert_eq!(only_row(&app).await["status"], "pending");
    app.fixture("github/deployment_status.in_progress.staging.json")
        .await;
    assert_eq!(only_row(&app).await["status"], "building");
    app.fixture("github/deployment_status.success.staging.json")
        .await;
    let row = only_row(&app).await;
    assert_eq!(row["status"], "ready");
    assert_eq!(row["environment"], "staging");
    assert_eq!(row["vercelDeploymentId"], Value::Null);
    assert_eq!(
        row["deploymentUrl"],
        "https://storefront-6hwqnpxot-acme.vercel.app"
    );
    assert_eq!(row["triggeredBy"], "vercel[bot]");
    assert_eq!(row["startedAt"], "2026-11-10T09:12:50.000000Z");
    assert_eq!(row["finishedAt"], "2026-11-10T09:14:16.000000Z");
    assert_eq!(row["buildDurationMs"], 86_000);

    let (status, body) = app
        .fixture("github/deployment_status.error.staging.json")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, failed) = app.get("/api/deployments?status=failed").await;
    let failed = &failed["items"][0];
    assert_eq!(
        failed["githubCommitSha"],
        "4e1c7a09b2d35f8e6a0c91d7f3b5e28a6c4d0f17"
    );
    assert_eq!(failed["failureReason"], "error");
    assert_eq!(failed["errorMessage"], "Deployment has errored");
    assert_eq!(failed["finishedAt"], "2026-11-10T18:02:11.000000Z");
    assert_eq!(
        failed["buildDurationMs"],
        Value::Null,
        "no start was reported"
    );
}

db_test!(statuses_that_are_not_deploys_are_kept_and_answered_202_with_a_reason);
async fn statuses_that_are_not_deploys_are_kept_and_answered_202_with_a_reason(app: TestApp) {
    app.storefront().await;
    let cases = [
        (
            "github/deployment_status.unknown-state.json",
            "ignored",
            "\"exploded\"",
        ),
        (
            "github/deployment_status.inactive.production.json",
            "ignored",
            "inactive",
        ),
        (
            "github/deployment_status.success.preview.json",
            "ignored",
            "neither staging nor production",
        ),
        (
            "vercel/deployment.promoted.unknown.json",
            "unmatched",
            "has not arrived yet",
        ),
        (
            "vercel/deployment.rollback.unknown-target.json",
            "unmatched",
            "not seen yet",
        ),
    ];
    for (name, outcome, reason) in cases {
        let (status, body) = app.fixture(name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(body["outcome"], outcome, "{name}: {body}");
        let text = body["reason"].as_str().unwrap();
        assert!(text.contains(reason), "{name}: {text}");
    }
    assert_eq!(
        app.delivery_count().await,
        cases.len() as u64,
        "every one kept"
    );
    // The rollback to an unseen deployment is recorded: production serves it.
    let table = app.table().await;
    assert_eq!(table.len(), 1);
    assert!(table[0].is_rollback);
    assert_eq!(table[0].sha, None);
    assert_eq!(
        table[0].rollback_to.as_deref(),
        Some("dpl_6DvTnQ2hWzK9mRcX4pLsB7yEaJ3u")
    );
}

/// Storefront-like app 0 with two production flows, A then B.
fn two_production_flows() -> (SimApp, Flow, Flow) {
    let app = SimApp::numbered(0);
    let flow = |n: usize| {
        let mut flow = Flow::numbered(n, 1, "rb");
        flow.production = true;
        flow.fails = false;
        flow
    };
    (app, flow(1), flow(2))
}

async fn send(app: &TestApp, delivery: &SimDelivery) -> (StatusCode, Value) {
    match delivery.provider {
        Provider::Github => {
            app.github(delivery.event, &delivery.delivery_id, &delivery.body)
                .await
        }
        Provider::Vercel => app.vercel(&delivery.body).await,
    }
}

db_test!(a_rollback_makes_the_older_deployment_the_latest_in_production);
async fn a_rollback_makes_the_older_deployment_the_latest_in_production(app: TestApp) {
    let (sim, a, b) = two_production_flows();
    let app_id = app.register(sim.registration()).await;
    let rollback = a.serve_again(&sim, b.started_ms + 3_600_000, false);
    let mut deliveries: Vec<SimDelivery> = a.deliveries(&sim).into_iter().collect();
    deliveries.extend(b.deliveries(&sim));
    deliveries.push(rollback.clone());
    for delivery in &deliveries {
        let (status, body) = send(&app, delivery).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", delivery.delivery_id);
    }
    let (status, latest) = app
        .get(&format!(
            "/api/apps/{app_id}/deployments/latest?environment=production"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{latest}");
    assert_eq!(latest["githubCommitSha"], a.sha.as_str());
    assert_eq!(latest["deploymentUrl"], format!("https://{}", a.url));
    assert_eq!(latest["isRollback"], true);
    assert_eq!(latest["status"], "ready");
    let rows = app.deployments().await;
    let row_of = |id: &str| {
        rows.iter()
            .find(|r| r.vercel_deployment_id.as_deref() == Some(id))
            .unwrap()
    };
    let (row_a, row_b) = (row_of(&a.deployment_id), row_of(&b.deployment_id));
    assert_eq!(row_b.previous_deployment_id, Some(row_a.id), "B replaced A");
    assert_eq!(row_a.previous_deployment_id, None);
    assert_eq!(
        latest["previousDeploymentId"],
        row_b.id.to_string(),
        "the rollback replaced B"
    );

    // The same deliveries in the reverse order, the rollback first, end the same.
    let reversed = TestApp::new(app.backend).await;
    reversed.register(sim.registration()).await;
    for delivery in deliveries.iter().rev() {
        let (status, body) = send(&reversed, delivery).await;
        assert!(status.is_success(), "{body}");
    }
    assert_eq!(
        without_app_ids(reversed.table().await),
        without_app_ids(app.table().await)
    );

    // A promotion of A at the same time is the same fact: no second rollback row.
    let (status, body) = send(&app, &a.serve_again(&sim, b.started_ms + 3_600_000, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "duplicate", "{body}");
    assert_eq!(app.deployments().await.len(), 3);
}

db_test!(promoting_an_older_deployment_is_a_rollback_and_the_newest_is_not);
async fn promoting_an_older_deployment_is_a_rollback_and_the_newest_is_not(app: TestApp) {
    let (sim, a, b) = two_production_flows();
    let app_id = app.register(sim.registration()).await;
    for delivery in a.deliveries(&sim).iter().chain(&b.deliveries(&sim)) {
        send(&app, delivery).await;
    }
    let (status, body) = send(&app, &b.serve_again(&sim, b.started_ms + 600_000, true)).await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::ACCEPTED, &"ignored".into()),
        "{body}"
    );
    assert_eq!(
        app.deployments().await.len(),
        2,
        "promoting the newest changes nothing"
    );

    let (status, body) = send(&app, &a.serve_again(&sim, b.started_ms + 700_000, true)).await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &"applied".into()),
        "{body}"
    );
    let (_, latest) = app
        .get(&format!(
            "/api/apps/{app_id}/deployments/latest?environment=production"
        ))
        .await;
    assert_eq!(latest["githubCommitSha"], a.sha.as_str());
    assert_eq!(latest["isRollback"], true);
}

db_test!(every_copy_of_a_delivery_is_counted_and_answered_as_before);
async fn every_copy_of_a_delivery_is_counted_and_answered_as_before(app: TestApp) {
    app.storefront().await;
    let (status, first) = app.fixture("github/push.production.json").await;
    assert_eq!(
        (status, &first["outcome"]),
        (StatusCode::OK, &"applied".into())
    );
    for _ in 0..2 {
        let (status, again) = app.fixture("github/push.production.json").await;
        assert_eq!(
            (status, &again["outcome"]),
            (StatusCode::OK, &"duplicate".into())
        );
    }
    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].attempts, 3);
    assert!(ledger[0].last_received_at > Some(ledger[0].received_at));
    assert_eq!(ledger[0].source, "webhook");
    let (_, page) = app.get("/api/deliveries").await;
    assert_eq!(page["items"][0]["attempts"], 3);
    assert!(page["items"][0]["lastReceivedAt"].is_string(), "{page}");
}

db_test!(a_real_event_after_a_timeout_replaces_it);
async fn a_real_event_after_a_timeout_replaces_it(app: TestApp) {
    app.storefront().await;
    app.fixture("vercel/deployment.created.production.json")
        .await;
    let row = app.deployments().await.remove(0);
    deployments::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        status: Set(deployments::Status::Failed),
        failure_reason: Set(Some(FailureReason::Timeout)),
        error_message: Set(Some("no event for 30m".into())),
        finished_at: Set(Some(row.created_at)),
        ..Default::default()
    }
    .update(&app.db)
    .await
    .unwrap();
    let (status, body) = app
        .fixture("vercel/deployment.succeeded.production.json")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("timeout"),
        "{body}"
    );
    let row = deployments::Entity::find_by_id(row.id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, deployments::Status::Ready);
    assert_eq!((row.failure_reason, row.error_message), (None, None));
    assert_eq!(row.build_duration_ms, Some(85_408));
    // A pending report does not replace a timeout.
    let timed_out = TestApp::new(app.backend).await;
    timed_out.storefront().await;
    timed_out
        .fixture("github/deployment_status.pending.production.json")
        .await;
    let row = timed_out.deployments().await.remove(0);
    deployments::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        status: Set(deployments::Status::Failed),
        failure_reason: Set(Some(FailureReason::Timeout)),
        ..Default::default()
    }
    .update(&timed_out.db)
    .await
    .unwrap();
    let (_, body) = timed_out.fixture("github/deployment.production.json").await;
    assert_eq!(body["outcome"], "stale", "{body}");
}
