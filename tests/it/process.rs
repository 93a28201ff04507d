//! The real binary as a child process: `deploy-tracker serve` on a free port, and a
//! scratch database a process can reach by URL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_tracker::simulate::{SimApp, SimDelivery};

use crate::helpers::{Backend, GITHUB_SECRET, VERCEL_SECRET, postgres_url};

pub const BIN: &str = env!("CARGO_BIN_EXE_deploy-tracker");

/// A `deploy-tracker serve` process on a free port, its stderr collected.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
            .env("VERCEL_WEBHOOK_SECRET", VERCEL_SECRET)
            .env("API_TOKEN", "test-token")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = tx.send(value["fields"]["address"].as_str().unwrap().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
        Server { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.log.lock().unwrap().clone());
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A database URL for a server process: a temp SQLite file, or a fresh Postgres
/// database (removed by the returned guard).
pub struct ScratchDb {
    pub url: String,
    drop_sql: Option<(String, String)>,
}

impl ScratchDb {
    pub async fn new(backend: Backend) -> Option<ScratchDb> {
        let name = format!("it_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => Some(ScratchDb {
                url: format!(
                    "sqlite://{}/{name}.db?mode=rwc",
                    std::env::temp_dir().display()
                ),
                drop_sql: None,
            }),
            Backend::Postgres => {
                let admin = postgres_url()?;
                let db = sea_orm::Database::connect(&admin).await.unwrap();
                use sea_orm::ConnectionTrait;
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                db.close().await.unwrap();
                let base = admin.rsplit_once('/').unwrap().0;
                Some(ScratchDb {
                    url: format!("{base}/{name}"),
                    drop_sql: Some((
                        admin,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    )),
                })
            }
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Some((admin, sql)) = self.drop_sql.take() {
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        use sea_orm::ConnectionTrait;
                        if let Ok(db) = sea_orm::Database::connect(&admin).await {
                            let _ = db.execute_unprepared(&sql).await;
                        }
                    })
            })
            .join();
        } else if let Some(path) = self
            .url
            .strip_prefix("sqlite://")
            .and_then(|p| p.split('?').next())
        {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

pub async fn post(
    client: &reqwest::Client,
    server: &Server,
    d: &SimDelivery,
) -> Result<u16, reqwest::Error> {
    let secret = match d.provider {
        deploy_tracker::webhooks::Provider::Github => GITHUB_SECRET,
        deploy_tracker::webhooks::Provider::Vercel => VERCEL_SECRET,
    };
    let (name, value) = d.signature(secret.as_bytes());
    let response = client
        .post(server.url(d.path()))
        .header("content-type", "application/json")
        .header("x-github-event", d.event)
        .header("x-github-delivery", d.delivery_id.as_str())
        .header(name, value)
        .body(d.body.clone())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

pub async fn register(client: &reqwest::Client, server: &Server, app: &SimApp) {
    let response = client
        .post(server.url("/api/apps"))
        .bearer_auth("test-token")
        .json(&app.registration())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}
