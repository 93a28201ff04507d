//! On SQLite, ingest sends statements of the same few texts whatever its batches
//! hold, so that each connection prepares each text once: sqlx keeps prepared
//! statements by their text, and a text built from a batch's lists (`IN (?, ?, …)`,
//! a group per key) was new for nearly every batch, its preparing about half of what
//! ingest cost the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use deploy_tracker::deployments::ingest::Ingest;
use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::store::{deliveries, deployments};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, Statement, TransactionTrait,
};

use crate::helpers::{Backend, TestApp, delivery};

/// Rounds of flows of growing size over six apps, each flow's push, Vercel events
/// and GitHub statuses, a quarter of them sent twice, and rollbacks: every kind of
/// key a batch looks up, in lists of many lengths.
fn rounds(apps: &[SimApp]) -> Vec<Vec<SimDelivery>> {
    let mut first = 0;
    let mut rounds = Vec::new();
    for size in [1, 2, 3, 5, 8, 13, 21] {
        let flows: Vec<Flow> = (first..first + size)
            .map(|n| Flow::numbered(n, apps.len(), "stmt"))
            .collect();
        first += size;
        let mut round: Vec<SimDelivery> = flows
            .iter()
            .flat_map(|flow| {
                let app = &apps[flow.app];
                let [push, created, last] = flow.deliveries(app);
                let [building, ends] = flow.github_statuses(app);
                [push, created, building, last, ends]
            })
            .collect();
        let copies: Vec<SimDelivery> = round.iter().step_by(4).cloned().collect();
        round.extend(copies);
        round.extend(
            flows
                .iter()
                .filter(|flow| flow.production)
                .take(2)
                .map(|flow| flow.serve_again(&apps[flow.app], flow.started_ms + 500_000, false)),
        );
        rounds.push(round);
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ingest_sends_the_same_texts_whatever_its_batches_hold() {
    let app = TestApp::new(Backend::Sqlite).await;
    let apps: Vec<SimApp> = (0..6).map(SimApp::numbered).collect();
    for sim in &apps {
        app.register(sim.registration()).await;
    }
    // Every statement ingest sends, by text.
    let texts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut db = app.db.clone();
    let seen = texts.clone();
    db.set_metric_callback(move |info| {
        *seen
            .lock()
            .unwrap()
            .entry(info.statement.sql.clone())
            .or_default() += 1;
    });
    let ingest = Ingest::new(db);
    let mut sent = 0;
    for round in rounds(&apps) {
        // All at once, so that they queue up and share transactions.
        let mut tasks = tokio::task::JoinSet::new();
        for sim in &round {
            let (ingest, delivery) = (ingest.clone(), delivery(sim));
            tasks.spawn(async move { ingest.ingest(&delivery).await });
        }
        for receipt in tasks.join_all().await {
            receipt.expect("ingest commits");
        }
        sent += round.len();
    }
    let texts = std::mem::take(&mut *texts.lock().unwrap());
    let statements: usize = texts.values().sum();
    let report: Vec<String> = texts
        .iter()
        .map(|(sql, n)| {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let head: String = sql.chars().take(110).collect();
            format!("{n:5} × {head}… ({} chars)", sql.len())
        })
        .collect();
    let report = report.join("\n");
    eprintln!(
        "{sent} deliveries, {statements} statements, {} texts:\n{report}",
        texts.len()
    );
    // Batches of many shapes were read: fewer lookups than deliveries.
    let lookups: usize = texts
        .iter()
        .filter(|(sql, _)| sql.contains(r#""vercelDeploymentId""#) && sql.starts_with("SELECT"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        lookups > 1 && lookups < sent,
        "{lookups} lookups:\n{report}"
    );
    // One text per kind of statement: the apps, the rows, the copies, the rollback
    // rows, a promotion's serving row, the relinking, the copies' count, and the two
    // writes.
    assert!(texts.len() <= 9, "{} texts:\n{report}", texts.len());

    // The rows written as JSON hold what sea-orm's own inserts store, to the byte and
    // the type: written again through `insert_many`, they read back the same.
    let before = (
        quoted::<deployments::Entity>(&app).await,
        quoted::<deliveries::Entity>(&app).await,
    );
    assert!(before.0.len() > 50 && before.1.len() == distinct(&rounds(&apps)));
    let rows = deployments::Entity::find().all(&app.db).await.unwrap();
    let ledger = deliveries::Entity::find().all(&app.db).await.unwrap();
    let txn = app.db.begin().await.unwrap();
    deployments::Entity::delete_many().exec(&txn).await.unwrap();
    deliveries::Entity::delete_many().exec(&txn).await.unwrap();
    deployments::Entity::insert_many(rows.into_iter().map(deployments::ActiveModel::from))
        .exec_without_returning(&txn)
        .await
        .unwrap();
    for chunk in ledger.chunks(50) {
        deliveries::Entity::insert_many(chunk.iter().cloned().map(deliveries::ActiveModel::from))
            .exec_without_returning(&txn)
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    let after = (
        quoted::<deployments::Entity>(&app).await,
        quoted::<deliveries::Entity>(&app).await,
    );
    assert!(before == after, "the JSON writes differ from insert_many's");
}

/// How many different deliveries the rounds hold.
fn distinct(rounds: &[Vec<SimDelivery>]) -> usize {
    let ids: BTreeSet<&str> = rounds
        .iter()
        .flatten()
        .map(|sim| sim.delivery_id.as_str())
        .collect();
    ids.len()
}

/// Every row of `E`'s table, each value as SQLite's `quote` shows it (its type and
/// bytes), in id order.
async fn quoted<E: EntityTrait>(app: &TestApp) -> Vec<Vec<String>> {
    let columns: Vec<String> = E::Column::iter()
        .map(|c| format!(r#"quote("{}")"#, c.as_str()))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY id",
        columns.join(", "),
        E::default().table_name()
    );
    app.db
        .query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (0..columns.len())
                .map(|i| row.try_get_by_index::<String>(i).unwrap())
                .collect()
        })
        .collect()
}
