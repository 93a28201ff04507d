//! The HTML pages through the real router: the session, the dashboard's statuses, the
//! app page's keyset pages both ways, the live mark, and a delivery's escaped body.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use deploy_tracker::simulate::{Flow, SimApp};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::db_test;
use crate::helpers::{TestApp, fixture};

/// A page's status, headers and body as text.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The `href` of the element with `id`, unescaped.
    fn link(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let tag = &self.body[self.body[..at].rfind('<')?..];
        let href = tag.split("href=\"").nth(1)?.split('"').next()?;
        Some(href.replace("&amp;", "&"))
    }

    /// The `data-<name>` values in document order.
    fn data(&self, name: &str) -> Vec<String> {
        let needle = format!("data-{name}=\"");
        self.body
            .match_indices(&needle)
            .map(|(i, _)| {
                let rest = &self.body[i + needle.len()..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .collect()
    }

    /// The leading text of the figure `name` (`<dd data-figure="name">8 …`).
    fn figure(&self, name: &str) -> String {
        let attr = format!("data-figure=\"{name}\">");
        let at = self.body.find(&attr).unwrap() + attr.len();
        self.body[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect()
    }

    /// The markup of the first element carrying `attr`, up to its closing `</tag>`.
    fn element(&self, attr: &str, tag: &str) -> &str {
        let start = self
            .body
            .find(attr)
            .unwrap_or_else(|| panic!("{attr} not in {}", self.body));
        let end = self.body[start..].find(&format!("</{tag}>")).unwrap() + start;
        &self.body[start..end]
    }
}

async fn page(app: &TestApp, request: Request<Body>) -> Page {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    page(app, request.body(Body::empty()).unwrap()).await
}

async fn login(app: &TestApp, token: &str, next: &str) -> Page {
    let form = serde_urlencoded::to_string([("token", token), ("next", next)]).unwrap();
    page(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap(),
    )
    .await
}

/// Signs in with the test token and returns the `Cookie` header to send.
async fn session(app: &TestApp) -> String {
    let answer = login(app, "test-token", "/").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    answer
        .header(header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

db_test!(pages_need_a_session_when_a_token_is_set_and_are_open_without_one);
async fn pages_need_a_session_when_a_token_is_set_and_are_open_without_one(mut app: TestApp) {
    let anonymous = get(&app, "/apps/web?status=failed", None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous.header(header::LOCATION),
        "/login?next=%2Fapps%2Fweb%3Fstatus%3Dfailed"
    );
    assert_eq!(
        get(&app, "/live", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let form = get(&app, "/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("type=\"password\""), "{}", form.body);

    let wrong = login(&app, "test-token-not", "/").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not the server's API_TOKEN"));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let forged = get(&app, "/", Some("dt_session=test-token")).await;
    assert_eq!(
        forged.status,
        StatusCode::SEE_OTHER,
        "the token is not the cookie"
    );

    let right = login(&app, "test-token", "/apps/web").await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(right.header(header::LOCATION), "/apps/web");
    let cookie = right.header(header::SET_COOKIE);
    for part in ["dt_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("test-token"), "{cookie}");
    let outside = login(&app, "test-token", "//evil.example/").await;
    assert_eq!(outside.header(header::LOCATION), "/");

    let cookie = session(&app).await;
    let dashboard = get(&app, "/", Some(&cookie)).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard
            .header(header::CONTENT_TYPE)
            .starts_with("text/html")
    );
    assert!(
        dashboard
            .header(header::CONTENT_SECURITY_POLICY)
            .contains("script-src 'self'")
    );
    assert!(dashboard.body.contains("Log out"));
    assert_eq!(
        get(&app, "/live", Some(&cookie)).await.status,
        StatusCode::OK
    );

    let out = page(
        &app,
        Request::post("/logout")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header(header::SET_COOKIE).contains("Max-Age=0"));

    app.reconfigure(|s| s.api_token = None);
    let open = get(&app, "/", None).await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(!open.body.contains("Log out"));
    assert_eq!(
        get(&app, "/login", None).await.status,
        StatusCode::SEE_OTHER
    );
    let css = get(&app, "/assets/style.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header(header::CACHE_CONTROL).contains("immutable"));
    assert!(open.body.contains("/assets/style.css?v="));
}

db_test!(the_dashboard_shows_each_apps_latest_deployments_failures_and_unmatched_deliveries);
async fn the_dashboard_shows_each_apps_latest_deployments_failures_and_unmatched_deliveries(
    app: TestApp,
) {
    let cookie = session(&app).await;
    let empty = get(&app, "/", Some(&cookie)).await;
    assert!(
        empty.body.contains("No app is registered yet"),
        "{}",
        empty.body
    );
    app.storefront().await;
    for name in [
        "github/push.staging.json",
        "vercel/deployment.created.staging.json",
        "vercel/deployment.succeeded.staging.json",
        "github/push.production.json",
        "vercel/deployment.created.production.json",
        "vercel/deployment.error.production.json",
        "vercel/deployment.created.unknown-project.json",
    ] {
        let (status, body) = app.fixture(name).await;
        assert!(status.is_success(), "{name}: {body}");
    }

    let dashboard = get(&app, "/", Some(&cookie)).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    let row = dashboard.element("data-app=\"storefront\"", "tr");
    let staging = &row[row.find("data-env=\"staging\"").unwrap()..];
    let production = &row[row.find("data-env=\"production\"").unwrap()..];
    assert!(staging.starts_with("data-env=\"staging\""));
    assert!(
        staging[..staging.find("</td>").unwrap()].contains("data-status=\"ready\""),
        "{row}"
    );
    assert!(production.contains("data-status=\"failed\""), "{row}");
    assert!(row.contains("95fba5a"), "the staging commit, short: {row}");
    assert!(
        row.contains("storefront-6hwqnpxot-acme.vercel.app"),
        "{row}"
    );
    let failed = dashboard.element("id=\"failed\"", "section");
    assert!(
        failed.contains("storefront") && failed.contains("production"),
        "{failed}"
    );
    let attention = dashboard.element("id=\"attention\"", "section");
    assert!(
        attention.contains("data-outcome=\"unmatched\""),
        "{attention}"
    );
    assert!(attention.contains("deploy-tracker apps add"), "{attention}");
    assert!(attention.contains("POST /api/apps"), "{attention}");
    assert_eq!(
        dashboard.data("delivery").len(),
        7 + 1,
        "the log, and the unmatched once more"
    );
}

db_test!(an_app_page_pages_through_its_history_both_ways_and_filters_it);
async fn an_app_page_pages_through_its_history_both_ways_and_filters_it(app: TestApp) {
    let cookie = session(&app).await;
    let sim = SimApp::numbered(1);
    let id = app.register(sim.registration()).await;
    for n in 0..8 {
        for delivery in Flow::numbered(n, 1, "pg").deliveries(&sim) {
            let (status, body) = match delivery.provider {
                deploy_tracker::webhooks::Provider::Github => {
                    app.github(delivery.event, &delivery.delivery_id, &delivery.body)
                        .await
                }
                deploy_tracker::webhooks::Provider::Vercel => app.vercel(&delivery.body).await,
            };
            assert!(status.is_success(), "{body}");
        }
    }
    let (_, all) = app.get(&format!("/api/apps/{id}/deployments")).await;
    let expected: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), 8);

    let mut path = format!("/apps/{}?limit=3", sim.name);
    let mut pages = Vec::new();
    loop {
        let p = get(&app, &path, Some(&cookie)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        let (newer, older) = (p.link("newer"), p.link("older"));
        let history = p.element("id=\"history\"", "section").to_owned();
        let ids: Vec<String> = Page { body: history, ..p }.data("deployment");
        pages.push((path.clone(), ids));
        assert_eq!(newer.is_some(), pages.len() > 1, "{path}");
        match older {
            Some(next) => path = next,
            None => break,
        }
    }
    let seen: Vec<String> = pages.iter().flat_map(|(_, ids)| ids.clone()).collect();
    assert_eq!(
        seen, expected,
        "older links walk the whole history once, in order"
    );
    assert_eq!(
        pages.iter().map(|(_, ids)| ids.len()).collect::<Vec<_>>(),
        [3, 3, 2]
    );

    for back in (0..pages.len() - 1).rev() {
        let p = get(&app, &path, Some(&cookie)).await;
        path = p.link("newer").expect("a newer page");
        let again = get(&app, &path, Some(&cookie)).await;
        let history = again.element("id=\"history\"", "section").to_owned();
        assert_eq!(
            Page {
                body: history,
                ..again
            }
            .data("deployment"),
            pages[back].1,
            "newer links come back through the same pages"
        );
    }
    assert!(
        get(&app, &path, Some(&cookie))
            .await
            .link("newer")
            .is_none()
    );

    let (_, stats) = app.get(&format!("/api/stats?appId={id}")).await;
    let first = get(&app, &format!("/apps/{id}"), Some(&cookie)).await;
    for figure in ["deployments", "ready", "failed"] {
        assert_eq!(
            first.figure(figure),
            stats[figure].to_string(),
            "the page's {figure} is /api/stats's"
        );
    }
    assert_eq!(first.body.matches("<svg").count(), 2, "two charts");

    let failed = get(&app, &format!("/apps/{id}?status=failed"), Some(&cookie)).await;
    let history = failed.element("id=\"history\"", "section").to_owned();
    let statuses = Page {
        body: history,
        ..failed
    }
    .data("status");
    assert_eq!(statuses, ["failed"], "flow 7 fails");

    for (bad, status) in [
        (format!("/apps/{id}?status=done"), StatusCode::BAD_REQUEST),
        (format!("/apps/{id}?cursor=nope"), StatusCode::BAD_REQUEST),
        (format!("/apps/{id}?limit=0"), StatusCode::BAD_REQUEST),
        ("/apps/no-such-app".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let p = get(&app, &bad, Some(&cookie)).await;
        assert_eq!(p.status, status, "{bad}");
        assert!(
            p.header(header::CONTENT_TYPE).starts_with("text/html"),
            "{bad}"
        );
    }
}

db_test!(the_live_mark_changes_when_a_delivery_is_committed_and_only_then);
async fn the_live_mark_changes_when_a_delivery_is_committed_and_only_then(app: TestApp) {
    let cookie = session(&app).await;
    let live = |since: String| {
        let cookie = cookie.clone();
        let app = &app;
        async move {
            let p = get(app, &format!("/live?since={since}"), Some(&cookie)).await;
            assert_eq!(p.status, StatusCode::OK);
            serde_json::from_str::<serde_json::Value>(&p.body).unwrap()
        }
    };
    let first = live(String::new()).await;
    let mark = first["mark"].as_str().unwrap().to_owned();
    assert_eq!(live(mark.clone()).await["changed"], false);
    let dashboard = get(&app, "/", Some(&cookie)).await;
    assert!(dashboard.body.contains(&format!("data-live=\"{mark}\"")));

    app.fixture("github/ping.default.json").await;
    let after = live(mark.clone()).await;
    assert_eq!(after["changed"], true);
    let newer = after["mark"].as_str().unwrap().to_owned();
    assert_ne!(newer, mark);
    assert_eq!(live(newer.clone()).await["changed"], false);
    app.fixture("github/ping.default.json").await;
    assert_eq!(
        live(newer).await["changed"],
        false,
        "a duplicate adds no ledger row"
    );
}

db_test!(a_delivery_page_shows_the_raw_body_escaped);
async fn a_delivery_page_shows_the_raw_body_escaped(app: TestApp) {
    let cookie = session(&app).await;
    let body = String::from_utf8(fixture("github/ping.default.json"))
        .unwrap()
        .replace("Design for failure.", "<script>alert(1)</script>");
    let (status, receipt) = app.github("ping", "d-escape", body.as_bytes()).await;
    assert!(status.is_success(), "{receipt}");
    let id = receipt["id"].as_str().unwrap();
    let p = get(&app, &format!("/deliveries/{id}"), Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        p.body
    );
    assert!(!p.body.contains("<script>alert"));
    assert!(p.body.contains("d-escape"));
    let dashboard = get(&app, "/", Some(&cookie)).await;
    assert!(dashboard.body.contains(&format!("/deliveries/{id}")));

    let missing = get(
        &app,
        &format!("/deliveries/{}", uuid::Uuid::nil()),
        Some(&cookie),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = get(&app, "/deliveries/not-a-uuid", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
