//! Several ingest writers: the deliveries of one app may reach different writers'
//! queues (here: Vercel events without repository meta go by project id, pushes by
//! repository), and the table still comes out exact, with one ledger row each.

use std::collections::HashMap;

use deploy_tracker::deployments::ingest::Ingest;
use deploy_tracker::webhooks::{ContentType, Delivery, Provider, github, vercel};

use crate::db_test;
use crate::helpers::{Backend, Load, TestApp};

/// The Vercel body without `githubOrg`/`githubRepo`: the event then names only its
/// project, as a deployment made from the CLI does.
fn without_repository(body: &[u8]) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).unwrap();
    if let Some(meta) = json
        .pointer_mut("/payload/deployment/meta")
        .and_then(|meta| meta.as_object_mut())
    {
        meta.remove("githubOrg");
        meta.remove("githubRepo");
    }
    serde_json::to_vec(&json).unwrap()
}

db_test!(one_apps_deliveries_split_across_writers_leave_one_correct_row_each);
async fn one_apps_deliveries_split_across_writers_leave_one_correct_row_each(app: TestApp) {
    const FLOWS: usize = 80;
    let Load {
        apps,
        flows,
        deliveries,
        distinct,
    } = Load::new(4, FLOWS, "writers");
    let mut app_ids = Vec::new();
    for sim in &apps {
        app_ids.push(app.register(sim.registration()).await);
    }
    let ingest = Ingest::with_writers(app.db.clone(), Some(4));
    let postgres = app.backend == Backend::Postgres;
    assert_eq!(ingest.writers(), if postgres { 4 } else { 1 });

    let deliveries: Vec<Delivery> = deliveries
        .iter()
        .map(|sim| match sim.provider {
            Provider::Github => github::delivery(
                Some(sim.event),
                Some(&sim.delivery_id),
                ContentType::Json,
                sim.body.clone(),
            ),
            Provider::Vercel => vercel::delivery(ContentType::Json, without_repository(&sim.body)),
        })
        .collect();
    if postgres {
        // The point of the test: some app's push and Vercel events are in two queues.
        let mut writers_of_app: HashMap<String, Vec<usize>> = HashMap::new();
        for (delivery, sim) in deliveries.iter().zip(&apps_of(&deliveries, &flows, &apps)) {
            writers_of_app
                .entry(sim.clone())
                .or_default()
                .push(ingest.writer_of(delivery));
        }
        assert!(
            writers_of_app
                .values()
                .any(|w| w.iter().any(|x| *x != w[0])),
            "{writers_of_app:?}"
        );
    }

    let mut tasks = tokio::task::JoinSet::new();
    for delivery in deliveries {
        let ingest = ingest.clone();
        tasks.spawn(async move { ingest.ingest(&delivery).await });
    }
    for receipt in tasks.join_all().await {
        receipt.expect("ingest commits");
    }

    let rows = app.deployments().await;
    assert_eq!(rows.len(), FLOWS, "exactly one row per deployment");
    let by_dpl: HashMap<&str, _> = rows
        .iter()
        .map(|r| (r.vercel_deployment_id.as_deref().unwrap(), r))
        .collect();
    for flow in &flows {
        let row = by_dpl[flow.deployment_id.as_str()];
        assert_eq!(row.status.as_str(), flow.expected_status(), "{flow:?}");
        assert_eq!(row.environment.as_str(), flow.environment());
        assert_eq!(row.github_commit_sha.as_deref(), Some(flow.sha.as_str()));
        assert_eq!(row.app_id.to_string(), app_ids[flow.app]);
    }
    assert_eq!(app.delivery_count().await as usize, distinct);
}

/// Each delivery's app, by name: the app of the flow whose commit or deployment id
/// its body mentions.
fn apps_of(
    deliveries: &[Delivery],
    flows: &[deploy_tracker::simulate::Flow],
    apps: &[deploy_tracker::simulate::SimApp],
) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| {
            let body = String::from_utf8_lossy(&delivery.body);
            let flow = flows
                .iter()
                .find(|flow| body.contains(&flow.sha))
                .expect("every delivery mentions its flow's commit");
            apps[flow.app].name.clone()
        })
        .collect()
}
