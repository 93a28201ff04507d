//! Command-line flags and their environment variables, validated at start-up.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::http::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENCY};
use crate::store::DEFAULT_DATABASE_URL;
use crate::webhooks::signature::Secrets;

#[derive(Debug, Parser)]
#[command(
    name = "deploy-tracker",
    version,
    about = "An exact history of every staging and production deployment, from verified GitHub and Vercel webhooks"
)]
pub struct Cli {
    /// Where the history lives: a SQLite file or a PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Log format: pretty for people, json for log systems (default: pretty on a terminal, else json).
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// The app registry.
    #[command(subcommand)]
    Apps(AppsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an app.
    Add(AddApp),
    /// List registered apps, newest first.
    List,
}

#[derive(Debug, Args)]
pub struct AddApp {
    #[arg(long)]
    pub name: String,
    /// The GitHub repository as owner/name.
    #[arg(long)]
    pub github_repo: String,
    #[arg(long)]
    pub vercel_project_id: Option<String>,
    /// Defaults to `staging`.
    #[arg(long)]
    pub staging_branch: Option<String>,
    /// Defaults to `main`.
    #[arg(long)]
    pub production_branch: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub secrets: SecretArgs,

    /// Bearer token for /api; without it, /api is read-only.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Largest webhook body accepted, in bytes (GitHub's cap is 25 MiB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// A request not answered in this many milliseconds gets 503 (GitHub gives up at 10 s).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 8000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// Requests in flight beyond this are refused with 503 instead of queued.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY, value_parser = parse_positive)]
    pub max_concurrency: usize,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a positive whole number")),
        Ok(n) => Ok(n),
    }
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// GitHub webhook secret(s), comma-separated for rotation.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,

    /// Vercel webhook secret(s), comma-separated for rotation.
    #[arg(long, env = "VERCEL_WEBHOOK_SECRET", hide_env_values = true)]
    pub vercel_webhook_secret: Option<String>,
}

impl SecretArgs {
    /// Parses both lists. An unset variable means "not configured" (that provider
    /// answers 503); a set but empty entry is a configuration error.
    pub fn parse(&self) -> Result<(Secrets, Secrets), String> {
        let parse = |name: &str, value: &Option<String>| {
            match value {
            None => Ok(Secrets::default()),
            Some(list) => Secrets::parse(list).map_err(|_| {
                format!("{name} has an empty entry; give one secret or a comma-separated list without blanks")
            }),
        }
        };
        Ok((
            parse("GITHUB_WEBHOOK_SECRET", &self.github_webhook_secret)?,
            parse("VERCEL_WEBHOOK_SECRET", &self.vercel_webhook_secret)?,
        ))
    }
}
