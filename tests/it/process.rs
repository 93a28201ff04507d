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
        Self::start_at("127.0.0.1:0", env)
    }

    /// On a given address: a restart on the port a client already knows.
    pub fn start_at(bind: &str, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", bind])
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

    /// `kill -9`: no shutdown, no flush, connections dropped mid-transaction.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
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
            crate::helpers::run_admin_sql(&admin, &sql);
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

/// One signed delivery to the server at `addr`; its status and the receipt's ledger id.
pub async fn post(
    client: &reqwest::Client,
    addr: &str,
    d: &SimDelivery,
) -> Result<(u16, Option<uuid::Uuid>), reqwest::Error> {
    let secret = match d.provider {
        deploy_tracker::webhooks::Provider::Github => GITHUB_SECRET,
        deploy_tracker::webhooks::Provider::Vercel => VERCEL_SECRET,
    };
    let (name, value) = d.signature(secret.as_bytes());
    let response = client
        .post(format!("http://{addr}{}", d.path()))
        .header("content-type", "application/json")
        .header("x-github-event", d.event)
        .header("x-github-delivery", d.delivery_id.as_str())
        .header(name, value)
        .body(d.body.clone())
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let id = body["id"].as_str().and_then(|id| id.parse().ok());
    Ok((status, id))
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

/// A throwaway Postgres cluster of its own (initdb + pg_ctl in a temp dir, on a free
/// port), for tests that take the database away. Never the shared server.
pub struct PgCluster {
    dir: std::path::PathBuf,
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PgCluster {
    /// `None` when the Postgres binaries are not installed.
    pub fn start() -> Option<PgCluster> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PgCluster { dir, port };
        // initdb and postgres refuse to run as root: the cluster belongs to postgres.
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres", &cluster.dir.display().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = cluster.data();
        cluster.as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            &data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]);
        cluster.start_again();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a Postgres tool as the postgres user when the tests run as root.
    fn as_postgres(&self, args: &[&str]) {
        if let Err(e) = self.try_as_postgres(args) {
            panic!("{e}");
        }
    }

    fn try_as_postgres(&self, args: &[&str]) -> Result<(), String> {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(args);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts (or restarts) the cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    /// Stops the cluster at once: sessions are cut, open transactions roll back.
    pub fn stop(&self) {
        self.as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        let data = self.data();
        let _ = self.try_as_postgres(&[&pg_ctl, "-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
