//! Test harness: the real router over a fresh database per test, on SQLite and, when
//! `TEST_DATABASE_URL` is set, on Postgres (a fresh schema per test).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploy_tracker::deployments::ingest::Ingest;
use deploy_tracker::http::{AppState, DEFAULT_MAX_BODY_BYTES, Limits, app};
use deploy_tracker::simulate::{Flow, SimApp, SimDelivery};
use deploy_tracker::store::{self, deliveries, deployments};
use deploy_tracker::webhooks::signature::{Secrets, sign_github, sign_vercel};
use deploy_tracker::webhooks::{ContentType, Delivery, Provider, github, vercel};
use http_body_util::BodyExt;
use migration::{Migrator, MigratorTrait};
use rand::seq::{IndexedRandom, SliceRandom};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder,
};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

pub const GITHUB_SECRET: &str = "gh-test-secret";
pub const VERCEL_SECRET: &str = "vc-test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `db_test!(name);` next to
/// `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! db_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::TestApp::new($crate::helpers::Backend::Sqlite).await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::helpers::TestApp::try_new($crate::helpers::Backend::Postgres).await {
                    Some(app) => super::$name(app).await,
                    None => eprintln!("TEST_DATABASE_URL is not set; skipped on Postgres"),
                }
            }
        }
    };
}

pub struct TestApp {
    pub backend: Backend,
    pub db: DatabaseConnection,
    pub router: Router,
    pub state: AppState,
    _cleanup: Cleanup,
}

/// Removes the test's database when the test ends, passed or not.
enum Cleanup {
    File(std::path::PathBuf),
    Schema { admin_url: String, schema: String },
}

impl Cleanup {
    /// A URL that reaches the same database from another process (the binary).
    fn url(&self) -> String {
        match self {
            Cleanup::File(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Cleanup::Schema { admin_url, schema } => {
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                format!("{admin_url}{separator}options[search_path]={schema}")
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                run_admin_sql(
                    admin_url,
                    &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
                );
            }
        }
    }
}

/// Runs one statement on the admin connection from a plain thread with a runtime of
/// its own: for `Drop`, which runs inside a test's runtime and cannot await.
pub fn run_admin_sql(admin_url: &str, sql: &str) {
    let (url, sql) = (admin_url.to_owned(), sql.to_owned());
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                if let Ok(db) = Database::connect(url).await {
                    let _ = db.execute_unprepared(&sql).await;
                    let _ = db.close().await;
                }
            })
    })
    .join();
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        Self::try_new(backend).await.expect("backend available")
    }

    pub async fn try_new(backend: Backend) -> Option<Self> {
        Self::with_secrets(backend, GITHUB_SECRET, VERCEL_SECRET).await
    }

    /// A fresh database with the given secret lists ("" means not configured).
    pub async fn with_secrets(backend: Backend, github: &str, vercel: &str) -> Option<Self> {
        let (db, cleanup) = fresh_database(backend).await?;
        Migrator::up(&db, None).await.expect("migrations apply");
        let secrets = |list: &str| {
            Arc::new(if list.is_empty() {
                Secrets::default()
            } else {
                Secrets::parse(list).unwrap()
            })
        };
        let state = AppState {
            ingest: Ingest::new(db.clone()),
            github_secrets: secrets(github),
            vercel_secrets: secrets(vercel),
            api_token: Some(Arc::from("test-token")),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            limits: Limits::default(),
        };
        Some(Self {
            backend,
            db,
            router: app(state.clone()),
            state,
            _cleanup: cleanup,
        })
    }

    /// The test's database as a URL, for running the binary against it.
    pub fn database_url(&self) -> String {
        self._cleanup.url()
    }

    /// The same database behind a router with other settings.
    pub fn reconfigure(&mut self, f: impl FnOnce(&mut AppState)) {
        f(&mut self.state);
        self.router = app(self.state.clone());
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    /// A signed GitHub delivery of `body` as JSON.
    pub async fn github(&self, event: &str, delivery_id: &str, body: &[u8]) -> (StatusCode, Value) {
        self.send(github_request(event, delivery_id, body, GITHUB_SECRET))
            .await
    }

    /// A signed Vercel delivery.
    pub async fn vercel(&self, body: &[u8]) -> (StatusCode, Value) {
        self.send(vercel_request(body, VERCEL_SECRET)).await
    }

    /// Sends a fixture file (`github/push.staging.json`, `vercel/…`), GitHub's with
    /// the event from the file name and the file name as delivery id.
    pub async fn fixture(&self, name: &str) -> (StatusCode, Value) {
        let body = fixture(name);
        match name.split_once('/') {
            Some(("github", file)) => {
                let event = file.split('.').next().unwrap();
                self.github(event, file, &body).await
            }
            Some(("vercel", _)) => self.vercel(&body).await,
            _ => panic!("unknown fixture {name}"),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(
            Request::get(path)
                .header("authorization", "Bearer test-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Request::post(path)
                .header("authorization", "Bearer test-token")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Registers the app the fixtures are written for and returns its id.
    pub async fn storefront(&self) -> String {
        self.register(serde_json::json!({
            "name": "storefront",
            "githubRepo": "acme-apps/storefront",
            "vercelProjectId": "prj_storefront0000000000000001",
        }))
        .await
    }

    pub async fn register(&self, app: Value) -> String {
        let (status, body) = self.post_json("/api/apps", app).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn deployments(&self) -> Vec<deployments::Model> {
        deployments::Entity::find()
            .order_by_asc(deployments::Column::CreatedAt)
            .order_by_asc(deployments::Column::GithubCommitSha)
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn deliveries(&self) -> Vec<deliveries::Model> {
        deliveries::Entity::find()
            .order_by_asc(deliveries::Column::ReceivedAt)
            .order_by_asc(deliveries::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn delivery_count(&self) -> u64 {
        deliveries::Entity::find().count(&self.db).await.unwrap()
    }

    /// The deployments table without the columns that are ids or wall-clock times,
    /// for comparing two histories; "previousDeploymentId" becomes the previous row's
    /// natural key.
    pub async fn table(&self) -> Vec<Row> {
        let models = self.deployments().await;
        let key = |id: uuid::Uuid| {
            models.iter().find(|m| m.id == id).map(|m| RowKey {
                sha: m.github_commit_sha.clone(),
                vercel_id: m.vercel_deployment_id.clone(),
                created_at: m.created_at,
            })
        };
        let mut rows: Vec<Row> = models
            .iter()
            .map(|d| Row {
                previous: d.previous_deployment_id.and_then(key),
                ..Row::from(d.clone())
            })
            .collect();
        rows.sort();
        rows
    }
}

/// What tells a deployment row apart without its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub sha: Option<String>,
    pub vercel_id: Option<String>,
    pub created_at: chrono::NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub app_id: Uuid,
    pub environment: String,
    pub status: String,
    pub sha: Option<String>,
    pub vercel_id: Option<String>,
    pub url: Option<String>,
    pub error: Option<String>,
    pub created_at: chrono::NaiveDateTime,
    pub failure_reason: Option<String>,
    pub triggered_by: Option<String>,
    pub build_logs: Option<String>,
    pub started_at: Option<chrono::NaiveDateTime>,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub build_duration_ms: Option<i64>,
    pub committed_at: Option<chrono::NaiveDateTime>,
    pub is_rollback: bool,
    pub github_deployment_id: Option<i64>,
    pub rollback_to: Option<String>,
    pub previous: Option<RowKey>,
}

impl From<deployments::Model> for Row {
    fn from(d: deployments::Model) -> Self {
        Row {
            app_id: d.app_id,
            environment: d.environment.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            sha: d.github_commit_sha,
            vercel_id: d.vercel_deployment_id,
            url: d.deployment_url,
            error: d.error_message,
            created_at: d.created_at,
            failure_reason: d.failure_reason.map(|f| f.as_str().to_owned()),
            triggered_by: d.triggered_by,
            build_logs: d.build_logs,
            started_at: d.started_at,
            finished_at: d.finished_at,
            build_duration_ms: d.build_duration_ms,
            committed_at: d.committed_at,
            is_rollback: d.is_rollback,
            github_deployment_id: d.github_deployment_id,
            rollback_to: d.rollback_to,
            previous: None,
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn github_request(event: &str, delivery_id: &str, body: &[u8], secret: &str) -> Request<Body> {
    Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery_id)
        .header("x-hub-signature-256", sign_github(secret.as_bytes(), body))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

pub fn vercel_request(body: &[u8], secret: &str) -> Request<Body> {
    Request::post("/webhooks/vercel")
        .header("content-type", "application/json")
        .header("x-vercel-signature", sign_vercel(secret.as_bytes(), body))
        .body(Body::from(body.to_vec()))
        .unwrap()
}

async fn fresh_database(backend: Backend) -> Option<(DatabaseConnection, Cleanup)> {
    match backend {
        Backend::Sqlite => {
            let path =
                std::env::temp_dir().join(format!("deploy-tracker-it-{}.db", Uuid::new_v4()));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let db = store::connect(&url).await.expect("sqlite opens");
            Some((db, Cleanup::File(path)))
        }
        Backend::Postgres => {
            let admin_url = postgres_url()?;
            let schema = format!("it_{}", Uuid::new_v4().simple());
            let admin = Database::connect(admin_url.clone())
                .await
                .expect("postgres reachable");
            admin
                .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .unwrap();
            admin.close().await.unwrap();
            let mut options = store::connect_options(&admin_url);
            options.set_schema_search_path(schema.clone());
            let db = Database::connect(options)
                .await
                .expect("postgres reachable");
            Some((db, Cleanup::Schema { admin_url, schema }))
        }
    }
}

/// Flows spread over apps, their deliveries shuffled with 20% sent twice.
pub struct Load {
    pub apps: Vec<SimApp>,
    pub flows: Vec<Flow>,
    pub deliveries: Vec<SimDelivery>,
    /// How many different deliveries there are (before the resends).
    pub distinct: usize,
}

impl Load {
    pub fn new(apps: usize, flows: usize, run: &str) -> Load {
        let apps: Vec<SimApp> = (0..apps).map(SimApp::numbered).collect();
        let flows: Vec<Flow> = (0..flows)
            .map(|n| Flow::numbered(n, apps.len(), run))
            .collect();
        let mut deliveries: Vec<SimDelivery> = flows
            .iter()
            .flat_map(|f| f.deliveries(&apps[f.app]))
            .collect();
        let distinct = deliveries.len();
        let mut rng = rand::rng();
        let again: Vec<SimDelivery> = deliveries
            .choose_multiple(&mut rng, distinct / 5)
            .cloned()
            .collect();
        deliveries.extend(again);
        deliveries.shuffle(&mut rng);
        Load {
            apps,
            flows,
            deliveries,
            distinct,
        }
    }
}

/// The delivery the HTTP edge would build from these bytes.
pub fn delivery(sim: &SimDelivery) -> Delivery {
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

/// The sum of the samples of metric `name` in Prometheus text whose labels include
/// `labels`: one sample line's value when the labels pick one, 0 when none.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
