//! Fault tolerance of the real binary: two replicas on one Postgres under a shuffled,
//! duplicated load; `kill -9` of a replica in the middle of it; a database outage;
//! and of ingest, a writer's connection ended by the server.
//!
//! The CI sizes are small. The full sizes run with
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --test it faults -- --ignored --nocapture`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deploy_tracker::deployments::ingest::Ingest;
use deploy_tracker::store::{self, apps, deliveries, deployments};
use rand::Rng;
use rand::seq::IndexedRandom;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use uuid::Uuid;

use crate::helpers::{Backend, Load, delivery, postgres_url};
use crate::process::{PgCluster, ScratchDb, Server, post, register};

/// What the senders saw.
#[derive(Default)]
struct Seen {
    requests: usize,
    statuses: BTreeMap<u16, usize>,
    connection_errors: usize,
    /// Ledger row ids from 2xx receipts, with the replica that answered and when.
    receipts: Vec<(Uuid, String, Instant)>,
    /// Requests answered with an error status, and how long each took.
    slowest_refusal: Duration,
}

/// What the senders saw, once they are all done.
fn finished(seen: Arc<Mutex<Seen>>) -> Seen {
    Arc::try_unwrap(seen)
        .ok()
        .expect("every sender has finished")
        .into_inner()
        .unwrap()
}

/// Replicas a sender may pick from (host:port), like a load balancer's pool.
type Targets = Arc<RwLock<Vec<String>>>;

/// Sends every delivery until it is answered 2xx, as Vercel retries: each attempt to
/// a random live replica, from `senders` concurrent tasks.
async fn send_all(
    load: &Load,
    targets: Targets,
    senders: usize,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinSet<()> {
    let queue = Arc::new(Mutex::new(load.deliveries.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (queue, targets, seen, client) =
            (queue.clone(), targets.clone(), seen.clone(), client.clone());
        tasks.spawn(async move {
            loop {
                let Some(d) = queue.lock().unwrap().pop() else {
                    break;
                };
                loop {
                    let target = {
                        let targets = targets.read().unwrap();
                        targets.choose(&mut rand::rng()).cloned()
                    };
                    let Some(target) = target else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let started = Instant::now();
                    let answer = post(&client, &target, &d).await;
                    let answered = {
                        let mut seen = seen.lock().unwrap();
                        seen.requests += 1;
                        match answer {
                            Ok((status, receipt)) => {
                                *seen.statuses.entry(status).or_default() += 1;
                                if (200..300).contains(&status) {
                                    let id = receipt.expect("a 2xx answer carries a receipt");
                                    seen.receipts.push((id, target, Instant::now()));
                                    true
                                } else {
                                    seen.slowest_refusal =
                                        seen.slowest_refusal.max(started.elapsed());
                                    false
                                }
                            }
                            Err(_) => {
                                seen.connection_errors += 1;
                                false
                            }
                        }
                    };
                    if answered {
                        break;
                    }
                    let pause = rand::rng().random_range(5..30);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        });
    }
    tasks
}

/// The table and the ledger are exactly what the flows must leave: one row per flow
/// with its final values, and one ledger row per distinct delivery, pointing at it.
async fn assert_exact(url: &str, load: &Load) {
    let db = store::connect(url).await.unwrap();
    let app_ids: HashMap<String, Uuid> = apps::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.id))
        .collect();
    let rows = deployments::Entity::find().all(&db).await.unwrap();
    assert_eq!(
        rows.len(),
        load.flows.len(),
        "exactly one row per deployment"
    );
    let by_dpl: HashMap<&str, &deployments::Model> = rows
        .iter()
        .map(|r| (r.vercel_deployment_id.as_deref().unwrap(), r))
        .collect();
    assert_eq!(by_dpl.len(), load.flows.len(), "no deployment split in two");
    let mut row_of_delivery = HashMap::new();
    for flow in &load.flows {
        let row = by_dpl[flow.deployment_id.as_str()];
        let url = format!("https://{}", flow.url);
        assert_eq!(row.app_id, app_ids[&load.apps[flow.app].name], "{flow:?}");
        assert_eq!(row.status.as_str(), flow.expected_status(), "{flow:?}");
        assert_eq!(row.environment.as_str(), flow.environment(), "{flow:?}");
        assert_eq!(row.github_commit_sha.as_deref(), Some(flow.sha.as_str()));
        assert_eq!(
            row.deployment_url.as_deref(),
            (!flow.fails).then_some(url.as_str())
        );
        assert_eq!(
            row.error_message.as_deref(),
            flow.fails.then_some("error"),
            "{flow:?}"
        );
        assert_eq!(
            row.created_at.and_utc().timestamp(),
            flow.started_ms / 1000,
            "createdAt is the push time: {flow:?}"
        );
        for d in flow.deliveries(&load.apps[flow.app]) {
            row_of_delivery.insert(d.delivery_id, row.id);
        }
    }
    let ledger = deliveries::Entity::find().all(&db).await.unwrap();
    assert_eq!(ledger.len(), load.distinct, "one ledger row per delivery");
    for entry in &ledger {
        let Some(row) = row_of_delivery.get(&entry.delivery_id) else {
            panic!("unexpected ledger row {entry:?}");
        };
        assert_eq!(entry.deployment_id, Some(*row), "{entry:?}");
        assert!(
            ["applied", "duplicate", "stale"].contains(&entry.outcome.as_str()),
            "{entry:?}"
        );
    }
    db.close().await.unwrap();
}

async fn receipts_are_in_the_ledger(url: &str, receipts: &[Uuid]) {
    let db = store::connect(url).await.unwrap();
    let kept: HashSet<Uuid> = deliveries::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let lost: Vec<_> = receipts.iter().filter(|id| !kept.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "answered 2xx but not in the ledger: {lost:?}"
    );
    db.close().await.unwrap();
}

async fn two_replicas(apps: usize, flows: usize) {
    let Some(scratch) = ScratchDb::new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let env = [("DATABASE_URL", scratch.url.as_str())];
    let (a, b) = (Server::start(&env), Server::start(&env));
    let load = Load::new(apps, flows, "two");
    let client = reqwest::Client::new();
    for (i, app) in load.apps.iter().enumerate() {
        register(&client, if i % 2 == 0 { &a } else { &b }, app).await;
    }
    let targets: Targets = Arc::new(RwLock::new(vec![a.addr.clone(), b.addr.clone()]));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let tasks = send_all(&load, targets, 16, seen.clone()).await;
    tasks.join_all().await;
    let elapsed = started.elapsed();
    let seen = finished(seen);
    let by_replica = |addr: &str| seen.receipts.iter().filter(|r| r.1 == addr).count();
    eprintln!(
        "two replicas: {} deliveries ({} distinct) of {} flows in {elapsed:.1?}; statuses {:?}; {} and {} answered by each",
        load.deliveries.len(),
        load.distinct,
        load.flows.len(),
        seen.statuses,
        by_replica(&a.addr),
        by_replica(&b.addr),
    );
    assert_eq!(
        seen.requests,
        load.deliveries.len(),
        "every attempt was 2xx"
    );
    assert!(by_replica(&a.addr) > 0 && by_replica(&b.addr) > 0);
    assert_exact(&scratch.url, &load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_under_a_shuffled_duplicated_load_leave_the_exact_table() {
    two_replicas(20, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: 3,400 flows, 12,240 deliveries; run with --ignored"]
async fn two_replicas_full_size() {
    two_replicas(50, 3_400).await;
}

async fn kill_a_replica(apps: usize, flows: usize) {
    let Some(scratch) = ScratchDb::new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let env = [("DATABASE_URL", scratch.url.as_str())];
    let (mut a, b) = (Server::start(&env), Server::start(&env));
    let load = Load::new(apps, flows, "kill");
    let client = reqwest::Client::new();
    for app in &load.apps {
        register(&client, &b, app).await;
    }
    let targets: Targets = Arc::new(RwLock::new(vec![a.addr.clone(), b.addr.clone()]));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let tasks = send_all(&load, targets.clone(), 16, seen.clone()).await;
    // In the middle of the load, kill -9 one replica: no graceful anything.
    while seen.lock().unwrap().receipts.len() < load.deliveries.len() / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.kill();
    let killed_at = Instant::now();
    let answered_by_killed: Vec<Uuid> = seen
        .lock()
        .unwrap()
        .receipts
        .iter()
        .filter(|(_, addr, at)| *addr == a.addr && *at <= killed_at)
        .map(|(id, _, _)| *id)
        .collect();
    targets.write().unwrap().retain(|t| *t != a.addr);
    // The killed replica comes back (on a new port) and takes traffic again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = Server::start(&env);
    targets.write().unwrap().push(restarted.addr.clone());
    tasks.join_all().await;
    let elapsed = started.elapsed();
    {
        let seen = seen.lock().unwrap();
        eprintln!(
            "kill -9: {} deliveries ({} distinct) of {} flows in {elapsed:.1?}; {} requests, statuses {:?}, {} connection errors; {} answered 2xx by the killed replica",
            load.deliveries.len(),
            load.distinct,
            load.flows.len(),
            seen.requests,
            seen.statuses,
            seen.connection_errors,
            answered_by_killed.len(),
        );
        assert!(
            seen.statuses
                .keys()
                .all(|s| (200..300).contains(s) || *s == 503),
            "{:?}",
            seen.statuses
        );
    }
    assert!(!answered_by_killed.is_empty());
    receipts_are_in_the_ledger(&scratch.url, &answered_by_killed).await;
    assert_exact(&scratch.url, &load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_replica_mid_load_loses_nothing_answered_and_leaves_the_exact_table() {
    kill_a_replica(20, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full size: 3,400 flows, 12,240 deliveries; run with --ignored"]
async fn kill_9_of_a_replica_full_size() {
    kill_a_replica(50, 3_400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_fast_503s_and_the_service_recovers_without_a_restart() {
    if postgres_url().is_none() {
        eprintln!("TEST_DATABASE_URL is not set; skipped (the outage needs Postgres tools)");
        return;
    }
    let Some(cluster) = PgCluster::start() else {
        eprintln!("Postgres binaries not installed; skipped");
        return;
    };
    let url = cluster.url();
    let server = Server::start(&[
        ("DATABASE_URL", url.as_str()),
        // Well above the pool's ACQUIRE_TIMEOUT: a refusal must come from the pool
        // giving up, quickly, not from the request timing out.
        ("REQUEST_TIMEOUT_MS", "4000"),
    ]);
    let load = Load::new(10, 150, "outage");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for app in &load.apps {
        register(&client, &server, app).await;
    }
    let ready = |client: reqwest::Client, url: String| async move {
        let started = Instant::now();
        let status = client.get(url).send().await.unwrap().status().as_u16();
        (status, started.elapsed())
    };
    let readyz = server.url("/readyz");
    assert_eq!(ready(client.clone(), readyz.clone()).await.0, 200);

    let targets: Targets = Arc::new(RwLock::new(vec![server.addr.clone()]));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks = send_all(&load, targets, 8, seen.clone()).await;
    while seen.lock().unwrap().receipts.len() < load.deliveries.len() / 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cluster.stop();
    let stopped_at = Instant::now();
    let answered_before = seen.lock().unwrap().receipts.len();
    // Give in-flight requests their timeout, then watch the outage for three seconds.
    tokio::time::sleep(store::ACQUIRE_TIMEOUT + Duration::from_millis(300)).await;
    let outage_from = seen.lock().unwrap().requests;
    let receipts_from = seen.lock().unwrap().receipts.len();
    let (status, took) = ready(client.clone(), readyz.clone()).await;
    assert_eq!(status, 503, "/readyz while the database is down");
    assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (refused, accepted_during) = {
        let seen = seen.lock().unwrap();
        (
            seen.requests - outage_from,
            seen.receipts.len() - receipts_from,
        )
    };
    assert!(refused >= 8, "senders kept trying: {refused}");
    assert_eq!(
        accepted_during, 0,
        "nothing answered 2xx while the database is down"
    );

    cluster.start_again();
    let restarted_at = Instant::now();
    loop {
        if ready(client.clone(), readyz.clone()).await.0 == 200 {
            break;
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(30),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = restarted_at.elapsed();
    tasks.join_all().await;
    let seen = finished(seen);
    eprintln!(
        "outage: {} deliveries of {} flows; {answered_before} answered before the stop, which lasted {:?} in all; {refused} refused during 3 s of outage; ready {recovered_in:?} after restart; statuses {:?}; slowest refusal {:?}",
        load.deliveries.len(),
        load.flows.len(),
        restarted_at - stopped_at,
        seen.statuses,
        seen.slowest_refusal,
    );
    assert!(
        seen.statuses
            .keys()
            .all(|s| (200..300).contains(s) || *s == 503),
        "refusals are 503, never 500: {:?}",
        seen.statuses
    );
    assert!(
        seen.slowest_refusal < store::ACQUIRE_TIMEOUT + Duration::from_millis(700),
        "a refusal took {:?}",
        seen.slowest_refusal
    );
    let receipts: Vec<Uuid> = seen.receipts.iter().map(|r| r.0).collect();
    receipts_are_in_the_ledger(&url, &receipts).await;
    assert_exact(&url, &load).await;
    drop(server);
    drop(cluster);
}

/// A writer keeps its connection from one batch to the next and does not ping one
/// used less than a second ago. When the server ends that connection meanwhile (a
/// restart, a failover, an administrator), the next batch still goes through: it is
/// done again on a connection that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_connection_ended_by_the_server_costs_no_delivery() {
    let Some(scratch) = ScratchDb::new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let db = store::open(&scratch.url).await.unwrap();
    let ingest = Ingest::open(db.clone(), &scratch.url, Some(1))
        .await
        .unwrap();
    let load = Load::new(2, 3, "kept");
    let deliveries: Vec<_> = load.deliveries.iter().map(delivery).collect();
    ingest.ingest(&deliveries[0]).await.unwrap();

    let admin = sea_orm::Database::connect(&scratch.url).await.unwrap();
    let ended = admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert!(ended >= 1, "the writer's connection was among those ended");

    for delivery in &deliveries[1..] {
        let receipt = ingest.ingest(delivery).await;
        assert!(receipt.is_ok(), "{receipt:?}");
    }
    let recorded = deliveries::Entity::find().all(&admin).await.unwrap();
    assert_eq!(recorded.len(), load.distinct);
    admin.close().await.unwrap();
}
