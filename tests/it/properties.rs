//! Property: whatever the arrival order and however many duplicates, and whether they
//! come one after another or all at once (sharing transactions), the deliveries of a
//! set of deployment flows leave the same table as their in-order delivery.
//!
//! A flow is a push, Vercel's events and the GitHub deployment statuses Vercel's
//! GitHub app posts for the same deploy; a scenario adds rollbacks and promotions.
//! Each flow has at most one final outcome (Vercel's and GitHub's agree). A deployment
//! that gets two different final statuses is a known order-dependent case: the first
//! final state wins, by design. Flows also have distinct commits: two Vercel
//! deployments of one commit (a redeploy) are the other known case, as the push's row
//! is linked to whichever arrives first and so takes the push's "createdAt" (checked
//! by hand, not fixed). A promotion is judged against the production rows recorded
//! when it arrives (a third known case, see the README), so promotions here are of
//! an app's only production deployment, which make no rollback in any order. Two
//! ready rows of one app and environment with the same "createdAt" are ordered by
//! their row ids, which follow arrival (the fourth): such cases are rejected.

use std::collections::{BTreeSet, HashMap};

use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::helpers::{Backend, Row, TestApp, delivery};

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
    /// GitHub's `in_progress` status, and its final one (failure when `ends` is an error).
    github_building: bool,
    github_ends: bool,
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
        let [building, ends] = flow.github_statuses(&apps[flow.app]);
        [
            self.push.then_some(push),
            self.created.then_some(created),
            self.ends.map(|_| last),
            self.github_building.then_some(building),
            self.github_ends.then_some(ends),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn sends_something(&self) -> bool {
        self.push || self.created || self.ends.is_some() || self.github_building || self.github_ends
    }
}

/// A rollback (or promotion) of production back to flow `flow`'s deployment.
#[derive(Debug, Clone)]
struct ServeSpec {
    flow: usize,
    promoted: bool,
}

/// The rollbacks and promotions of a scenario that apply: to production flows, and a
/// promotion only of its app's only production flow (else it is sent as a rollback).
fn serve_deliveries(specs: &[FlowSpec], serves: &[ServeSpec], apps: &[SimApp]) -> Vec<SimDelivery> {
    serves
        .iter()
        .enumerate()
        .filter(|(_, serve)| specs[serve.flow % specs.len()].production)
        .map(|(k, serve)| {
            let n = serve.flow % specs.len();
            let spec = &specs[n];
            let only = specs
                .iter()
                .filter(|s| s.production && s.app == spec.app)
                .count()
                == 1;
            let at = 1_795_001_000_000 + k as i64 * 1_000;
            spec.flow(n)
                .serve_again(&apps[spec.app], at, serve.promoted && only)
        })
        .collect()
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        0..APPS,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(app, production, push, created, ends, github_building, github_ends)| FlowSpec {
                app,
                production,
                push,
                created,
                ends,
                github_building,
                github_ends,
            },
        )
        .prop_filter("a flow sends something", FlowSpec::sends_something)
}

fn serve_spec() -> impl Strategy<Value = ServeSpec> {
    (0..6usize, any::<bool>()).prop_map(|(flow, promoted)| ServeSpec { flow, promoted })
}

/// Flows, rollbacks, and the order to send their deliveries in: every delivery at
/// least once, some of them again, all shuffled.
type Scenario = (Vec<FlowSpec>, Vec<ServeSpec>, Vec<usize>);

fn scenario() -> impl Strategy<Value = Scenario> {
    (vec(flow_spec(), 1..=6), vec(serve_spec(), 0..=2)).prop_flat_map(|(specs, serves)| {
        let apps = sim_apps();
        let n = all_deliveries(&specs, &serves, &apps).len();
        let order = vec(0..n, 0..=n).prop_flat_map(move |again| {
            let mut order: Vec<usize> = (0..n).collect();
            order.extend(again);
            Just(order).prop_shuffle()
        });
        (Just(specs), Just(serves), order)
    })
}

fn all_deliveries(specs: &[FlowSpec], serves: &[ServeSpec], apps: &[SimApp]) -> Vec<SimDelivery> {
    let mut all: Vec<SimDelivery> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.deliveries(i, apps))
        .collect();
    all.extend(serve_deliveries(specs, serves, apps));
    all
}

fn sim_apps() -> Vec<SimApp> {
    (0..APPS).map(SimApp::numbered).collect()
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
        .run(&scenario(), |(specs, serves, order)| {
            let all = all_deliveries(&specs, &serves, &apps);
            let in_order: Vec<&SimDelivery> = all.iter().collect();
            let shuffled: Vec<&SimDelivery> = order.iter().map(|&i| &all[i]).collect();
            let (expected, expected_ledger) =
                runtime.block_on(run(backend, &in_order, Sending::InTurn));
            // Two ready rows of one app and environment created in the same instant
            // follow each other in the order of their row ids, which follows arrival:
            // a case that depends on arrival order by nature (see the README).
            let ready: Vec<_> = expected
                .iter()
                .filter(|(_, row)| row.status == "ready")
                .map(|(app, row)| (app, &row.environment, row.created_at))
                .collect();
            if ready.iter().collect::<BTreeSet<_>>().len() < ready.len() {
                return Err(TestCaseError::reject(
                    "two ready rows of a pair created in the same instant",
                ));
            }
            for sending in [Sending::InTurn, Sending::Together] {
                let (actual, actual_ledger) = runtime.block_on(run(backend, &shuffled, sending));
                prop_assert_eq!(&actual, &expected, "{:?}", sending);
                prop_assert_eq!(&actual_ledger, &expected_ledger, "{:?}", sending);
            }
            let rollbacks = all
                .iter()
                .filter(|d| d.event == "deployment.rollback")
                .count();
            let rows = specs.iter().filter(|s| s.sends_something()).count() + rollbacks;
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
