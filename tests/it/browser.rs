//! The pages in a real browser: Debian's headless Chromium, driven over WebDriver by
//! fantoccini through a chromedriver the test starts, against the real binary on
//! SQLite. Skipped (with a message) only when Chromium is missing outside CI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_tracker::replay::{self, Options, Target};
use deploy_tracker::simulate::{Flow, SimApp};
use deploy_tracker::webhooks::signature::Secrets;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::{Backend, GITHUB_SECRET, VERCEL_SECRET};
use crate::process::{ScratchDb, Server, post, register};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The promise of the live page.
const LIVE_WITHIN: Duration = Duration::from_secs(5);

/// A chromedriver on a free port with one Chromium session, both gone when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    profile: PathBuf,
}

impl Browser {
    /// `None` (after saying why) when Chromium is not installed and this is not CI.
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser tests: install chromium and chromium-driver (.ci/run does)"
            );
            eprintln!(
                "skipped: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = std::env::temp_dir().join(format!("chromium-{}", uuid::Uuid::new_v4()));
        let mut browser = Browser {
            driver,
            client: None,
            profile,
        };
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        browser.client = Some(client);
        Some(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }

    async fn goto(&self, url: &str) {
        self.client().goto(url).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client().current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn wait_for(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        self.client()
            .wait()
            .at_most(within)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear within {within:?}: {e}"))
    }

    async fn exists(&self, css: &str) -> bool {
        !self
            .client()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        let element = self.client().find(Locator::Css(css)).await.unwrap();
        element.attr(name).await.unwrap().unwrap_or_default()
    }

    async fn run(&self, script: &str) -> Value {
        self.client().execute(script, vec![]).await.unwrap()
    }

    /// Types the token into the login form and sends it.
    async fn sign_in(&self, server: &Server, token: &str) {
        if !self.path().await.starts_with("/login") {
            self.goto(&server.url("/login")).await;
        }
        let field = self.wait_for("#token", Duration::from_secs(5)).await;
        field.send_keys(token).await.unwrap();
        self.client()
            .find(Locator::Css("form[action='/login'] button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn server() -> (Server, ScratchDb) {
    let db = ScratchDb::new(Backend::Sqlite).await.unwrap();
    let server = Server::start(&[("DATABASE_URL", db.url.as_str())]);
    (server, db)
}

/// Sends a flow's three deliveries, each answered before the next.
async fn send_flow(http: &reqwest::Client, server: &Server, app: &SimApp, flow: &Flow) {
    for delivery in flow.deliveries(app) {
        let (status, _) = post(http, &server.addr, &delivery).await.unwrap();
        assert!((200..300).contains(&status), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_with_the_token_only_and_logs_out() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (server, _db) = server().await;

    browser.goto(&server.url("/")).await;
    assert_eq!(browser.path().await, "/login?next=%2F");
    browser.sign_in(&server, "not-the-token").await;
    let error = browser
        .wait_for(".error-message", Duration::from_secs(5))
        .await;
    assert!(
        error
            .text()
            .await
            .unwrap()
            .contains("not the server's API_TOKEN")
    );
    assert!(!browser.exists("#apps").await);

    browser.sign_in(&server, "test-token").await;
    browser.wait_for("#apps", Duration::from_secs(5)).await;
    assert_eq!(browser.path().await, "/");
    let cookie = browser.run("return document.cookie").await;
    assert_eq!(
        cookie, "",
        "the session cookie is HttpOnly: scripts cannot read it"
    );

    browser
        .client()
        .find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for("#token", Duration::from_secs(5)).await;
    browser.goto(&server.url("/")).await;
    assert!(browser.path().await.starts_with("/login"), "signed out");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_replayed_scenario_and_a_new_delivery_without_a_reload() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (server, _db) = server().await;
    let http = reqwest::Client::new();
    let response = http
        .post(server.url("/api/apps"))
        .bearer_auth("test-token")
        .json(&json!({
            "name": "storefront",
            "githubRepo": "acme-apps/storefront",
            "vercelProjectId": "prj_storefront0000000000000001",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let sim = SimApp::numbered(1);
    register(&http, &server, &sim).await;
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/all.scenario");
    let fixtures = replay::load(&[scenario]).unwrap();
    let target = Target::http(
        &format!("http://{}", server.addr),
        &Secrets::parse(GITHUB_SECRET).unwrap(),
        &Secrets::parse(VERCEL_SECRET).unwrap(),
    )
    .unwrap();
    let report = replay::replay(&fixtures, &target, &Options::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failed(), 0, "{}", report.summary());

    browser.goto(&server.url("/")).await;
    browser.sign_in(&server, "test-token").await;
    browser.wait_for("#apps", Duration::from_secs(5)).await;
    let cell = |app: &str, env: &str| format!("tr[data-app='{app}'] td[data-env='{env}']");
    let storefront_staging = format!("{} [data-status]", cell("storefront", "staging"));
    let storefront_production = format!("{} [data-status]", cell("storefront", "production"));
    assert_eq!(
        browser.attr(&storefront_staging, "data-status").await,
        "ready"
    );
    assert_eq!(
        browser.attr(&storefront_production, "data-status").await,
        "failed"
    );
    let production_text = browser
        .client()
        .find(Locator::Css(&cell("storefront", "production")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        production_text.contains("failed"),
        "a text label, not only a colour: {production_text}"
    );
    for env in ["staging", "production"] {
        assert!(
            !browser
                .exists(&format!("{} [data-status]", cell(&sim.name, env)))
                .await
        );
    }
    assert!(
        browser
            .exists("#attention tr[data-outcome='unmatched']")
            .await
    );

    // A marker that a reload would lose.
    browser.run("window.__notReloaded = true").await;
    let flow = Flow::numbered(0, 1, "live");
    send_flow(&http, &server, &sim, &flow).await;
    let committed = Instant::now();
    let sim_staging = format!("{} [data-status='ready']", cell(&sim.name, "staging"));
    browser.wait_for(&sim_staging, LIVE_WITHIN).await;
    let shown_after = committed.elapsed();
    assert_eq!(
        browser.run("return window.__notReloaded === true").await,
        true,
        "the page was updated in place"
    );
    eprintln!("a committed delivery showed on the open dashboard after {shown_after:?}");
    assert!(browser.exists("#apps").await);

    // The whole page in one picture: the window as tall as the document.
    let height = browser
        .run("return document.documentElement.scrollHeight")
        .await
        .as_u64()
        .unwrap();
    browser
        .client()
        .set_window_size(1280, height.clamp(600, 4000) as u32 + 120)
        .await
        .unwrap();
    let path = browser.screenshot("dashboard.png").await;
    eprintln!("screenshot: {}", path.display());

    // At phone width nothing runs off the side.
    browser.client().set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .run("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow} px"
    );
    browser.screenshot("dashboard-phone.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_page_pages_through_its_history_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (server, _db) = server().await;
    let http = reqwest::Client::new();
    let sim = SimApp::numbered(2);
    register(&http, &server, &sim).await;
    for n in 0..7 {
        send_flow(&http, &server, &sim, &Flow::numbered(n, 1, "page")).await;
    }

    browser
        .goto(&server.url(&format!("/apps/{}?limit=3", sim.name)))
        .await;
    browser.sign_in(&server, "test-token").await;
    browser.wait_for("#history", Duration::from_secs(5)).await;
    let rows = || async {
        let mut ids = Vec::new();
        for row in browser
            .client()
            .find_all(Locator::Css("#history tr[data-deployment]"))
            .await
            .unwrap()
        {
            ids.push(row.attr("data-deployment").await.unwrap().unwrap());
        }
        ids
    };
    let first = rows().await;
    assert_eq!(first.len(), 3);
    assert!(
        !browser.exists("#newer").await,
        "the first page has no newer page"
    );
    assert!(browser.exists("svg.chart").await, "the charts are drawn");

    let mut seen = first.clone();
    let mut pages = vec![first.clone()];
    while browser.exists("#older").await {
        let before = browser.path().await;
        browser
            .client()
            .find(Locator::Css("#older"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_path_change(&browser, &before).await;
        let page = rows().await;
        seen.extend(page.clone());
        pages.push(page);
        assert!(pages.len() <= 3, "more pages than rows");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 7, "every deployment once: {seen:?}");

    for back in (0..pages.len() - 1).rev() {
        let before = browser.path().await;
        browser
            .client()
            .find(Locator::Css("#newer"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_path_change(&browser, &before).await;
        assert_eq!(rows().await, pages[back], "page {back} again");
    }
    assert!(!browser.exists("#newer").await);
    browser.close().await;
}

async fn wait_for_path_change(browser: &Browser, before: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while browser.path().await == before {
        assert!(Instant::now() < deadline, "the link did not navigate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.wait_for("#history", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_backs_off_while_the_server_is_down_and_catches_up_after_a_restart() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (mut server, db) = server().await;
    let http = reqwest::Client::new();
    let sim = SimApp::numbered(3);
    register(&http, &server, &sim).await;
    browser.goto(&server.url("/")).await;
    browser.sign_in(&server, "test-token").await;
    browser
        .wait_for("#live-state[data-state='live']", Duration::from_secs(5))
        .await;
    browser.run("window.__notReloaded = true").await;

    let addr = server.addr.clone();
    server.kill();
    browser
        .wait_for("#live-state[data-state='down']", LIVE_WITHIN)
        .await;
    let restarted = Server::start_at(&addr, &[("DATABASE_URL", db.url.as_str())]);
    send_flow(&http, &restarted, &sim, &Flow::numbered(0, 1, "restart")).await;
    // The next poll after the restart comes within the back-off reached so far (4 or 8 s).
    let cell = format!(
        "tr[data-app='{}'] td[data-env='staging'] [data-status='ready']",
        sim.name
    );
    browser.wait_for(&cell, Duration::from_secs(12)).await;
    browser
        .wait_for("#live-state[data-state='live']", Duration::from_secs(2))
        .await;
    assert_eq!(
        browser.run("return window.__notReloaded === true").await,
        true,
        "caught up in place"
    );
    browser.close().await;
}
