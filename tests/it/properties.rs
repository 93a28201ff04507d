//! Property: whatever the arrival order and however many duplicates, and whether they
//! come one after another or all at once (sharing transactions), the deliveries of a
//! set of deployment flows leave the same table as their in-order delivery.
//!
//! Each flow has at most one final event (succeeded or error). A deployment that gets
//! both is a known order-dependent case: the first final state wins, by design.
//! Flows also have distinct commits: two Vercel deployments of one commit (a
//! redeploy) are the other known case, as the push's row is linked to whichever
//! arrives first and so takes the push's "createdAt" (checked by hand, not fixed).

use std::collections::{BTreeSet, HashMap};

use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::webhooks::{ContentType, Delivery, Provider, github, vercel};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::helpers::{Backend, Row, TestApp};

const APPS: usize = 2;
/// Cases per backend; each uses three fresh databases. Raise with PROPTEST_CASES.
const CASES: u32 = 24;

/// Which of a flow's deliveries are sent at all, and how it ends.
#[derive(Debug, Clone)]
struct FlowSpec {
    app: usize,
    production: bool,
    push: bool,
    created: bool,
    /// `Some(true)`: deployment.error; `Some(false)`: deployment.succeeded.
    ends: Option<bool>,
}

impl FlowSpec {
    fn flow(&self, n: usize) -> Flow {
        let mut flow = Flow::numbered(n, APPS, "prop");
        flow.app = self.app;
        flow.production = self.production;
        flow.fails = self.ends == Some(true);
        flow
    }

    fn deliveries(&self, n: usize, apps: &[SimApp]) -> Vec<SimDelivery> {
        let flow = self.flow(n);
        let [push, created, last] = flow.deliveries(&apps[flow.app]);
        [
            self.push.then_some(push),
            self.created.then_some(created),
            self.ends.map(|_| last),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        0..APPS,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(app, production, push, created, ends)| FlowSpec {
            app,
            production,
            push,
            created,
            ends,
        })
        .prop_filter("a flow sends something", |s| {
            s.push || s.created || s.ends.is_some()
        })
}

/// Flows, and the order to send their deliveries in: every delivery at least once,
/// some of them again, all shuffled.
fn scenario() -> impl Strategy<Value = (Vec<FlowSpec>, Vec<usize>)> {
    vec(flow_spec(), 1..=6).prop_flat_map(|specs| {
        let apps = sim_apps();
        let n = specs
            .iter()
            .enumerate()
            .map(|(i, s)| s.deliveries(i, &apps).len())
            .sum::<usize>();
        let order = vec(0..n, 0..=n).prop_flat_map(move |again| {
            let mut order: Vec<usize> = (0..n).collect();
            order.extend(again);
            Just(order).prop_shuffle()
        });
        (Just(specs), order)
    })
}

fn sim_apps() -> Vec<SimApp> {
    (0..APPS).map(SimApp::numbered).collect()
}

/// The delivery the HTTP edge would build from these bytes.
fn delivery(sim: &SimDelivery) -> Delivery {
    match sim.provider {
        Provider::Github => github::delivery(
            Some(sim.event),
            Some(&sim.delivery_id),
            ContentType::Json,
            sim.body.clone(),
        ),
        Provider::Vercel => vercel::delivery(ContentType::Json, sim.body.clone()),
    }
}

/// How a run hands its deliveries to ingest.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sending {
    /// One after another: a transaction each.
    InTurn,
    /// All at once, so that they queue up and share transactions, copies included.
    Together,
}

/// Applies `deliveries` to a fresh database; returns its table (apps by name, not id)
/// and the ledger's delivery ids.
async fn run(
    backend: Backend,
    deliveries: &[&SimDelivery],
    sending: Sending,
) -> (Vec<(String, Row)>, BTreeSet<(&'static str, String)>) {
    let app = TestApp::new(backend).await;
    let mut names = HashMap::new();
    for sim in sim_apps() {
        let id = app.register(sim.registration()).await;
        names.insert(id, sim.name);
    }
    match sending {
        Sending::InTurn => {
            for sim in deliveries {
                app.state
                    .ingest
                    .ingest(&delivery(sim))
                    .await
                    .expect("ingest commits");
            }
        }
        Sending::Together => {
            let mut tasks = tokio::task::JoinSet::new();
            for sim in deliveries {
                let (ingest, delivery) = (app.state.ingest.clone(), delivery(sim));
                tasks.spawn(async move { ingest.ingest(&delivery).await });
            }
            for receipt in tasks.join_all().await {
                receipt.expect("ingest commits");
            }
        }
    }
    let mut table: Vec<(String, Row)> = app
        .table()
        .await
        .into_iter()
        .map(|row| (names[&row.app_id.to_string()].clone(), row))
        .map(|(name, mut row)| {
            row.app_id = uuid::Uuid::nil();
            (name, row)
        })
        .collect();
    table.sort();
    let ledger = app
        .deliveries()
        .await
        .into_iter()
        .map(|d| {
            let provider = if d.provider == "github" {
                "github"
            } else {
                "vercel"
            };
            (provider, d.delivery_id)
        })
        .collect::<Vec<_>>();
    let distinct: BTreeSet<_> = ledger.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        ledger.len(),
        "one ledger row per delivery id"
    );
    (table, distinct)
}

fn any_order_and_duplicates_give_the_in_order_table(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let apps = sim_apps();
    runner
        .run(&scenario(), |(specs, order)| {
            let all: Vec<SimDelivery> = specs
                .iter()
                .enumerate()
                .flat_map(|(i, s)| s.deliveries(i, &apps))
                .collect();
            let in_order: Vec<&SimDelivery> = all.iter().collect();
            let shuffled: Vec<&SimDelivery> = order.iter().map(|&i| &all[i]).collect();
            let (expected, expected_ledger) =
                runtime.block_on(run(backend, &in_order, Sending::InTurn));
            for sending in [Sending::InTurn, Sending::Together] {
                let (actual, actual_ledger) = runtime.block_on(run(backend, &shuffled, sending));
                prop_assert_eq!(&actual, &expected, "{:?}", sending);
                prop_assert_eq!(&actual_ledger, &expected_ledger, "{:?}", sending);
            }
            let rows = specs
                .iter()
                .filter(|s| s.push || s.created || s.ends.is_some())
                .count();
            if expected.len() != rows {
                return Err(TestCaseError::fail(format!(
                    "{} rows for {rows} flows",
                    expected.len()
                )));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_order_and_duplicates_give_the_in_order_table_on_sqlite() {
    any_order_and_duplicates_give_the_in_order_table(Backend::Sqlite);
}

#[test]
fn any_order_and_duplicates_give_the_in_order_table_on_postgres() {
    if crate::helpers::postgres_url().is_none() {
        eprintln!("TEST_DATABASE_URL is not set; skipped on Postgres");
        return;
    }
    any_order_and_duplicates_give_the_in_order_table(Backend::Postgres);
}
