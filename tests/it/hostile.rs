//! Hostile input: every kind is answered 4xx (or 2xx where the spec keeps and ignores
//! it), never 5xx, never a panic, and never a partial write. Values too long for
//! their columns are refused before the database on both backends (Postgres would
//! error, SQLite would silently keep them), so the rows and ledger are checked too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy_tracker::webhooks::signature::{sign_github, sign_vercel};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{GITHUB_SECRET, Row, TestApp, VERCEL_SECRET, fixture};
use crate::process::{ScratchDb, Server};

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status, and no deployment row changes.
    Refused(u16),
    /// 2xx, kept in the ledger as ignored or unmatched; no deployment row changes.
    Ignored,
    /// 200: the odd but valid values are stored exactly as sent.
    Applied,
}

struct Case {
    kind: &'static str,
    request: Request<Body>,
    expect: Expect,
}

fn case(kind: &'static str, expect: Expect, request: impl IntoRequest) -> Case {
    Case {
        kind,
        request: request.into_request(),
        expect,
    }
}

/// A case is a request, or a body to sign and send to Vercel as JSON.
trait IntoRequest {
    fn into_request(self) -> Request<Body>;
}

impl IntoRequest for Request<Body> {
    fn into_request(self) -> Request<Body> {
        self
    }
}

impl IntoRequest for Vec<u8> {
    fn into_request(self) -> Request<Body> {
        vercel("application/json", self)
    }
}

fn github_raw(headers: &[(&str, &[u8])], body: Vec<u8>) -> Request<Body> {
    let mut request = Request::post("/webhooks/github");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(body)).unwrap()
}

/// A signed GitHub delivery with these headers besides the signature.
fn github(event: &str, id: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    let signature = sign_github(GITHUB_SECRET.as_bytes(), &body);
    github_raw(
        &[
            ("content-type", content_type.as_bytes()),
            ("x-github-event", event.as_bytes()),
            ("x-github-delivery", id.as_bytes()),
            ("x-hub-signature-256", signature.as_bytes()),
        ],
        body,
    )
}

fn vercel(content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post("/webhooks/vercel")
        .header("content-type", content_type)
        .header(
            "x-vercel-signature",
            sign_vercel(VERCEL_SECRET.as_bytes(), &body),
        )
        .body(Body::from(body))
        .unwrap()
}

fn json_file(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The staging push fixture, edited.
fn push(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = json_file("github/push.staging.json");
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// A Vercel staging event for the storefront app, edited.
fn event(kind: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = json_file("vercel/deployment.succeeded.staging.json");
    v["type"] = json!(kind);
    v["id"] = json!(format!("evt_hostile_{}", uuid::Uuid::new_v4().simple()));
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let staging = fixture("github/push.staging.json");
    let sig = sign_github(GITHUB_SECRET.as_bytes(), &staging);
    let hex = sig.trim_start_matches("sha256=").to_owned();
    let long = |n: usize| "x".repeat(n);
    vec![
        // Signature shapes.
        case("signature of another body", Refused(401), {
            let other = sign_github(GITHUB_SECRET.as_bytes(), b"{}");
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    ("x-hub-signature-256", other.as_bytes()),
                ],
                staging.clone(),
            )
        }),
        case(
            "signature with trailing bytes",
            Refused(401),
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    (
                        "x-hub-signature-256",
                        format!("{sig},sha256={hex}").as_bytes(),
                    ),
                ],
                staging.clone(),
            ),
        ),
        case(
            "signature of non-ASCII header bytes",
            Refused(401),
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    ("x-hub-signature-256", b"sha256=\xe9\xe9"),
                ],
                staging.clone(),
            ),
        ),
        case(
            "signature of 10 KB of hex",
            Refused(401),
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    (
                        "x-hub-signature-256",
                        format!("sha256={}", "ab".repeat(5000)).as_bytes(),
                    ),
                ],
                staging.clone(),
            ),
        ),
        case("vercel signature with a sha1= prefix", Refused(401), {
            let body = event("deployment.created", |_| {});
            let sig = format!("sha1={}", sign_vercel(VERCEL_SECRET.as_bytes(), &body));
            Request::post("/webhooks/vercel")
                .header("content-type", "application/json")
                .header("x-vercel-signature", sig)
                .body(Body::from(body))
                .unwrap()
        }),
        case(
            "duplicate signature headers, the wrong one first",
            Refused(401),
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    ("x-hub-signature-256", b"sha256=00"),
                    ("x-hub-signature-256", sig.as_bytes()),
                ],
                staging.clone(),
            ),
        ),
        case(
            "duplicate signature headers, the right one first",
            Refused(401),
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"push"),
                    ("x-hub-signature-256", sig.as_bytes()),
                    ("x-hub-signature-256", b"sha256=00"),
                ],
                staging.clone(),
            ),
        ),
        // Headers.
        case(
            "a 64 KB delivery id header",
            Refused(400),
            github("push", &long(64 * 1024), "application/json", push(|_| {})),
        ),
        case("a non-UTF-8 event header", Refused(400), {
            let body = push(|_| {});
            let sig = sign_github(GITHUB_SECRET.as_bytes(), &body);
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-github-event", b"pu\xffsh"),
                    ("x-github-delivery", b"non-utf8-event"),
                    ("x-hub-signature-256", sig.as_bytes()),
                ],
                body,
            )
        }),
        case("a missing event header", Refused(400), {
            let body = push(|_| {});
            let sig = sign_github(GITHUB_SECRET.as_bytes(), &body);
            github_raw(
                &[
                    ("content-type", b"application/json"),
                    ("x-hub-signature-256", sig.as_bytes()),
                ],
                body,
            )
        }),
        // Content types.
        case(
            "text/plain",
            Refused(415),
            github("push", "ct-text", "text/plain", push(|_| {})),
        ),
        case(
            "multipart/form-data",
            Refused(415),
            vercel(
                "multipart/form-data; boundary=x",
                event("deployment.created", |_| {}),
            ),
        ),
        case(
            "a form body to Vercel",
            Refused(415),
            vercel(
                "application/x-www-form-urlencoded",
                b"payload=%7B%7D".to_vec(),
            ),
        ),
        case(
            "a form without a payload field",
            Refused(400),
            github(
                "push",
                "form-no-payload",
                "application/x-www-form-urlencoded",
                b"other=1".to_vec(),
            ),
        ),
        case(
            "JSON sent as a form",
            Refused(400),
            github(
                "push",
                "json-as-form",
                "application/x-www-form-urlencoded",
                push(|_| {}),
            ),
        ),
        // Bodies.
        case(
            "an empty body",
            Refused(400),
            vercel("application/json", Vec::new()),
        ),
        case(
            "deeply nested JSON in a mapped event",
            Refused(400),
            github(
                "push",
                "nested-push",
                "application/json",
                format!(
                    r#"{{"ref":"refs/heads/staging","head_commit":{}}}"#,
                    nested(100_000)
                )
                .into_bytes(),
            ),
        ),
        case(
            "deeply nested JSON in an ignored event, kept as the spec keeps unknown types",
            Ignored,
            vercel(
                "application/json",
                format!(
                    r#"{{"id":"evt_nested","type":"deployment.check-rerequested","payload":{}}}"#,
                    nested(100_000)
                )
                .into_bytes(),
            ),
        ),
        case(
            "deeply nested JSON in Vercel meta",
            Refused(400),
            String::from_utf8(event("deployment.created", |v| {
                v["payload"]["deployment"]["meta"]["deep"] = json!("x")
            }))
            .unwrap()
            .replace(r#""deep":"x""#, &format!(r#""deep":{}"#, nested(50_000)))
            .into_bytes(),
        ),
        case(
            "invalid UTF-8 in a GitHub body",
            Refused(400),
            github(
                "push",
                "bad-utf8",
                "application/json",
                [&b"{\"ref\":\"refs/heads/\xff\xfe\"}"[..]].concat(),
            ),
        ),
        case(
            "invalid UTF-8 in a Vercel body",
            Refused(400),
            vercel(
                "application/json",
                b"{\"id\":\"evt_\xc3\x28\",\"type\":\"deployment.created\"}".to_vec(),
            ),
        ),
        case(
            "a raw NUL byte in the body",
            Refused(400),
            vercel(
                "application/json",
                b"{\"id\":\"evt_nul\0\",\"type\":\"deployment.created\"}".to_vec(),
            ),
        ),
        case(
            "an escaped NUL in the Vercel id",
            Refused(400),
            event("deployment.created", |v| v["id"] = json!("evt_\u{0}_nul")),
        ),
        case(
            "an escaped NUL in the Vercel type",
            Refused(400),
            event("deployment.cre\u{0}ated", |_| {}),
        ),
        case(
            "an escaped NUL in the deployment id",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["deployment"]["id"] = json!("dpl_\u{0}")
            }),
        ),
        case(
            "an escaped NUL in the branch of a tag push",
            Ignored,
            push(|v| v["ref"] = json!("refs/tags/v\u{0}1"))
                .pipe(|b| github("push", "nul-tag", "application/json", b)),
        ),
        case(
            "an escaped NUL in the repository",
            Refused(400),
            push(|v| v["repository"]["full_name"] = json!("acme-apps/store\u{0}front"))
                .pipe(|b| github("push", "nul-repo", "application/json", b)),
        ),
        case(
            "a NUL in a preview's branch",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["target"] = Value::Null;
                v["payload"]["deployment"]["meta"]["githubCommitRef"] = json!("feat\u{0}");
            })
            .pipe(|b| vercel("application/json", b)),
        ),
        // Numbers.
        case(
            "createdAt beyond f64",
            Refused(400),
            vercel(
                "application/json",
                String::from_utf8(event("deployment.created", |v| v["createdAt"] = json!(1)))
                    .unwrap()
                    .replace(r#""createdAt":1"#, r#""createdAt":1e400"#)
                    .into_bytes(),
            ),
        ),
        case(
            "createdAt beyond i64",
            Refused(400),
            vercel(
                "application/json",
                String::from_utf8(event("deployment.created", |v| v["createdAt"] = json!(1)))
                    .unwrap()
                    .replace(r#""createdAt":1"#, r#""createdAt":99999999999999999999"#)
                    .into_bytes(),
            ),
        ),
        case(
            "createdAt 250,000 years ago",
            Applied,
            event("deployment.created", |v| {
                v["createdAt"] = json!(-8_000_000_000_000_000_i64)
            })
            .pipe(|b| vercel("application/json", b)),
        ),
        case(
            "pushed_at at i64::MAX",
            Applied,
            push(|v| {
                v["repository"]["pushed_at"] = json!(i64::MAX);
                v["after"] = json!("b".repeat(40));
            })
            .pipe(|b| github("push", "huge-pushed-at", "application/json", b)),
        ),
        case(
            "a number where a string goes",
            Refused(400),
            vercel(
                "application/json",
                event("deployment.created", |v| {
                    v["payload"]["deployment"]["id"] = json!(12345678901234567890_u64)
                }),
            ),
        ),
        // Unicode and SQL-looking strings, stored exactly.
        case(
            "unicode in every string field",
            Applied,
            event("deployment.created", |v| {
                let d = &mut v["payload"]["deployment"];
                d["id"] = json!("dpl_ünïcødé_🚀_部署");
                d["url"] = json!("ünï-🚀.vercel.app");
                d["name"] = json!("店面");
                d["meta"]["githubCommitMessage"] = json!("修复 🐛 \u{202e}rtl");
                v["payload"]["team"]["id"] = json!("团队");
            })
            .pipe(|b| vercel("application/json", b)),
        ),
        case(
            "SQL-looking strings",
            Applied,
            event("deployment.succeeded", |v| {
                v["payload"]["deployment"]["id"] = json!("dpl_'); DROP TABLE deployments;--");
                v["payload"]["deployment"]["url"] = json!("x' OR '1'='1.vercel.app");
            })
            .pipe(|b| vercel("application/json", b)),
        ),
        case(
            "a push to a branch named like SQL",
            Ignored,
            push(|v| v["ref"] = json!("refs/heads/'; DELETE FROM apps;--"))
                .pipe(|b| github("push", "sql-branch", "application/json", b)),
        ),
        // Over-long values for the varchar columns.
        case(
            "a 65-byte deployment id",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["deployment"]["id"] = json!(long(65))
            }),
        ),
        case(
            "a deployment id of 22 four-byte characters (88 bytes)",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["deployment"]["id"] = json!("🚀".repeat(22))
            }),
        ),
        case(
            "a 300-byte URL",
            Refused(400),
            event("deployment.succeeded", |v| {
                v["payload"]["deployment"]["url"] = json!(format!("{}.vercel.app", long(290)))
            }),
        ),
        case(
            "a 300-byte project id",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["project"]["id"] = json!(long(300))
            }),
        ),
        case(
            "a 300-byte Vercel delivery id",
            Refused(400),
            event("deployment.created", |v| v["id"] = json!(long(300))),
        ),
        case(
            "a 200-byte Vercel type",
            Refused(400),
            event(&long(200), |_| {}),
        ),
        case(
            "a 300-byte branch",
            Refused(400),
            push(|v| v["ref"] = json!(format!("refs/heads/{}", long(300))))
                .pipe(|b| github("push", "long-branch", "application/json", b)),
        ),
        case(
            "a 300-byte repository",
            Refused(400),
            push(|v| v["repository"]["full_name"] = json!(long(300)))
                .pipe(|b| github("push", "long-repo", "application/json", b)),
        ),
        case(
            "a 300-byte commit ref on a preview",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["target"] = Value::Null;
                v["payload"]["deployment"]["meta"]["githubCommitRef"] = json!(long(300));
            }),
        ),
        case(
            "a commit SHA of 41 digits",
            Refused(400),
            event("deployment.created", |v| {
                v["payload"]["deployment"]["meta"]["githubCommitSha"] = json!("a".repeat(41))
            }),
        ),
        // Shapes.
        case(
            "duplicate keys",
            Refused(400),
            vercel(
                "application/json",
                br#"{"id":"evt_dup","id":"evt_dup2","type":"deployment.created","payload":{}}"#
                    .to_vec(),
            ),
        ),
        case(
            "a top-level array",
            Refused(400),
            vercel("application/json", b"[1,2,3]".to_vec()),
        ),
        case(
            "wrong field types",
            Refused(400),
            push(|v| v["deleted"] = json!("yes"))
                .pipe(|b| github("push", "wrong-types", "application/json", b)),
        ),
    ]
}

/// `.pipe(f)`: builds a request from a body inline.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Every stored value fits the column it is in, in characters (Postgres' measure).
fn assert_fits(rows: &[Row], ledger: &[deploy_tracker::store::deliveries::Model], kind: &str) {
    for d in ledger {
        assert!(d.delivery_id.chars().count() <= 255, "{kind}: {d:?}");
        assert!(d.event_type.chars().count() <= 100, "{kind}: {d:?}");
        assert!(d.reason.chars().count() <= 255, "{kind}: {d:?}");
        assert!(!d.delivery_id.is_empty(), "{kind}: {d:?}");
    }
    for r in rows {
        assert!(
            r.vercel_id.as_ref().is_none_or(|v| v.chars().count() <= 64),
            "{kind}: {r:?}"
        );
        assert!(
            r.url.as_ref().is_none_or(|v| v.chars().count() <= 255),
            "{kind}: {r:?}"
        );
        assert!(
            r.sha.as_ref().is_none_or(|v| v.len() <= 64),
            "{kind}: {r:?}"
        );
        let year = chrono::Datelike::year(&r.created_at);
        assert!((1970..=9999).contains(&year), "{kind}: {r:?}");
    }
}

db_test!(hostile_deliveries_get_4xx_or_an_ignoring_2xx_and_never_a_partial_write);
async fn hostile_deliveries_get_4xx_or_an_ignoring_2xx_and_never_a_partial_write(app: TestApp) {
    app.storefront().await;
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 25, "{}", cases.len());
    for Case {
        kind,
        request,
        expect,
    } in cases
    {
        let before = app.table().await;
        let ledger_before = app.delivery_count().await;
        let (status, body) = app.send(request).await;
        let after = app.table().await;
        let ledger = app.deliveries().await;
        assert_fits(&after, &ledger, kind);
        let added = ledger.len() as u64 - ledger_before;
        let ok = match expect {
            Expect::Refused(code) => status.as_u16() == code && after == before && added <= 1,
            Expect::Ignored => {
                status.is_success()
                    && after == before
                    && added == 1
                    && ["ignored", "unmatched"].contains(&ledger.last().unwrap().outcome.as_str())
            }
            Expect::Applied => status == StatusCode::OK && added == 1,
        };
        if !ok || status.is_server_error() {
            failures.push(format!("{kind}: {status} {body} (ledger +{added})"));
        }
    }
    assert!(failures.is_empty(), "{:#?}", failures);

    // The stored odd values are exactly the ones sent.
    let rows = app.deployments().await;
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.vercel_deployment_id.as_deref())
        .collect();
    assert!(ids.contains(&"dpl_ünïcødé_🚀_部署"), "{ids:?}");
    assert!(
        ids.contains(&"dpl_'); DROP TABLE deployments;--"),
        "{ids:?}"
    );
    let sql = rows
        .iter()
        .find(|r| r.vercel_deployment_id.as_deref() == Some("dpl_'); DROP TABLE deployments;--"))
        .unwrap();
    assert_eq!(
        sql.deployment_url.as_deref(),
        Some("https://x' OR '1'='1.vercel.app")
    );
    let unicode = rows
        .iter()
        .find(|r| r.vercel_deployment_id.as_deref() == Some("dpl_ünïcødé_🚀_部署"))
        .unwrap();
    assert_eq!(unicode.deployment_url, None, "a build has no URL yet");
}

db_test!(a_malformed_delivery_sent_again_is_refused_again);
async fn a_malformed_delivery_sent_again_is_refused_again(app: TestApp) {
    for _ in 0..3 {
        let (status, body) = app.github("push", "broken-twice", b"{").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(app.delivery_count().await, 1);
}

db_test!(a_25_mb_json_body_is_kept_whole_and_one_byte_more_is_413);
async fn a_25_mb_json_body_is_kept_whole_and_one_byte_more_is_413(app: TestApp) {
    let limit = deploy_tracker::http::DEFAULT_MAX_BODY_BYTES;
    let head = r#"{"id":"evt_big","type":"deployment.check-rerequested","payload":{"pad":""#;
    let tail = r#""}}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(limit - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    assert_eq!(body.len(), limit);
    let (status, response) = app.vercel(&body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{response}");
    let ledger = app.deliveries().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].body.len(), limit, "kept whole");
    assert!(ledger[0].body == body);
    body.insert(head.len(), b'y');
    let (status, _) = app.vercel(&body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.delivery_count().await, 1);
}

/// Raw bytes to the real server; what it answered (status line's code), if anything.
fn raw_exchange(addr: &str, write: impl FnOnce(&mut TcpStream)) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write(&mut stream);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn signed_head(body: &[u8], content_length: usize) -> String {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: push\r\nx-github-delivery: raw-1\r\nx-hub-signature-256: {}\r\ncontent-length: {content_length}\r\nconnection: close\r\n\r\n",
        sign_github(GITHUB_SECRET.as_bytes(), body)
    )
}

db_test!(raw_connection_abuse_gets_4xx_and_the_server_keeps_serving);
async fn raw_connection_abuse_gets_4xx_and_the_server_keeps_serving(app: TestApp) {
    let Some(scratch) = ScratchDb::new(app.backend).await else {
        return;
    };
    let server = Server::start(&[
        ("DATABASE_URL", &scratch.url),
        ("REQUEST_TIMEOUT_MS", "2000"),
    ]);
    let addr = server.addr.clone();
    let body = fixture("github/push.staging.json");
    let results = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        // Header injection: a bare CR inside a header value.
        results.push(("header injection", raw_exchange(&addr, |s| {
            s.write_all(b"POST /webhooks/github HTTP/1.1\r\nhost: x\r\nx-github-delivery: a\rx-injected: 1\r\ncontent-length: 0\r\n\r\n").unwrap();
        }), 400..500));
        // Headers past the server's buffer.
        results.push(("huge headers", raw_exchange(&addr, |s| {
            let _ = s.write_all(format!("POST /webhooks/github HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n", "p".repeat(450 * 1024)).as_bytes());
        }), 400..500));
        results.push(("too many headers", raw_exchange(&addr, |s| {
            let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
            let _ = s.write_all(format!("POST /webhooks/github HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes());
        }), 400..500));
        // Slowloris: the body trickles in a byte at a time, past the request timeout.
        let started = Instant::now();
        let slow = raw_exchange(&addr, |s| {
            s.write_all(signed_head(&body, body.len()).as_bytes()).unwrap();
            for byte in &body[..40] {
                if s.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        results.push(("slow body", slow, 400..500));
        assert!(started.elapsed() < Duration::from_secs(10));
        // Truncated: Content-Length promises more than is sent, then the write side closes.
        results.push(("truncated body", raw_exchange(&addr, |s| {
            s.write_all(signed_head(&body, body.len()).as_bytes()).unwrap();
            s.write_all(&body[..body.len() / 2]).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }), 400..500));
        results.push(("a GET to a webhook route", raw_exchange(&addr, |s| {
            s.write_all(b"GET /webhooks/github HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        }), 400..500));
        results
    })
    .await
    .unwrap();
    let wrong: Vec<_> = results
        .iter()
        .filter(|(_, status, range)| !status.is_some_and(|s| range.contains(&s)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // Still serving, and nothing was written.
    let health = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let db = deploy_tracker::store::connect(&scratch.url).await.unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        deploy_tracker::store::deliveries::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        deploy_tracker::store::deployments::Entity::find()
            .count(&db)
            .await
            .unwrap(),
        0
    );
    db.close().await.unwrap();
}

db_test!(a_value_the_database_refuses_is_a_logged_500_not_a_retryable_503);
async fn a_value_the_database_refuses_is_a_logged_500_not_a_retryable_503(app: TestApp) {
    use deploy_tracker::http::error::ApiError;
    use deploy_tracker::webhooks::{Delivery, Event, Provider};
    // Past the parsers' checks, as a future mapping bug would be: an event type too
    // long for its column. Postgres refuses it; SQLite stores it.
    let delivery = Delivery {
        provider: Provider::Vercel,
        delivery_id: "evt_past_the_checks".into(),
        event_type: "x".repeat(150),
        body: b"{}".to_vec(),
        event: Event::Ignored("test".into()),
        source: Default::default(),
    };
    match app.state.ingest.ingest(&delivery).await {
        Ok(_) => assert_eq!(app.backend, crate::helpers::Backend::Sqlite),
        Err(err) => {
            let err = ApiError::from(err);
            assert!(matches!(err, ApiError::Internal(_)), "{err:?}");
        }
    }
}

db_test!(app_registrations_with_nul_or_control_characters_get_400);
async fn app_registrations_with_nul_or_control_characters_get_400(app: TestApp) {
    for (kind, registration) in [
        (
            "NUL in the name",
            json!({"name": "shop\u{0}", "githubRepo": "acme/shop"}),
        ),
        (
            "NUL in the project id",
            json!({"name": "shop", "githubRepo": "acme/shop", "vercelProjectId": "prj_\u{0}"}),
        ),
        (
            "a newline in the name",
            json!({"name": "shop\nX-Injected: 1", "githubRepo": "acme/shop"}),
        ),
    ] {
        let (status, body) = app.post_json("/api/apps", registration).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}: {body}");
    }
    let (_, apps) = app.get("/api/apps").await;
    assert_eq!(apps["items"].as_array().unwrap().len(), 0);
}
