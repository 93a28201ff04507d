//! Many deliveries at once, shuffled and duplicated, from several senders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use deploy_tracker::simulate::SimDelivery;
use tower::ServiceExt;

use crate::db_test;
use crate::helpers::{GITHUB_SECRET, Load, TestApp, VERCEL_SECRET};

fn signed(delivery: &SimDelivery) -> Request<Body> {
    let secret = match delivery.provider {
        deploy_tracker::webhooks::Provider::Github => GITHUB_SECRET,
        deploy_tracker::webhooks::Provider::Vercel => VERCEL_SECRET,
    };
    let (name, value) = delivery.signature(secret.as_bytes());
    Request::post(delivery.path())
        .header("content-type", "application/json")
        .header("x-github-event", delivery.event)
        .header("x-github-delivery", delivery.delivery_id.as_str())
        .header(name, value)
        .body(Body::from(delivery.body.clone()))
        .unwrap()
}

db_test!(shuffled_duplicated_concurrent_deliveries_leave_one_correct_row_per_deployment);
async fn shuffled_duplicated_concurrent_deliveries_leave_one_correct_row_per_deployment(
    app: TestApp,
) {
    const APPS: usize = 5;
    const FLOWS: usize = 70;
    const SENDERS: usize = 8;
    let Load {
        apps,
        flows,
        deliveries,
        distinct,
    } = Load::new(APPS, FLOWS, "conc");
    let mut app_ids = Vec::new();
    for sim in &apps {
        app_ids.push(app.register(sim.registration()).await);
    }
    assert!(deliveries.len() >= 250, "{}", deliveries.len());
    let bodies: HashMap<(&'static str, String), Vec<u8>> = deliveries
        .iter()
        .map(|d| ((d.provider.as_str(), d.delivery_id.clone()), d.body.clone()))
        .collect();

    let queue = Arc::new(Mutex::new(deliveries));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let queue = queue.clone();
        let router = app.router.clone();
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(delivery) = next else { break };
                let response = router.clone().oneshot(signed(&delivery)).await.unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for sender in senders {
        for status in sender.await.unwrap() {
            *statuses.entry(status).or_default() += 1;
        }
    }
    // Stale answers (202) are expected when a success overtakes its build event.
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 202),
        "{statuses:?}"
    );

    let rows = app.deployments().await;
    assert_eq!(rows.len(), FLOWS, "exactly one row per deployment");
    let by_dpl: HashMap<&str, _> = rows
        .iter()
        .map(|r| (r.vercel_deployment_id.as_deref().unwrap(), r))
        .collect();
    assert_eq!(by_dpl.len(), FLOWS);
    for flow in &flows {
        let row = by_dpl[flow.deployment_id.as_str()];
        assert_eq!(row.status.as_str(), flow.expected_status(), "{flow:?}");
        assert_eq!(row.environment.as_str(), flow.environment());
        assert_eq!(row.github_commit_sha.as_deref(), Some(flow.sha.as_str()));
        assert_eq!(row.app_id.to_string(), app_ids[flow.app]);
        let url = format!("https://{}", flow.url);
        assert_eq!(
            row.deployment_url.as_deref(),
            (!flow.fails).then_some(url.as_str())
        );
    }
    assert_eq!(
        app.delivery_count().await as usize,
        distinct,
        "one ledger row per delivery"
    );
    // Deliveries that shared a transaction each kept their own body.
    for row in app.deliveries().await {
        let provider = if row.provider == "github" {
            "github"
        } else {
            "vercel"
        };
        assert_eq!(
            Some(&row.body),
            bodies.get(&(provider, row.delivery_id.clone())),
            "the body of {} {}",
            row.provider,
            row.delivery_id
        );
    }
}
