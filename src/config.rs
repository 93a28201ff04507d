//! Command-line flags and their environment variables, validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::clients::github::{self, Hook, parse_hook_id};
use crate::clients::vercel::{self, VercelClient, VercelConfig, VercelError};
use crate::clients::{Token, parse_duration};
use crate::deployments::ingest::Outcome;
use crate::http::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENCY};
use crate::store::DEFAULT_DATABASE_URL;
use crate::store::deployments::{Environment, Status};
use crate::store::page::Limit;
use crate::sweep::{DEFAULT_STUCK_AFTER, StuckAfter, Sweeper};
use crate::webhooks::Provider;
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

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// The app registry.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Deployment history.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// The ledger of verified deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Send saved payloads (fixtures, exports, scenarios) to a server, or straight into the database.
    Replay(ReplayArgs),
    /// Apply stored deliveries again, in the order they were received (e.g. after `apps add`).
    Reprocess(ReprocessArgs),
    /// Settle or time out deployments stuck in pending or building, once, and print what changed.
    Sweep(SweepArgs),
    /// DORA figures of a window: deploys per day, change failure rate, build time, time to restore, lead time.
    Stats(StatsArgs),
    /// GitHub's API: deliveries GitHub never retried.
    #[command(subcommand)]
    Github(GithubCommand),
}

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Ingest (or have GitHub redeliver) the hook's deliveries the ledger lacks.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["repo", "org"])))]
pub struct BackfillArgs {
    /// The repository whose hook it is, as owner/name.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Or the organisation whose hook it is.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// The hook's id (in the hook's settings URL, .../hooks/ID).
    #[arg(long, value_parser = parse_hook_id)]
    pub hook_id: u64,
    /// How far back to look (GitHub keeps deliveries for 3 days): 90s, 30m, 72h, 3d.
    #[arg(long, default_value = "72h", value_parser = parse_duration)]
    pub since: Duration,
    /// Ask GitHub to send each missing delivery again instead of fetching it.
    #[arg(long)]
    pub redeliver: bool,
    /// List what would be done, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub api: GithubApiArgs,
}

impl BackfillArgs {
    pub fn hook(&self) -> Result<Hook, String> {
        match (&self.repo, &self.org) {
            (Some(repo), None) => {
                let (owner, name) = repo
                    .split_once('/')
                    .ok_or_else(|| format!("--repo {repo:?} must be owner/name"))?;
                Hook::repository(owner, name, self.hook_id)
            }
            (None, Some(org)) => Hook::organization(org, self.hook_id),
            _ => Err("give either --repo OWNER/NAME or --org ORG".into()),
        }
    }
}

/// How to reach GitHub's API.
#[derive(Debug, Args)]
pub struct GithubApiArgs {
    /// A GitHub token that may read the hook's deliveries (see the README for scopes).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Token>,
    /// The API's root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    #[arg(long, env = "GITHUB_API_URL", default_value = github::DEFAULT_API_URL)]
    pub github_api_url: String,
    /// Longest one API answer may take (it is then retried, twice).
    #[arg(long, env = "GITHUB_API_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub github_api_timeout: Duration,
}

impl GithubApiArgs {
    pub fn client(&self) -> Result<github::Client, String> {
        let token = self.github_token.clone().ok_or(
            "GITHUB_TOKEN is not set: create a token that may read the hook's deliveries (see the README) and set it",
        )?;
        let mut settings = github::Settings::new(&self.github_api_url, token);
        settings.timeout = self.github_api_timeout;
        github::Client::new(settings)
    }
}

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// List deployments, newest first.
    List(ListDeployments),
    /// Show the newest deployment of an app to an environment.
    Latest(LatestDeployment),
}

#[derive(Debug, Args)]
pub struct ListDeployments {
    /// Only this app, by name or id.
    #[arg(long)]
    pub app: Option<String>,
    /// Only staging or production.
    #[arg(long)]
    pub environment: Option<Environment>,
    /// Only pending, building, ready or failed.
    #[arg(long)]
    pub status: Option<Status>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Args)]
pub struct LatestDeployment {
    /// The app, by name or id.
    #[arg(long)]
    pub app: String,
    /// staging or production.
    #[arg(long)]
    pub environment: Environment,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first (without their bodies).
    List(ListDeliveries),
    /// Write stored deliveries' raw bodies out as fixture files `replay` reads back.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ListDeliveries {
    /// Only applied, duplicate, ignored, unmatched, stale or malformed.
    #[arg(long)]
    pub outcome: Option<Outcome>,
    /// Only github or vercel.
    #[arg(long)]
    pub provider: Option<Provider>,
    #[command(flatten)]
    pub page: PageArgs,
}

/// Paging and output flags every list takes.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Rows to show, 1 to 500.
    #[arg(long, default_value = "50")]
    pub limit: Limit,
    /// Continue after a previous page (its `next page:` line, or `nextCursor` in JSON).
    #[arg(long)]
    pub cursor: Option<crate::store::page::Cursor>,
    /// Print the page as the API's JSON (`{items, nextCursor}`) instead of a table.
    #[arg(long)]
    pub json: bool,
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

    /// Hooks to backfill periodically, comma-separated: owner/repo:HOOK_ID for a
    /// repository's hook, org:ORG:HOOK_ID for an organisation's (needs GITHUB_TOKEN).
    #[arg(long, env = "GITHUB_BACKFILL", value_delimiter = ',', value_parser = clap::value_parser!(Hook))]
    pub github_backfill: Vec<Hook>,

    /// How often to backfill those hooks: 90s, 10m, 1h.
    #[arg(long, env = "GITHUB_BACKFILL_EVERY", default_value = "10m", value_parser = parse_duration)]
    pub github_backfill_every: Duration,

    #[command(flatten)]
    pub github_api: GithubApiArgs,

    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Write transactions ingest runs at once on Postgres, each batching the deliveries
    /// of its share of the apps (default: one per two cores, at least one). SQLite
    /// always uses one.
    #[arg(long, env = "INGEST_WRITERS", value_parser = parse_positive)]
    pub ingest_writers: Option<usize>,
}

/// The sweeper's settings, shared by `serve` (its background task) and `sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// A pending or building deployment with no event for this long is settled from
    /// Vercel or fails with reason timeout: 90s, 30m, 2h, 1h30m, or off.
    #[arg(long, env = "STUCK_AFTER", default_value = DEFAULT_STUCK_AFTER)]
    pub stuck_after: StuckAfter,

    #[command(flatten)]
    pub vercel: VercelArgs,
}

impl SweepArgs {
    /// The sweeper these settings describe; a Vercel client only with a token.
    pub fn sweeper(&self) -> Result<Sweeper, String> {
        Ok(Sweeper {
            stuck_after: self.stuck_after.clone(),
            vercel: self.vercel.client().map_err(|e| e.to_string())?,
        })
    }
}

/// Vercel's REST API, for looking up a stuck deployment before it times out.
#[derive(Args)]
pub struct VercelArgs {
    /// Vercel API token; without it, stuck deployments time out without a look-up.
    #[arg(long, env = "VERCEL_TOKEN", hide_env_values = true)]
    pub vercel_token: Option<String>,

    /// Vercel's API (a proxy or a test server may stand in).
    #[arg(long, env = "VERCEL_API_URL", default_value = vercel::DEFAULT_API_URL)]
    pub vercel_api_url: String,

    /// The team the deployments belong to (sent as `teamId`).
    #[arg(long, env = "VERCEL_TEAM_ID")]
    pub vercel_team_id: Option<String>,

    /// A look-up not answered in this many milliseconds counts as unreachable.
    #[arg(long, env = "VERCEL_TIMEOUT_MS", default_value_t = vercel::DEFAULT_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub vercel_timeout_ms: u64,
}

impl VercelArgs {
    pub fn client(&self) -> Result<Option<VercelClient>, VercelError> {
        let Some(token) = self
            .vercel_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(None);
        };
        VercelClient::new(VercelConfig {
            token: token.to_owned(),
            api_url: self.vercel_api_url.clone(),
            team_id: self.vercel_team_id.clone(),
            timeout: std::time::Duration::from_millis(self.vercel_timeout_ms),
        })
        .map(Some)
    }
}

impl std::fmt::Debug for VercelArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelArgs")
            .field("vercel_token", &self.vercel_token.as_ref().map(|_| "***"))
            .field("vercel_api_url", &self.vercel_api_url)
            .field("vercel_team_id", &self.vercel_team_id)
            .field("vercel_timeout_ms", &self.vercel_timeout_ms)
            .finish()
    }
}

/// Postgres ingest writers when `INGEST_WRITERS` is not set: one per two cores, at
/// least one. Each writer's batch keeps a Postgres backend and about half of one of
/// this process's threads busy, and the fewer the writers the larger their batches:
/// a batch costs Postgres about 1.1 ms of CPU whatever its size, plus about 175 µs a
/// delivery (measured at c = 32 on 2 cores: `bench/ROUNDS.md`, second round), so on
/// 2 cores one writer answers more deliveries a second than two or four.
pub fn default_ingest_writers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
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

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Fixture files, folders (their *.json and *.form files, recursively, in path
    /// order) or scenario files (*.scenario, *.txt: one path per line, relative to it).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// A running server to POST to (http://host:port); without it, deliveries are
    /// applied to the database at DATABASE_URL directly.
    #[arg(long, env = "REPLAY_URL")]
    pub url: Option<String>,

    /// New delivery ids, Vercel deployment ids and commit SHAs for this run, so the
    /// same payloads make a second history instead of duplicates.
    #[arg(long, env = "REPLAY_FRESH_IDS")]
    pub fresh_ids: bool,

    /// Milliseconds to wait between deliveries.
    #[arg(long, env = "REPLAY_DELAY_MS", default_value_t = 0)]
    pub delay: u64,

    #[command(flatten)]
    pub secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Ledger row ids (the `id` of a delivery, not the provider's delivery id).
    pub ids: Vec<uuid::Uuid>,

    /// Export every delivery with this outcome instead (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub outcome: Vec<Outcome>,

    /// Instead of ids: only deliveries received at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::NaiveDateTime>,

    /// Write the one delivery given to exactly this file (`-` for standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Folder to write `<provider>/<event>.<delivery id>.json` files into.
    #[arg(long, env = "EXPORT_DIR", default_value = "fixtures/captured")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// Only deliveries with this outcome (repeatable, or comma-separated); default: all.
    #[arg(long, env = "REPROCESS_OUTCOME", value_delimiter = ',')]
    pub outcome: Vec<Outcome>,

    /// Only deliveries received at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, env = "REPROCESS_SINCE", value_parser = parse_time)]
    pub since: Option<chrono::NaiveDateTime>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this app, by name or id.
    #[arg(long)]
    pub app: Option<String>,
    /// Only staging or production.
    #[arg(long)]
    pub environment: Option<Environment>,
    /// Rows created at or after this time (RFC 3339 or YYYY-MM-DD, UTC); default: 30 days before --until.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::NaiveDateTime>,
    /// Rows created before this time; default: now.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<chrono::NaiveDateTime>,
    /// Print the JSON of `GET /api/stats` instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A point in time as a flag gives it: RFC 3339, or a date meaning its midnight UTC.
pub fn parse_time(s: &str) -> Result<chrono::NaiveDateTime, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .map_err(|_| {
            format!(
                "{s:?} is not a time: give RFC 3339 (2026-11-25T10:00:00Z) or a date (2026-11-25)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vercel_token_is_redacted_and_the_sweeper_settings_parse() {
        let cli = Cli::try_parse_from([
            "deploy-tracker",
            "sweep",
            "--stuck-after",
            "2h",
            "--vercel-token",
            "vc_very_secret",
            "--vercel-team-id",
            "team_1",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        assert!(!debug.contains("vc_very_secret"), "{debug}");
        let Command::Sweep(args) = cli.command else {
            panic!("not the sweep command")
        };
        assert_eq!(args.stuck_after.to_string(), "2h");
        let sweeper = args.sweeper().unwrap();
        assert!(sweeper.vercel.is_some());
        assert!(!format!("{sweeper:?}").contains("vc_very_secret"));

        let err = Cli::try_parse_from(["deploy-tracker", "sweep", "--stuck-after", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
    }
}
