//! The DORA figures (DESIGN section 7) over a hand-computed history inserted directly:
//! `stats::compute`, `GET /api/stats` and `deploy-tracker stats`, on both backends.

use std::process::Command;

use axum::http::StatusCode;
use chrono::NaiveDateTime;
use deploy_tracker::stats::{self, LeadTime, Percentiles, Stats, Window};
use deploy_tracker::store::deployments::{self, Environment, FailureReason, Status};
use sea_orm::ActiveModelTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db_test;
use crate::helpers::{TestApp, sample};

use Environment::{Production as Prod, Staging};
use FailureReason::{Canceled, Error, Timeout};
use Status::{Building, Failed, Pending, Ready};

fn t(rfc3339: &str) -> NaiveDateTime {
    stats::parse_time("t", rfc3339).unwrap()
}

/// November 1st to 11th 2026: ten days.
const SINCE: &str = "2026-11-01T00:00:00Z";
const UNTIL: &str = "2026-11-11T00:00:00Z";

/// One row as the history holds it; `None` where the column is null.
struct Row {
    app: Uuid,
    env: Environment,
    status: Status,
    reason: Option<FailureReason>,
    created: &'static str,
    build_ms: Option<i64>,
    finished: Option<&'static str>,
    committed: Option<&'static str>,
    rollback: bool,
}

impl Row {
    fn new(app: Uuid, env: Environment, status: Status, created: &'static str) -> Self {
        Row {
            app,
            env,
            status,
            reason: None,
            created,
            build_ms: None,
            finished: None,
            committed: None,
            rollback: false,
        }
    }
    fn reason(self, reason: FailureReason) -> Self {
        Row {
            reason: Some(reason),
            ..self
        }
    }
    fn build(self, ms: i64) -> Self {
        Row {
            build_ms: Some(ms),
            ..self
        }
    }
    fn finished(self, at: &'static str) -> Self {
        Row {
            finished: Some(at),
            ..self
        }
    }
    fn committed(self, at: &'static str) -> Self {
        Row {
            committed: Some(at),
            ..self
        }
    }
    fn rollback(self) -> Self {
        Row {
            rollback: true,
            ..self
        }
    }
}

struct History {
    storefront: Uuid,
    api: Uuid,
    docs: Uuid,
}

async fn register(app: &TestApp, name: &str) -> Uuid {
    app.register(json!({ "name": name, "githubRepo": format!("acme/{name}") }))
        .await
        .parse()
        .unwrap()
}

/// The history every test reads. The numbers in the comments are the figures each row
/// feeds; the tests below add them up.
async fn history(app: &TestApp) -> History {
    let storefront = register(app, "storefront").await;
    let api = register(app, "api").await;
    let docs = register(app, "docs").await; // no deployments at all
    let (s, a) = (storefront, api);
    let rows = [
        // storefront production
        // 1: createdAt == since: counted. Lead 23:10 to 00:10 = 60 min = 3 600 000.
        Row::new(s, Prod, Ready, "2026-11-01T00:00:00Z")
            .build(100_000)
            .finished("2026-11-01T00:10:00Z")
            .committed("2026-10-31T23:10:00Z"),
        // 2: a change failure, restored by 4 at 02:05: 2 h = 7 200 000.
        Row::new(s, Prod, Failed, "2026-11-02T00:00:00Z")
            .reason(Error)
            .build(200_000)
            .finished("2026-11-02T00:05:00Z"),
        // 3: canceled: not a change failure, restores nothing, restored by nothing.
        Row::new(s, Prod, Failed, "2026-11-02T01:00:00Z")
            .reason(Canceled)
            .finished("2026-11-02T01:01:00Z"),
        // 4: lead 02:05 - 01:35 = 30 min = 1 800 000.
        Row::new(s, Prod, Ready, "2026-11-02T02:00:00Z")
            .build(300_000)
            .finished("2026-11-02T02:05:00Z")
            .committed("2026-11-02T01:35:00Z"),
        // 5: timed out: not a change failure.
        Row::new(s, Prod, Failed, "2026-11-03T00:00:00Z")
            .reason(Timeout)
            .finished("2026-11-03T01:00:00Z"),
        // 7: a change failure, restored by the rollback 8: 20 min = 1 200 000.
        Row::new(s, Prod, Failed, "2026-11-05T00:00:00Z")
            .reason(Error)
            .build(400_000)
            .finished("2026-11-05T00:10:00Z"),
        // 8: a rollback: in no count, percentile or lead time, but it restores 7.
        Row::new(s, Prod, Ready, "2026-11-05T00:20:00Z")
            .build(1_000)
            .finished("2026-11-05T00:30:00Z")
            .committed("2026-11-05T00:00:00Z")
            .rollback(),
        // 9: the window's last millisecond; finished after it. Lead 70 min = 4 200 000.
        Row::new(s, Prod, Ready, "2026-11-10T23:59:59.999Z")
            .build(500_000)
            .finished("2026-11-11T00:10:00Z")
            .committed("2026-11-10T23:00:00Z"),
        // 10: createdAt == until: not counted. Lead 10 min = 600 000.
        Row::new(s, Prod, Ready, "2026-11-11T00:00:00Z")
            .build(9_000_000)
            .finished("2026-11-11T00:05:00Z")
            .committed("2026-11-10T23:55:00Z"),
        // 11: a second before since: not counted.
        Row::new(s, Prod, Ready, "2026-10-31T23:59:59Z")
            .build(8_000_000)
            .finished("2026-10-31T23:59:59.500Z"),
        // storefront staging
        // 12: a change failure, restored by 14: 3 h = 10 800 000.
        Row::new(s, Staging, Failed, "2026-11-06T00:00:00Z")
            .reason(Error)
            .build(50_000)
            .finished("2026-11-06T00:01:00Z"),
        // 13: an older failed row (no reason, no finishedAt): a change failure with no
        // time to restore.
        Row::new(s, Staging, Failed, "2026-11-06T01:00:00Z"),
        // 14: no committedAt: no lead time.
        Row::new(s, Staging, Ready, "2026-11-06T03:00:00Z")
            .build(150_000)
            .finished("2026-11-06T03:01:00Z"),
        // 15, 16: still in progress: deployments only.
        Row::new(s, Staging, Pending, "2026-11-07T00:00:00Z"),
        Row::new(s, Staging, Building, "2026-11-07T00:10:00Z"),
        // api
        // 17: production, never restored (18 is staging; 9 is another app).
        Row::new(a, Prod, Failed, "2026-11-08T00:00:00Z")
            .reason(Error)
            .build(250_000)
            .finished("2026-11-08T00:04:00Z"),
        // 18: lead 01:06 - 00:21 = 45 min = 2 700 000.
        Row::new(a, Staging, Ready, "2026-11-08T01:00:00Z")
            .build(350_000)
            .finished("2026-11-08T01:06:00Z")
            .committed("2026-11-08T00:21:00Z"),
    ];
    for row in rows {
        let created = t(row.created);
        let model = deployments::Model {
            failure_reason: row.reason,
            build_duration_ms: row.build_ms,
            finished_at: row.finished.map(t),
            committed_at: row.committed.map(t),
            is_rollback: row.rollback,
            ..deployments::Model::new(row.app, row.env, row.status, created, created)
        };
        deployments::ActiveModel::from(model)
            .insert(&app.db)
            .await
            .unwrap();
    }
    History {
        storefront,
        api,
        docs,
    }
}

fn window(app_id: Option<Uuid>, environment: Option<Environment>) -> Window {
    Window {
        app_id,
        environment,
        since: t(SINCE),
        until: t(UNTIL),
    }
}

fn stats(
    (deployments, ready, failed, canceled, timed_out): (u64, u64, u64, u64, u64),
    deployments_per_day: f64,
    change_failure_rate: Option<f64>,
    (p50, p90): (Option<i64>, Option<i64>),
    mean_time_to_restore_ms: Option<i64>,
    lead_p50: Option<i64>,
) -> Stats {
    Stats {
        deployments,
        ready,
        failed,
        canceled,
        timed_out,
        deployments_per_day,
        change_failure_rate,
        build_duration_ms: Percentiles { p50, p90 },
        mean_time_to_restore_ms,
        lead_time_ms: LeadTime { p50: lead_p50 },
    }
}

db_test!(every_figure_matches_the_hand_computed_history);
async fn every_figure_matches_the_hand_computed_history(app: TestApp) {
    let h = history(&app).await;
    let compute = |w: Window| {
        let db = app.db.clone();
        async move { stats::compute(&db, &w).await.unwrap() }
    };

    // All apps: rows 1-5, 7, 9, 12-18 (14; not the rollback 8, nor 10 and 11).
    // Ready 1, 4, 9, 14, 18; failed 2, 7, 12, 13, 17; canceled 3; timed out 5.
    // 5 ready in 10 days; 5 ÷ (5 + 5). Build times sorted (9): 50k 100k 150k 200k
    // 250k 300k 350k 400k 500k: rank ⌈4.5⌉ = 5 → 250 000, rank ⌈8.1⌉ = 9 → 500 000.
    // Restore (7.2M + 1.2M + 10.8M) ÷ 3 = 6 400 000. Lead times 1.8M 2.7M 3.6M 4.2M:
    // rank 2 → 2 700 000 (a mean of the middle two would say 3 150 000).
    assert_eq!(
        compute(window(None, None)).await,
        stats(
            (14, 5, 5, 1, 1),
            0.5,
            Some(0.5),
            (Some(250_000), Some(500_000)),
            Some(6_400_000),
            Some(2_700_000)
        )
    );

    // storefront: rows 1-5, 7, 9, 12-16 (12). Ready 1, 4, 9, 14; failed 2, 7, 12, 13.
    // Builds 50k 100k 150k 200k 300k 400k 500k: rank 4 → 200 000, rank ⌈6.3⌉ = 7 →
    // 500 000. Restore as above. Lead 1.8M 3.6M 4.2M: rank 2 → 3 600 000.
    assert_eq!(
        compute(window(Some(h.storefront), None)).await,
        stats(
            (12, 4, 4, 1, 1),
            0.4,
            Some(0.5),
            (Some(200_000), Some(500_000)),
            Some(6_400_000),
            Some(3_600_000)
        )
    );

    // storefront production: rows 1-5, 7, 9 (7). Ready 1, 4, 9; failed 2, 7.
    // 2 ÷ (3 + 2) = 0.4: canceled 3 and timed-out 5 would make it 4 ÷ 7.
    // Builds 100k-500k: rank 3 → 300 000, rank 5 → 500 000. Restore (7.2M + 1.2M) ÷ 2.
    assert_eq!(
        compute(window(Some(h.storefront), Some(Prod))).await,
        stats(
            (7, 3, 2, 1, 1),
            0.3,
            Some(0.4),
            (Some(300_000), Some(500_000)),
            Some(4_200_000),
            Some(3_600_000)
        )
    );

    // Staging, all apps: rows 12-16, 18 (6). Ready 14, 18; failed 12, 13.
    // Builds 50k 150k 350k: rank 2 → 150 000, rank 3 → 350 000. Restore: 12 only.
    assert_eq!(
        compute(window(None, Some(Staging))).await,
        stats(
            (6, 2, 2, 0, 0),
            0.2,
            Some(0.5),
            (Some(150_000), Some(350_000)),
            Some(10_800_000),
            Some(2_700_000)
        )
    );

    // api: 17 and 18. Its production failure was never restored: null, not 0.
    assert_eq!(
        compute(window(Some(h.api), None)).await,
        stats(
            (2, 1, 1, 0, 0),
            0.1,
            Some(0.5),
            (Some(250_000), Some(350_000)),
            None,
            Some(2_700_000)
        )
    );

    // docs has no rows: counts 0, everything else null.
    assert_eq!(
        compute(window(Some(h.docs), None)).await,
        stats((0, 0, 0, 0, 0), 0.0, None, (None, None), None, None)
    );
}

db_test!(window_edges_count_since_and_not_until);
async fn window_edges_count_since_and_not_until(app: TestApp) {
    let h = history(&app).await;
    let compute = |since: &str, until: &str| {
        let db = app.db.clone();
        let w = Window {
            app_id: Some(h.storefront),
            environment: None,
            since: t(since),
            until: t(until),
        };
        async move { stats::compute(&db, &w).await.unwrap() }
    };

    // [until, +1 day): row 10 alone (created exactly at the old until).
    assert_eq!(
        compute(UNTIL, "2026-11-12T00:00:00Z").await,
        stats(
            (1, 1, 0, 0, 0),
            1.0,
            Some(0.0),
            (Some(9_000_000), Some(9_000_000)),
            None,
            Some(600_000)
        )
    );

    // [since - 1 s, since): row 11 alone, not row 1 at since. One ready row in a
    // second is 86 400 a day. It has no committedAt.
    assert_eq!(
        compute("2026-10-31T23:59:59Z", SINCE).await,
        stats(
            (1, 1, 0, 0, 0),
            86_400.0,
            Some(0.0),
            (Some(8_000_000), Some(8_000_000)),
            None,
            None
        )
    );

    // [Nov 5, Nov 5 00:15): failure 7 alone; the rollback 8 that restored it was
    // created after the window and still counts as its restore (20 min). 1 failure,
    // no ready row: the change failure rate is 1.
    assert_eq!(
        compute("2026-11-05T00:00:00Z", "2026-11-05T00:15:00Z").await,
        stats(
            (1, 0, 1, 0, 0),
            0.0,
            Some(1.0),
            (Some(400_000), Some(400_000)),
            Some(1_200_000),
            None
        )
    );

    // [Nov 3, Nov 4): only the timed-out 5: no change failure rate at all.
    let timed_out = compute("2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z").await;
    assert_eq!((timed_out.deployments, timed_out.timed_out), (1, 1));
    assert_eq!(timed_out.change_failure_rate, None);
}

db_test!(the_api_answers_the_figures_as_json);
async fn the_api_answers_the_figures_as_json(app: TestApp) {
    let h = history(&app).await;
    let (status, body) = app
        .get(&format!(
            "/api/stats?appId={}&environment=production&since={SINCE}&until={UNTIL}",
            h.storefront
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, storefront_production_json());

    // An offset is accepted (escaped in a URL): 01:00+01:00 is midnight UTC.
    let (status, body) = app
        .get("/api/stats?since=2026-11-01T01:00:00%2B01:00&until=2026-11-11T00:00:00Z")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["deployments"].clone(), body["ready"].clone()),
        (json!(14), json!(5))
    );

    // No window given: the last 30 days before now (whatever the clock says).
    let (status, body) = app.get("/api/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["deployments"].is_u64() && body["buildDurationMs"].is_object());
}

/// storefront production over the ten days, as the API and `stats --json` print it.
fn storefront_production_json() -> Value {
    json!({
        "deployments": 7, "ready": 3, "failed": 2, "canceled": 1, "timedOut": 1,
        "deploymentsPerDay": 0.3, "changeFailureRate": 0.4,
        "buildDurationMs": { "p50": 300_000, "p90": 500_000 },
        "meanTimeToRestoreMs": 4_200_000,
        "leadTimeMs": { "p50": 3_600_000 },
    })
}

db_test!(bad_stats_queries_are_refused_with_a_sentence);
async fn bad_stats_queries_are_refused_with_a_sentence(app: TestApp) {
    let h = history(&app).await;
    for (query, status, words) in [
        (
            "since=yesterday",
            StatusCode::BAD_REQUEST,
            "since must be an RFC 3339 time",
        ),
        (
            "until=2026-11-01",
            StatusCode::BAD_REQUEST,
            "until must be an RFC 3339 time",
        ),
        (
            "since=2026-11-01T00:00:00+01:00",
            StatusCode::BAD_REQUEST,
            "write + as %2B",
        ),
        (
            "since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "must be before until",
        ),
        (
            "since=2026-11-01T00:00:00Z&until=2026-11-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "must be before until",
        ),
        (
            "environment=qa",
            StatusCode::BAD_REQUEST,
            "unknown environment",
        ),
        (
            "appId=storefront",
            StatusCode::BAD_REQUEST,
            "is not a app id",
        ),
        (
            "appId=00000000-0000-0000-0000-000000000000",
            StatusCode::NOT_FOUND,
            "no app has id",
        ),
    ] {
        let (got, body) = app.get(&format!("/api/stats?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{query}: {body}");
    }
    // Behind the same auth as the rest of /api.
    let (status, _) = app
        .send(
            axum::http::Request::get(format!("/api/stats?appId={}", h.storefront))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

db_test!(the_cli_prints_the_same_figures_as_json_and_as_a_table);
async fn the_cli_prints_the_same_figures_as_json_and_as_a_table(app: TestApp) {
    history(&app).await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_deploy-tracker"))
            .arg("stats")
            .args(args)
            .env("DATABASE_URL", app.database_url())
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs");
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let window = ["--since", SINCE, "--until", UNTIL];
    let scope = ["--app", "storefront", "--environment", "production"];

    let (ok, out, err) = run(&[&scope[..], &window[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed, storefront_production_json());

    let (ok, out, err) = run(&[&scope[..], &window[..]].concat());
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "storefront, production: created from 2026-11-01T00:00:00Z to 2026-11-11T00:00:00Z\n"
        ),
        "{out}"
    );
    for line in [
        "  deployments             7\n",
        "  ready / failed          3 / 2\n",
        "  canceled / timed out    1 / 1\n",
        "  deploys per day         0.30\n",
        "  change failure rate     40.0%\n",
        "  build time p50          5m 00s\n",
        "  build time p90          8m 20s\n",
        "  time to restore (mean)  1h 10m\n",
        "  lead time p50           1h 00m\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }

    // No data: dashes, not zeros. Dates are accepted as their midnight.
    let (ok, out, err) = run(&[
        "--app",
        "docs",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-11",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("  change failure rate     -\n"), "{out}");
    assert!(out.contains("  lead time p50           -\n"), "{out}");

    let (ok, _, err) = run(&["--since", UNTIL, "--until", SINCE]);
    assert!(!ok);
    assert!(err.contains("must be before until"), "{err}");
    let (ok, _, err) = run(&["--app", "nope"]);
    assert!(!ok);
    assert!(err.contains("no app is named \"nope\""), "{err}");
}

db_test!(metrics_show_deployments_in_progress_and_count_finished_ones);
async fn metrics_show_deployments_in_progress_and_count_finished_ones(app: TestApp) {
    app.storefront().await;
    let scrape = || async {
        let (status, text) = app.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        text.as_str().unwrap().to_owned()
    };
    let in_progress = |text: &str, environment: &str| {
        sample(
            text,
            "deploy_tracker_deployments_in_progress",
            &[("environment", environment)],
        )
    };
    let finished = |text: &str, environment: &str, status: &str, reason: &str| {
        sample(
            text,
            "deploy_tracker_deployments_finished_total",
            &[
                ("environment", environment),
                ("status", status),
                ("reason", reason),
            ],
        )
    };

    app.fixture("github/push.staging.json").await;
    app.fixture("github/push.production.json").await;
    app.fixture("vercel/deployment.created.staging.json").await;
    let before = scrape().await;
    // This test's database: staging building, production pending.
    assert_eq!(in_progress(&before, "staging"), 1.0, "{before}");
    assert_eq!(in_progress(&before, "production"), 1.0, "{before}");

    app.fixture("vercel/deployment.succeeded.staging.json")
        .await;
    app.fixture("vercel/deployment.succeeded.staging.json")
        .await; // a duplicate
    app.fixture("vercel/deployment.error.production.json").await;
    let after = scrape().await;
    assert_eq!(in_progress(&after, "staging"), 0.0, "{after}");
    // The counters are process-wide (other tests run beside this one): at least ours.
    let ready =
        finished(&after, "staging", "ready", "") - finished(&before, "staging", "ready", "");
    assert!(ready >= 1.0, "{after}");
    let failed = finished(&after, "production", "failed", "error")
        - finished(&before, "production", "failed", "error");
    assert!(failed >= 1.0, "{after}");
    // And the rows the counters speak of: nothing left in progress.
    let mut rows: Vec<_> = app
        .deployments()
        .await
        .into_iter()
        .map(|d| (d.environment, d.status))
        .collect();
    rows.sort_by_key(|(e, _)| e.as_str());
    assert_eq!(rows, [(Prod, Failed), (Staging, Ready)]);
    assert_eq!(in_progress(&after, "production"), 0.0, "{after}");
}
