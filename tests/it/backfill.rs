//! Backfill of GitHub hook deliveries against a fake GitHub API on 127.0.0.1: what
//! the ledger lacks is fetched and ingested (or redelivered), nothing recorded is
//! fetched, a second run changes nothing, errors say what to do, and replicas
//! backfill each delivery once.

use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deploy_tracker::backfill::{self, Options, Summary};
use deploy_tracker::clients::github::{Client, GithubError, Hook, Settings};
use deploy_tracker::clients::{Clock, Token};
use deploy_tracker::store::deliveries;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::db_test;
use crate::github_fake::{FakeDelivery, FakeGithub, HOOK_ID, Mode, OWNER, REPO, TOKEN};
use crate::helpers::{Backend, TestApp, fixture, sample};
use crate::process::{BIN, ScratchDb, Server};

const STAGING_SHA: &str = "95fba5a7ac4bec75f64568229f125c7f526ed240";
const PRODUCTION_SHA: &str = "28b46f9426190a0e67ec5e6e0809ad5b110e142d";

/// A clock that records the waits asked of it and moves on at once. Its time is
/// the wall clock's, which the fake API's reset times are reckoned from.
#[derive(Default)]
struct FakeClock {
    slept: Mutex<Vec<Duration>>,
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.slept.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

impl FakeClock {
    fn slept(&self) -> Vec<Duration> {
        self.slept.lock().unwrap().clone()
    }
}

fn client(fake: &FakeGithub, timeout: Duration) -> (Client, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::default());
    let mut settings = Settings::new(&fake.url, Token::new(TOKEN));
    settings.timeout = timeout;
    (Client::with_clock(settings, clock.clone()).unwrap(), clock)
}

fn repo_hook() -> Hook {
    Hook::repository(OWNER, REPO, HOOK_ID).unwrap()
}

fn options(redeliver: bool, dry_run: bool) -> Options {
    Options {
        hook: repo_hook(),
        since: Utc::now() - chrono::Duration::hours(72),
        redeliver,
        dry_run,
    }
}

/// Six deliveries over three pages of two, newest first: 105 (a redelivery of the
/// production push, guid shared with 102), 104 tag, 103 ping, 102 production, 101
/// staging (the one the test also sends as a webhook), and 100, older than 72 h.
fn storefront_deliveries() -> Vec<FakeDelivery> {
    let production = fixture("github/push.production.json");
    vec![
        FakeDelivery {
            redelivery: true,
            ..FakeDelivery::new(105, "guid-production", "push", 10, &production)
        },
        FakeDelivery::new(
            104,
            "guid-tag",
            "push",
            20,
            &fixture("github/push.tag.json"),
        ),
        FakeDelivery::new(
            103,
            "guid-ping",
            "ping",
            30,
            &fixture("github/ping.default.json"),
        ),
        FakeDelivery::new(102, "guid-production", "push", 40, &production),
        FakeDelivery::new(
            101,
            "guid-staging",
            "push",
            50,
            &fixture("github/push.staging.json"),
        ),
        FakeDelivery::new(
            100,
            "guid-old",
            "push",
            80 * 60,
            &fixture("github/push.other-branch.json"),
        ),
    ]
}

/// The storefront app, and its staging push recorded as a webhook.
async fn storefront_with_staging_recorded(app: &TestApp) {
    app.storefront().await;
    let (status, body) = app
        .github("push", "guid-staging", &fixture("github/push.staging.json"))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn run(app: &TestApp, client: &Client, options: &Options) -> (Summary, Vec<String>) {
    let mut lines = Vec::new();
    let summary = backfill::run_exclusive(&app.state.ingest, client, options, |line| {
        lines.push(line.to_string())
    })
    .await
    .unwrap();
    (summary, lines)
}

db_test!(missing_deliveries_are_ingested_as_webhooks_would_be_and_a_second_run_changes_nothing);
async fn missing_deliveries_are_ingested_as_webhooks_would_be_and_a_second_run_changes_nothing(
    app: TestApp,
) {
    storefront_with_staging_recorded(&app).await;
    let fake = FakeGithub::start(storefront_deliveries(), 2).await;
    let (client, _) = client(&fake, Duration::from_secs(5));

    let (summary, lines) = run(&app, &client, &options(false, false)).await;

    assert_eq!(summary.pages, 3, "{summary}");
    assert_eq!((summary.listed, summary.recorded), (4, 1), "{summary}");
    assert_eq!(
        summary
            .ingested
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<Vec<_>>(),
        [("applied", 1), ("ignored", 2)],
        "{summary}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("guid-production") && lines[0].contains("ingested: applied"),
        "{lines:?}"
    );
    let said = summary.to_string();
    assert!(
        said.contains(": 4 deliveries since")
            && said.ends_with("1 already recorded, 3 ingested (1 applied, 2 ignored)"),
        "{said}"
    );
    // Recorded, older than --since, or a guid already fetched: never fetched.
    for (id, fetched) in [(105, 1), (104, 1), (103, 1), (102, 0), (101, 0), (100, 0)] {
        assert_eq!(fake.fetches(id), fetched, "delivery {id}");
    }
    fake.counts(|c| {
        assert_eq!(c.lists, 3);
        assert!(c.per_page.iter().all(|p| p.as_deref() == Some("100")));
        assert!(
            c.api_versions
                .iter()
                .all(|v| v.as_deref() == Some("2022-11-28"))
        );
        assert!(
            c.accepts
                .iter()
                .all(|v| v.as_deref() == Some("application/vnd.github+json"))
        );
        assert!(c.user_agents.iter().all(|v| {
            v.as_deref()
                .is_some_and(|ua| ua.starts_with("deploy-tracker/"))
        }));
    });

    let rows = app.deployments().await;
    let shas: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|d| {
            (
                d.environment.as_str(),
                d.status.as_str(),
                d.github_commit_sha.as_deref(),
            )
        })
        .collect();
    assert_eq!(shas.len(), 2, "{shas:?}");
    assert!(shas.contains(&("staging", "pending", Some(STAGING_SHA))));
    assert!(shas.contains(&("production", "pending", Some(PRODUCTION_SHA))));

    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 4);
    let row = |guid: &str| ledger.iter().find(|d| d.delivery_id == guid).unwrap();
    assert_eq!(row("guid-staging").source, "webhook");
    for guid in ["guid-production", "guid-tag", "guid-ping"] {
        assert_eq!(row(guid).source, "backfill", "{guid}");
        assert_eq!(row(guid).attempts, 1, "{guid}");
    }
    let production = row("guid-production");
    assert_eq!(
        (production.outcome.as_str(), production.event_type.as_str()),
        ("applied", "push")
    );
    assert!(production.deployment_id.is_some());
    assert_eq!(
        production.body,
        fixture("github/push.production.json").trim_ascii(),
        "the payload as the API returned it"
    );
    assert_eq!(row("guid-ping").event_type, "ping");
    assert_eq!(row("guid-ping").outcome, "ignored");

    // The second run lists again and finds everything recorded.
    let table = app.table().await;
    let (again, lines) = run(&app, &client, &options(false, false)).await;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!((again.listed, again.recorded), (4, 4), "{again}");
    assert!(again.ingested.is_empty(), "{again}");
    for (id, fetched) in [(105, 1), (104, 1), (103, 1), (102, 0), (101, 0), (100, 0)] {
        assert_eq!(
            fake.fetches(id),
            fetched,
            "delivery {id} after the second run"
        );
    }
    assert_eq!(app.delivery_count().await, 4);
    assert_eq!(app.table().await, table);
}

db_test!(redeliver_asks_github_again_for_the_missing_ones_and_dry_run_touches_nothing);
async fn redeliver_asks_github_again_for_the_missing_ones_and_dry_run_touches_nothing(
    app: TestApp,
) {
    storefront_with_staging_recorded(&app).await;
    let fake = FakeGithub::start(storefront_deliveries(), 2).await;
    let (client, _) = client(&fake, Duration::from_secs(5));

    for redeliver in [false, true] {
        let (summary, lines) = run(&app, &client, &options(redeliver, true)).await;
        assert_eq!(summary.would, 3, "{summary}");
        assert!(summary.to_string().contains("dry run: nothing changed"));
        assert!(lines.iter().all(|l| l.contains("would ")), "{lines:?}");
    }
    fake.counts(|c| assert!(c.fetches.is_empty() && c.attempts.is_empty()));
    assert_eq!(app.delivery_count().await, 1);

    let (summary, lines) = run(&app, &client, &options(true, false)).await;
    assert_eq!(summary.redelivered, 3, "{summary}");
    assert!(
        lines.iter().all(|l| l.ends_with("redelivery requested")),
        "{lines:?}"
    );
    fake.counts(|c| {
        assert!(c.fetches.is_empty(), "a redelivery fetches nothing");
        let mut attempted: Vec<(u64, usize)> = c.attempts.iter().map(|(k, v)| (*k, *v)).collect();
        attempted.sort();
        assert_eq!(attempted, [(103, 1), (104, 1), (105, 1)]);
    });
    assert_eq!(
        app.delivery_count().await,
        1,
        "GitHub, not backfill, sends them"
    );
}

db_test!(the_command_prints_a_line_per_delivery_and_a_summary_for_a_repository_or_an_organisation);
async fn the_command_prints_a_line_per_delivery_and_a_summary_for_a_repository_or_an_organisation(
    app: TestApp,
) {
    storefront_with_staging_recorded(&app).await;
    let fake = FakeGithub::start(storefront_deliveries(), 2).await;
    let db = app.database_url();
    let repo = ["--repo", "acme-apps/storefront", "--hook-id", "4242"];

    let dry = backfill_command(&db, &fake.url, TOKEN, &[&repo[..], &["--dry-run"]].concat());
    let out = stdout(&dry);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("would be ingested (dry run"), "{out}");
    assert_eq!(app.delivery_count().await, 1);

    let first = backfill_command(&db, &fake.url, TOKEN, &repo);
    let out = stdout(&first);
    assert!(first.status.success(), "{}", stderr(&first));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("guid-production") && lines[0].contains("github said 503"));
    assert!(lines[1].starts_with("guid-tag") && lines[1].contains("ingested: ignored"));
    assert!(
        lines[3].starts_with("hook acme-apps/storefront:4242: 4 deliveries since ")
            && lines[3]
                .ends_with("(3 pages), 1 already recorded, 3 ingested (1 applied, 2 ignored)"),
        "{out}"
    );
    assert!(!out.contains(TOKEN) && !stderr(&first).contains(TOKEN));
    assert_eq!(app.delivery_count().await, 4);

    // The organisation's hook lists the same deliveries: all recorded now.
    let org = backfill_command(
        &db,
        &fake.url,
        TOKEN,
        &["--org", OWNER, "--hook-id", "4242"],
    );
    let out = stdout(&org);
    assert!(org.status.success(), "{}", stderr(&org));
    assert_eq!(
        out.lines().collect::<Vec<_>>().len(),
        1,
        "only the summary: {out}"
    );
    assert!(
        out.starts_with("hook org:acme-apps:4242: 4 deliveries"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with("4 already recorded, 0 ingested"),
        "{out}"
    );
    assert_eq!(app.delivery_count().await, 4);
    assert_eq!(fake.fetches(105), 1);
}

fn backfill_command(database_url: &str, api_url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["github", "backfill"])
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("GITHUB_API_URL", api_url)
        .env("GITHUB_TOKEN", token)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_exit_non_zero_with_a_sentence_that_says_what_to_do() {
    let app = TestApp::new(Backend::Sqlite).await;
    let db = app.database_url();
    let fake = FakeGithub::start(storefront_deliveries(), 2).await;
    let repo = ["--repo", "acme-apps/storefront", "--hook-id", "4242"];
    let fails = |out: &Output, says: &[&str]| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for words in says {
            assert!(err.contains(words), "{words:?} not in {err}");
        }
        assert!(
            !err.contains(TOKEN) && !stdout(out).contains(TOKEN),
            "{err}"
        );
    };

    let wrong = "ghp_wrong_token_also_secret";
    let out = backfill_command(&db, &fake.url, wrong, &repo);
    fails(
        &out,
        &[
            "GitHub refused the token (401 Bad credentials)",
            "GITHUB_TOKEN",
        ],
    );
    assert!(!stderr(&out).contains(wrong));

    let out = backfill_command(
        &db,
        &fake.url,
        TOKEN,
        &["--repo", "acme-apps/storefront", "--hook-id", "1"],
    );
    fails(
        &out,
        &[
            "GitHub answered 404",
            "acme-apps/storefront",
            "admin:repo_hook",
            "Webhooks: read",
        ],
    );
    let out = backfill_command(
        &db,
        &fake.url,
        TOKEN,
        &["--org", "globex", "--hook-id", "4242"],
    );
    fails(
        &out,
        &[
            "GitHub answered 404",
            "organisation globex",
            "admin:org_hook",
            "read:org",
        ],
    );

    fake.set_mode(Mode::RateLimited {
        reset_in: 3600,
        times: 1,
    });
    let before = Utc::now();
    let out = backfill_command(&db, &fake.url, TOKEN, &repo);
    fails(
        &out,
        &[
            "rate limit",
            "(HTTP 403) until ",
            "run again after that time",
        ],
    );
    let err = stderr(&out);
    let at = err
        .split(" until ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let at: DateTime<Utc> = at.parse().unwrap_or_else(|e| panic!("{at:?}: {e}"));
    assert!(
        at > before + chrono::Duration::minutes(59) && at < before + chrono::Duration::minutes(61),
        "{at}"
    );
    assert_eq!(fake.lists(), 4, "one request per run: it never spins");

    let out = Command::new(BIN)
        .args(["github", "backfill"])
        .args(repo)
        .env_clear()
        .env("DATABASE_URL", &db)
        .env("GITHUB_API_URL", &fake.url)
        .output()
        .unwrap();
    fails(&out, &["GITHUB_TOKEN is not set"]);
    assert_eq!(app.delivery_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_rate_limit_is_waited_out_and_a_long_one_stops_with_the_time_to_retry() {
    let app = TestApp::new(Backend::Sqlite).await;
    let fake = FakeGithub::start(storefront_deliveries(), 10).await;
    let (client, clock) = client(&fake, Duration::from_secs(5));

    fake.set_mode(Mode::RetryAfter {
        seconds: 30,
        times: 1,
    });
    let (summary, _) = run(&app, &client, &options(false, true)).await;
    assert_eq!(summary.listed, 4);
    assert_eq!(clock.slept(), [Duration::from_secs(30)]);

    fake.set_mode(Mode::RateLimited {
        reset_in: 45,
        times: 1,
    });
    run(&app, &client, &options(false, true)).await;
    let waited = clock.slept()[1];
    assert!(
        (Duration::from_secs(43)..=Duration::from_secs(46)).contains(&waited),
        "{waited:?}"
    );

    fake.set_mode(Mode::RateLimited {
        reset_in: 600,
        times: 1,
    });
    let lists = fake.lists();
    let err = backfill::run(&app.state.ingest, &client, &options(false, true), |_| {})
        .await
        .unwrap_err();
    assert_eq!(fake.lists(), lists + 1, "no retry before the reset");
    assert_eq!(clock.slept().len(), 2, "no wait beyond a minute");
    match err {
        backfill::BackfillError::Github(GithubError::RateLimited {
            status, retry_at, ..
        }) => {
            assert_eq!(status, 403);
            let ahead = retry_at - Utc::now();
            assert!(ahead > chrono::Duration::seconds(590), "{ahead}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_is_retried_with_backoff_then_given_up_with_a_sentence() {
    let app = TestApp::new(Backend::Sqlite).await;
    let fake = FakeGithub::start(storefront_deliveries(), 10).await;
    let (client, clock) = client(&fake, Duration::from_millis(200));

    fake.set_mode(Mode::Slow {
        delay: Duration::from_secs(2),
        times: 1,
    });
    let (summary, _) = run(&app, &client, &options(false, true)).await;
    assert_eq!(summary.listed, 4, "the retry got the page");
    assert_eq!(clock.slept(), [Duration::from_secs(1)]);

    fake.set_mode(Mode::ServerError { times: 1 });
    let lists = fake.lists();
    let (summary, _) = run(&app, &client, &options(false, true)).await;
    assert_eq!(summary.listed, 4, "a 502 is retried");
    assert_eq!(fake.lists(), lists + 2);
    assert_eq!(clock.slept(), [Duration::from_secs(1); 2]);

    fake.set_mode(Mode::Slow {
        delay: Duration::from_secs(2),
        times: 10,
    });
    let lists = fake.lists();
    let err = backfill::run(&app.state.ingest, &client, &options(false, true), |_| {})
        .await
        .unwrap_err();
    assert_eq!(fake.lists(), lists + 3, "three attempts");
    assert_eq!(
        clock.slept()[2..],
        [Duration::from_secs(1), Duration::from_secs(2)],
        "backoff doubles"
    );
    let sentence = err.to_string();
    assert!(
        sentence.contains("did not answer the list of deliveries of hook acme-apps/storefront:4242 after 3 attempts (no answer within 0.2 s)"),
        "{sentence}"
    );
    assert!(!sentence.contains(TOKEN) && !format!("{client:?}").contains(TOKEN));
}

/// Two `serve` processes on one Postgres database, both backfilling the same hook
/// every second: while one holds the hook (its first page held back by the fake),
/// the other skips its rounds; each delivery is fetched once and has one ledger row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_backfill_each_delivery_once() {
    let Some(scratch) = ScratchDb::new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    periodic_backfill(&scratch, 2).await;
}

/// One `serve` process on SQLite: the periodic task ingests what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_backfills_periodically_on_sqlite() {
    let scratch = ScratchDb::new(Backend::Sqlite).await.unwrap();
    periodic_backfill(&scratch, 1).await;
}

async fn periodic_backfill(scratch: &ScratchDb, replicas: usize) {
    let names = [
        ("push", "push.staging.json"),
        ("push", "push.production.json"),
        ("push", "push.new-branch.json"),
        ("push", "push.other-branch.json"),
        ("push", "push.tag.json"),
        ("ping", "ping.default.json"),
    ];
    let deliveries: Vec<FakeDelivery> = names
        .iter()
        .enumerate()
        .map(|(i, (event, file))| {
            FakeDelivery::new(
                200 + i as u64,
                &format!("guid-replica-{i}"),
                event,
                5 + i as i64,
                &fixture(&format!("github/{file}")),
            )
        })
        .collect();
    let fake = FakeGithub::start_with(deliveries, 2, Duration::from_millis(50)).await;
    fake.hold();
    let added = Command::new(BIN)
        .args([
            "apps",
            "add",
            "--name",
            "storefront",
            "--github-repo",
            "acme-apps/storefront",
        ])
        .env_clear()
        .env("DATABASE_URL", &scratch.url)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    let hook = format!("{OWNER}/{REPO}:{HOOK_ID}");
    let env = [
        ("DATABASE_URL", scratch.url.as_str()),
        ("GITHUB_BACKFILL", hook.as_str()),
        ("GITHUB_BACKFILL_EVERY", "1s"),
        ("GITHUB_API_URL", fake.url.as_str()),
        ("GITHUB_TOKEN", TOKEN),
    ];
    let servers: Vec<Server> = (0..replicas).map(|_| Server::start(&env)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let http = reqwest::Client::new();
    let counter = async |server: &Server, name: &str, labels: &[(&str, &str)]| -> f64 {
        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&metrics, name, labels)
    };
    if replicas > 1 {
        // One replica's first page is held: the others find the hook taken.
        loop {
            let mut busy = 0.0;
            for server in &servers {
                busy += counter(
                    server,
                    "deploy_tracker_backfill_rounds_total",
                    &[("result", "busy")],
                )
                .await;
            }
            if busy >= 2.0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no replica found the hook taken"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(fake.lists(), 1, "one replica lists at a time");
    }
    fake.release();

    let db = deploy_tracker::store::connect(&scratch.url).await.unwrap();
    while deliveries::Entity::find().count(&db).await.unwrap() < names.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "not backfilled in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica lists again at least twice (three pages a round) after that.
    let lists = fake.lists();
    while fake.lists() < lists + 6 * replicas {
        assert!(std::time::Instant::now() < deadline, "no further rounds");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for i in 0..names.len() as u64 {
        assert_eq!(
            fake.fetches(200 + i),
            1,
            "delivery {} fetched once",
            200 + i
        );
    }
    let ledger = deliveries::Entity::find().all(&db).await.unwrap();
    assert_eq!(ledger.len(), names.len());
    assert!(
        ledger
            .iter()
            .all(|d| d.attempts == 1 && d.source == "backfill")
    );
    let applied = ledger.iter().filter(|d| d.outcome == "applied").count();
    assert_eq!(
        applied, 3,
        "the staging, new staging branch and production pushes"
    );

    let mut counted = 0.0;
    for server in &servers {
        counted += counter(server, "deploy_tracker_backfill_deliveries_total", &[]).await;
    }
    assert_eq!(
        counted,
        names.len() as f64,
        "counted once, by whoever backfilled"
    );
    db.close().await.unwrap();
}
