//! Load driver: registers apps through the API, sends signed synthetic deployment
//! flows (push, Vercel created, succeeded or error) to a running server at a fixed
//! concurrency, then checks through the API that every flow left its one right row.
//!
//! ```sh
//! GITHUB_WEBHOOK_SECRET=… VERCEL_WEBHOOK_SECRET=… API_TOKEN=… \
//!   cargo run --release --example load -- --url http://127.0.0.1:8080 \
//!   --apps 100 --flows 10000 --concurrency 32 --pid <server pid>
//! ```
//!
//! Output is `key=value` lines (`load …`, `latest …`, `verify=OK` or the differences),
//! so `bench/run.sh` can read them. Exits 1 when verification fails.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::webhooks::Provider;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// The running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Apps to register (sim-app-0000 …); re-registering an existing one is fine.
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// Deployment flows to send, three deliveries each.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Connections sending at once.
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// Share of deliveries (0 to 1) sent a second time, later in the same stream.
    #[arg(long, default_value_t = 0.0)]
    dup_share: f64,
    /// Send everything in random order (flows' events no longer in order).
    #[arg(long)]
    shuffle: bool,
    /// The server's process id, to report its peak RSS (VmHWM).
    #[arg(long)]
    pid: Option<u32>,
    /// `GET …/deployments/latest` requests to time after the load (0 to skip).
    #[arg(long, default_value_t = 2_000)]
    latest_requests: usize,
    /// Skip checking the rows afterwards.
    #[arg(long)]
    no_verify: bool,
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    github_secret: String,
    #[arg(long, env = "VERCEL_WEBHOOK_SECRET", hide_env_values = true)]
    vercel_secret: String,
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    api_token: String,
}

/// A delivery signed and ready to send; `flow` indexes the flows.
struct Prepared {
    flow: usize,
    url: String,
    headers: HeaderMap,
    body: bytes::Bytes,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, usize>,
    transport_errors: usize,
    /// Flows with a delivery not answered 2xx: their final row is not checked.
    incomplete: Vec<usize>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .tcp_nodelay(true)
        .build()?;
    let api = Api {
        client: client.clone(),
        base: args.url.trim_end_matches('/').to_owned(),
        token: format!("Bearer {}", args.api_token),
    };

    let sims: Vec<SimApp> = (0..args.apps).map(SimApp::numbered).collect();
    let app_ids = api.register(&sims).await?;

    // A run id keeps deployment ids, delivery ids and commit SHAs apart between runs
    // against the same database.
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let run = format!("{:x}", nonce & 0xffff_ffff_ffff);
    let flows: Vec<Flow> = (0..args.flows)
        .map(|n| {
            let mut flow = Flow::numbered(n, args.apps, &run);
            flow.sha = format!("{nonce:016x}{n:024x}");
            flow
        })
        .collect();

    let streams = streams(&args, &flows, &sims)?;
    let sent: usize = streams.iter().map(Vec::len).sum();

    let cpu_before = CpuTicks::read(args.pid);
    let started = Instant::now();
    let mut workers = Vec::new();
    for stream in streams {
        let client = client.clone();
        workers.push(tokio::spawn(async move { send(client, stream).await }));
    }
    let mut tally = Tally::default();
    for worker in workers {
        let part = worker.await?;
        tally.latencies_us.extend(part.latencies_us);
        for (status, n) in part.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
        tally.transport_errors += part.transport_errors;
        tally.incomplete.extend(part.incomplete);
    }
    let elapsed = started.elapsed();
    let cpu = CpuTicks::read(args.pid).since(&cpu_before);
    let peak = args.pid.and_then(peak_rss_kb);

    let statuses = tally
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let errors = tally.transport_errors
        + tally
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum::<usize>();
    let (p50, p99, max) = percentiles(&mut tally.latencies_us);
    println!(
        "load deliveries={sent} concurrency={} shuffle={} dup_share={} seconds={:.3} rate={:.0} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.2} statuses={statuses} errors={errors} peak_rss_mb={}",
        args.concurrency,
        args.shuffle,
        args.dup_share,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        peak.map_or("?".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
    );
    // Where the machine's CPU time went while the deliveries were sent, per delivery.
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let per_delivery = |ticks: u64| ticks as f64 * 1e6 / USER_HZ / sent as f64;
    let busy = (cpu.server + cpu.postgres + cpu.driver) as f64 / USER_HZ;
    println!(
        "cpu server_us={:.0} postgres_us={:.0} driver_us={:.0} busy_pct={:.0}",
        per_delivery(cpu.server),
        per_delivery(cpu.postgres),
        per_delivery(cpu.driver),
        100.0 * busy / (elapsed.as_secs_f64() * cores),
    );

    if args.latest_requests > 0 {
        let mut latencies = Vec::with_capacity(args.latest_requests);
        let mut not_ok = 0;
        for i in 0..args.latest_requests {
            let id = &app_ids[&sims[i % sims.len()].name];
            let url = format!(
                "{}/api/apps/{id}/deployments/latest?environment=staging",
                api.base
            );
            let t = Instant::now();
            let response = api.get(&url).await?;
            let ok = response.status().is_success();
            response.bytes().await?;
            latencies.push(t.elapsed().as_micros() as u32);
            not_ok += usize::from(!ok);
        }
        let (p50, p99, max) = percentiles(&mut latencies);
        println!(
            "latest requests={} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.2} not_ok={not_ok}",
            args.latest_requests
        );
    }

    if args.no_verify {
        return Ok(());
    }
    let differences = verify(&api, &sims, &app_ids, &flows, &tally.incomplete).await?;
    if differences.is_empty() {
        println!(
            "verify=OK flows={} checked={}",
            flows.len(),
            flows.len() - tally.incomplete.len()
        );
        Ok(())
    } else {
        println!("verify=FAILED differences={}", differences.len());
        for d in differences.iter().take(20) {
            println!("  {d}");
        }
        std::process::exit(1);
    }
}

/// One stream of requests per connection. In order, each connection owns a set of
/// flows and interleaves them four at a time (four pushes, four created, four
/// final), so each flow's events arrive in order while flows overlap everywhere.
fn streams(args: &Args, flows: &[Flow], sims: &[SimApp]) -> Result<Vec<Vec<Prepared>>, Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(flows.len() as u64);
    let base = args.url.trim_end_matches('/');
    let prepare = |flow: usize, d: &SimDelivery| -> Result<Prepared, Error> {
        let secret = match d.provider {
            Provider::Github => &args.github_secret,
            Provider::Vercel => &args.vercel_secret,
        };
        let (name, value) = d.signature(secret.as_bytes());
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value)?,
        );
        if d.provider == Provider::Github {
            headers.insert("x-github-event", HeaderValue::from_static(d.event));
            headers.insert("x-github-delivery", HeaderValue::from_str(&d.delivery_id)?);
        }
        Ok(Prepared {
            flow,
            url: format!("{base}{}", d.path()),
            headers,
            body: bytes::Bytes::from(d.body.clone()),
        })
    };
    let c = args.concurrency.max(1);
    let mut streams: Vec<Vec<Prepared>> = (0..c).map(|_| Vec::new()).collect();
    for (w, stream) in streams.iter_mut().enumerate() {
        let mine: Vec<usize> = (w..flows.len()).step_by(c).collect();
        for group in mine.chunks(4) {
            let sent: Vec<[SimDelivery; 3]> = group
                .iter()
                .map(|&n| flows[n].deliveries(&sims[flows[n].app]))
                .collect();
            for step in 0..3 {
                for (&n, deliveries) in group.iter().zip(&sent) {
                    stream.push(prepare(n, &deliveries[step])?);
                }
            }
        }
    }
    // Resends go to a random later place in the same stream, so they are true
    // duplicates (the original was answered first) in order mode.
    if args.dup_share > 0.0 {
        for stream in &mut streams {
            let originals = stream.len();
            for i in 0..originals {
                if rng.random_bool(args.dup_share.min(1.0)) {
                    let copy = Prepared {
                        flow: stream[i].flow,
                        url: stream[i].url.clone(),
                        headers: stream[i].headers.clone(),
                        body: stream[i].body.clone(),
                    };
                    let at = rng.random_range(i + 1..=stream.len());
                    stream.insert(at, copy);
                }
            }
        }
    }
    if args.shuffle {
        let mut all: Vec<Prepared> = streams.into_iter().flatten().collect();
        all.shuffle(&mut rng);
        let mut dealt: Vec<Vec<Prepared>> = (0..c).map(|_| Vec::new()).collect();
        for (i, p) in all.into_iter().enumerate() {
            dealt[i % c].push(p);
        }
        streams = dealt;
    }
    Ok(streams)
}

async fn send(client: reqwest::Client, stream: Vec<Prepared>) -> Tally {
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(stream.len()),
        ..Tally::default()
    };
    for p in stream {
        let t = Instant::now();
        let result = client
            .post(&p.url)
            .headers(p.headers)
            .body(p.body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let status = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the receipt: the request is done when its answer is.
                if response.bytes().await.is_err() {
                    None
                } else {
                    Some(status)
                }
            }
            Err(_) => None,
        };
        tally.latencies_us.push(t.elapsed().as_micros() as u32);
        match status {
            Some(s) => *tally.statuses.entry(s).or_default() += 1,
            None => tally.transport_errors += 1,
        }
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            tally.incomplete.push(p.flow);
        }
    }
    tally
}

/// p50, p99 and max in milliseconds.
fn percentiles(us: &mut [u32]) -> (f64, f64, f64) {
    if us.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    us.sort_unstable();
    let at = |q: f64| f64::from(us[((us.len() - 1) as f64 * q).round() as usize]) / 1000.0;
    (at(0.5), at(0.99), at(1.0))
}

/// Linux reports process CPU times in these units whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, in [`USER_HZ`] ticks) of the server, of every process
/// named `postgres` (0 when none runs here), and of this driver.
#[derive(Default)]
struct CpuTicks {
    server: u64,
    postgres: u64,
    driver: u64,
}

impl CpuTicks {
    fn read(server: Option<u32>) -> Self {
        let postgres = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "postgres")
            })
            .filter_map(|entry| cpu_ticks(&entry.path().join("stat")))
            .sum();
        Self {
            server: server
                .and_then(|pid| cpu_ticks(std::path::Path::new(&format!("/proc/{pid}/stat"))))
                .unwrap_or(0),
            postgres,
            driver: cpu_ticks(std::path::Path::new("/proc/self/stat")).unwrap_or(0),
        }
    }

    /// The ticks spent since `before`; a Postgres backend that exited in between
    /// takes its ticks with it.
    fn since(&self, before: &Self) -> Self {
        Self {
            server: self.server.saturating_sub(before.server),
            postgres: self.postgres.saturating_sub(before.postgres),
            driver: self.driver.saturating_sub(before.driver),
        }
    }
}

/// utime + stime from a `/proc/…/stat` file.
fn cpu_ticks(stat: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Every flow answered 2xx throughout must have exactly one row for its commit, in
/// its environment, with its Vercel id, final status, and URL or error message.
async fn verify(
    api: &Api,
    sims: &[SimApp],
    app_ids: &HashMap<String, String>,
    flows: &[Flow],
    incomplete: &[usize],
) -> Result<Vec<String>, Error> {
    let mut rows_by_sha: HashMap<String, Vec<Value>> = HashMap::new();
    for sim in sims {
        let id = &app_ids[&sim.name];
        let mut cursor = String::new();
        loop {
            let url = format!(
                "{}/api/apps/{id}/deployments?limit=500&cursor={cursor}",
                api.base
            );
            let page: Value = api.get(&url).await?.error_for_status()?.json().await?;
            for row in page["items"].as_array().into_iter().flatten() {
                if let Some(sha) = row["githubCommitSha"].as_str() {
                    rows_by_sha
                        .entry(sha.to_owned())
                        .or_default()
                        .push(row.clone());
                }
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
    }
    let skip: std::collections::HashSet<usize> = incomplete.iter().copied().collect();
    let mut differences = Vec::new();
    for (n, flow) in flows.iter().enumerate() {
        if skip.contains(&n) {
            continue;
        }
        let rows = rows_by_sha.get(&flow.sha).map_or(&[][..], Vec::as_slice);
        let [row] = rows else {
            differences.push(format!(
                "flow {n} ({}): {} rows for commit {}",
                flow.deployment_id,
                rows.len(),
                flow.sha
            ));
            continue;
        };
        let want_url = (!flow.fails).then(|| format!("https://{}", flow.url));
        let checks = [
            (
                "appId",
                row["appId"].as_str() == Some(&app_ids[&sims[flow.app].name]),
            ),
            ("environment", row["environment"] == flow.environment()),
            ("status", row["status"] == flow.expected_status()),
            (
                "vercelDeploymentId",
                row["vercelDeploymentId"] == flow.deployment_id.as_str(),
            ),
            (
                "deploymentUrl",
                row["deploymentUrl"].as_str() == want_url.as_deref(),
            ),
            ("errorMessage", row["errorMessage"].is_null() != flow.fails),
        ];
        for (field, ok) in checks {
            if !ok {
                differences.push(format!(
                    "flow {n} ({}): {field} is {}",
                    flow.deployment_id, row[field]
                ));
            }
        }
    }
    Ok(differences)
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, url: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(url)
            .header("authorization", &self.token)
            .send()
            .await
    }

    /// Registers the apps (409 for one already there is fine) and returns every
    /// app's id by name.
    async fn register(&self, sims: &[SimApp]) -> Result<HashMap<String, String>, Error> {
        for sim in sims {
            let response = self
                .client
                .post(format!("{}/api/apps", self.base))
                .header("authorization", &self.token)
                .json(&sim.registration())
                .send()
                .await?;
            let status = response.status();
            if !(status.is_success() || status == reqwest::StatusCode::CONFLICT) {
                return Err(format!(
                    "registering {} answered {status}: {}",
                    sim.name,
                    response.text().await?
                )
                .into());
            }
        }
        let apps: Value = self
            .get(&format!("{}/api/apps", self.base))
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ids: HashMap<String, String> = apps["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["name"].as_str()?.to_owned(), a["id"].as_str()?.to_owned())))
            .collect();
        if let Some(missing) = sims.iter().find(|s| !ids.contains_key(&s.name)) {
            return Err(format!("{} is not in GET /api/apps", missing.name).into());
        }
        Ok(ids)
    }
}
