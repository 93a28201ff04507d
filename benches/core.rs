//! Micro-benchmarks of the CPU work in a delivery's path: signature verification,
//! payload parsing and mapping for every fixture, the state machine, and a batch's
//! events applied in memory.
//!
//! `cargo bench --bench core` (add `-- <filter>` for one group).

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deploy_tracker::deployments::plan::Snapshot;
use deploy_tracker::deployments::state::{Status, transition};
use deploy_tracker::simulate::{Flow, SimApp};
use deploy_tracker::store::apps;
use deploy_tracker::webhooks::signature::{
    Secrets, sign_github, sign_vercel, verify_github, verify_vercel,
};
use deploy_tracker::webhooks::{ContentType, Event, Provider, github, vercel};

const SECRET: &str = "bench-secret";

fn signatures(c: &mut Criterion) {
    let secrets = Secrets::parse(SECRET).unwrap();
    let mut group = c.benchmark_group("verify");
    for (label, size) in [("1KB", 1024), ("25KB", 25 * 1024), ("1MB", 1024 * 1024)] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let github_header = sign_github(SECRET.as_bytes(), &body);
        let vercel_header = sign_vercel(SECRET.as_bytes(), &body);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("github-sha256", label),
            &body,
            |b, body| {
                b.iter(|| verify_github(&secrets, Some(github_header.as_bytes()), black_box(body)))
            },
        );
        group.bench_with_input(BenchmarkId::new("vercel-sha1", label), &body, |b, body| {
            b.iter(|| verify_vercel(&secrets, Some(vercel_header.as_bytes()), black_box(body)))
        });
    }
    group.finish();
}

/// Every fixture, as the handler sees it: raw bytes in, a typed event out.
fn mapping(c: &mut Criterion) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut group = c.benchmark_group("map");
    for provider in ["github", "vercel"] {
        let mut files: Vec<_> = std::fs::read_dir(fixtures.join(provider))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let body = std::fs::read(&path).unwrap();
            let content_type = ContentType::sniff(&body);
            let id = BenchmarkId::new(provider, &name);
            if provider == "github" {
                let event = name.split('.').next().unwrap().to_owned();
                group.bench_function(id, |b| {
                    b.iter(|| {
                        github::delivery(
                            Some(&event),
                            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                            content_type,
                            black_box(body.clone()),
                        )
                    })
                });
            } else {
                group.bench_function(id, |b| {
                    b.iter(|| vercel::delivery(content_type, black_box(body.clone())))
                });
            }
        }
    }
    group.finish();
}

fn state_machine(c: &mut Criterion) {
    c.bench_function("transition/all-16-pairs", |b| {
        b.iter(|| {
            for current in Status::ALL {
                for next in Status::ALL {
                    black_box(transition(black_box(current), black_box(next)));
                }
            }
        })
    });
}

/// A batch as ingest applies it in memory: 64 deliveries of 32 flows' pushes and
/// `deployment.created` (a new row each, then linked and moved on) over 100 apps.
fn batch_plan(c: &mut Criterion) {
    let now = chrono::Utc::now().naive_utc();
    let sims: Vec<SimApp> = (0..100).map(SimApp::numbered).collect();
    let apps: Vec<apps::Model> = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| apps::Model {
            id: uuid::Uuid::from_u128(i as u128 + 1),
            name: sim.name.clone(),
            github_repo: sim.github_repo.clone(),
            vercel_project_id: Some(sim.vercel_project_id.clone()),
            staging_branch: "staging".to_owned(),
            production_branch: "main".to_owned(),
            created_at: now,
            updated_at: now,
        })
        .collect();
    let events: Vec<Event> = (0..32)
        .flat_map(|n| {
            let flow = Flow::numbered(n, sims.len(), "bench");
            let [push, created, _] = flow.deliveries(&sims[flow.app]);
            [push, created]
        })
        .map(|sim| match sim.provider {
            Provider::Github => github::delivery(
                Some(sim.event),
                Some(&sim.delivery_id),
                ContentType::Json,
                sim.body,
            ),
            Provider::Vercel => vercel::delivery(ContentType::Json, sim.body),
        })
        .map(|delivery| delivery.event)
        .collect();
    c.bench_function("plan/batch-of-64", |b| {
        b.iter(|| {
            let mut snapshot = Snapshot::new(apps.clone());
            black_box(snapshot.row_keys(&events));
            for event in &events {
                black_box(snapshot.apply(event, now));
            }
            snapshot.touched().count()
        })
    });
}

criterion_group!(benches, signatures, mapping, state_machine, batch_plan);
criterion_main!(benches);
