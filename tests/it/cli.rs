//! The real `deploy-tracker` binary against a temporary SQLite file.

use std::path::PathBuf;
use std::process::{Command, Output};

use chrono::NaiveDate;
use deploy_tracker::store::{self, deliveries, deployments};
use sea_orm::ActiveModelTrait;
use sea_orm::ActiveValue::Set;
use serde_json::Value;
use uuid::Uuid;

struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        TempDb(std::env::temp_dir().join(format!("deploy-tracker-cli-{}.db", Uuid::new_v4())))
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_deploy-tracker"))
            .args(args)
            .env("DATABASE_URL", self.url())
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    }

    /// Runs a command that must succeed and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_list_and_latest_read_the_history_by_app_name() {
    let db = TempDb::new();
    let app = db.json(&[
        "apps",
        "add",
        "--name",
        "storefront",
        "--github-repo",
        "acme-apps/storefront",
    ]);
    let app_id: Uuid = app["id"].as_str().unwrap().parse().unwrap();

    let conn = store::open(&db.url()).await.unwrap();
    let mut ids = Vec::new();
    for (minute, environment, status) in [
        (
            1,
            deployments::Environment::Staging,
            deployments::Status::Ready,
        ),
        (
            2,
            deployments::Environment::Production,
            deployments::Status::Failed,
        ),
        (
            3,
            deployments::Environment::Staging,
            deployments::Status::Building,
        ),
    ] {
        let t = NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(9, minute, 0)
            .unwrap();
        let row = deployments::ActiveModel {
            id: Set(Uuid::now_v7()),
            app_id: Set(app_id),
            environment: Set(environment),
            status: Set(status),
            deployment_url: Set(None),
            github_commit_sha: Set(Some(format!("ab{minute:02}").repeat(10))),
            vercel_deployment_id: Set(None),
            created_at: Set(t),
            updated_at: Set(t),
            error_message: Set(None),
            ..Default::default()
        }
        .insert(&conn)
        .await
        .unwrap();
        ids.push(row.id.to_string());
    }
    conn.close().await.unwrap();

    let page = db.json(&["deployments", "list", "--app", "storefront", "--json"]);
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    assert_eq!(page["nextCursor"], Value::Null);

    let page = db.json(&[
        "deployments",
        "list",
        "--status",
        "failed",
        "--limit",
        "1",
        "--json",
    ]);
    assert_eq!(page["items"][0]["id"], ids[1].as_str());
    let page = db.json(&[
        "deployments",
        "list",
        "--app",
        &app_id.to_string(),
        "--limit",
        "2",
        "--json",
    ]);
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let rest = db.json(&[
        "deployments",
        "list",
        "--limit",
        "2",
        "--cursor",
        cursor,
        "--json",
    ]);
    assert_eq!(rest["items"][0]["id"], ids[0].as_str());

    let latest = db.json(&[
        "deployments",
        "latest",
        "--app",
        "storefront",
        "--environment",
        "staging",
        "--json",
    ]);
    assert_eq!(latest["id"], ids[2].as_str());
    assert_eq!(latest["status"], "building");

    let table = db.ok(&["deployments", "list", "--environment", "staging"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains(&ids[2]) && lines[1].contains("building"),
        "{table}"
    );
    assert!(lines[1].contains("storefront") && lines[1].contains("ab03ab03ab03"));

    let none = db.run(&[
        "deployments",
        "latest",
        "--app",
        "checkout",
        "--environment",
        "staging",
    ]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no app"));
    let bad = db.run(&["deployments", "list", "--status", "bogus"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses it");
    let bad = db.run(&["deployments", "list", "--limit", "501"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_list_shows_the_ledger_without_bodies() {
    let db = TempDb::new();
    let conn = store::open(&db.url()).await.unwrap();
    for (provider, outcome) in [("github", "ignored"), ("vercel", "unmatched")] {
        let id = Uuid::now_v7();
        deliveries::ActiveModel {
            id: Set(id),
            provider: Set(provider.into()),
            delivery_id: Set(format!("{provider}-1")),
            event_type: Set("push".into()),
            body: Set(b"{\"secret-ish\":1}".to_vec()),
            received_at: Set(deploy_tracker::webhooks::now()),
            outcome: Set(outcome.into()),
            reason: Set("because".into()),
            deployment_id: Set(None),
            attempts: Set(1),
            last_received_at: Set(None),
            source: Set("webhook".into()),
        }
        .insert(&conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let page = db.json(&["deliveries", "list", "--provider", "vercel", "--json"]);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["outcome"], "unmatched");
    assert!(items[0].get("body").is_none());

    let table = db.ok(&["deliveries", "list", "--outcome", "ignored"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("github") && !table.contains("secret-ish"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_show_the_complete_record_as_json_and_duration_and_trigger_in_the_table() {
    let db = TempDb::new();
    db.ok(&[
        "apps",
        "add",
        "--name",
        "storefront",
        "--github-repo",
        "acme-apps/storefront",
        "--vercel-project-id",
        "prj_storefront0000000000000001",
    ]);
    let fixtures = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
    for name in [
        "github/push.production.json",
        "vercel/deployment.created.production.json",
        "vercel/deployment.succeeded.production.json",
    ] {
        db.ok(&["replay", &format!("{fixtures}/{name}")]);
    }
    let latest = db.json(&[
        "deployments",
        "latest",
        "--app",
        "storefront",
        "--environment",
        "production",
        "--json",
    ]);
    // Created 15:30:08.012, succeeded 15:31:33.420.
    assert_eq!(latest["buildDurationMs"], 85_408);
    assert_eq!(latest["triggeredBy"], "dana-okafor");
    assert_eq!(latest["finishedAt"], "2026-11-10T15:31:33.420000Z");
    assert_eq!(latest["isRollback"], false);
    assert_eq!(latest["failureReason"], Value::Null);
    let table = db.ok(&["deployments", "list", "--app", "storefront"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("DURATION") && header.contains("TRIGGERED BY"),
        "{table}"
    );
    let line = table.lines().nth(1).unwrap();
    assert!(
        line.contains("1m25s") && line.contains("dana-okafor"),
        "{table}"
    );
}
