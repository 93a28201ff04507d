//! SeaORM entities for the three tables, the queries the API and CLI share, and the
//! connection set-up.

pub mod apps;
pub mod deliveries;
pub mod deployments;
pub mod held;
pub mod page;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://deploy-tracker.db?mode=rwc";

/// How long a request waits for a database connection. While the database is down
/// the pool keeps retrying a refused connection until then, so this is how soon a
/// delivery is answered 503 in an outage: well inside the request timeout (8 s by
/// default) and GitHub's 10 s.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled connection idle this long is pinged before it is handed out; one used
/// more recently is handed out as it is. By default every checkout pinged: a round
/// trip to the database before each statement (one delivery at a time on Postgres,
/// two cores: 18 % of the server's CPU per delivery and 12 % of Postgres's). A
/// connection that broke while in use is closed, not returned; the ping is for one
/// the server or the network dropped while it sat idle.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connections in a Postgres pool (SQLite's has 4).
pub const POSTGRES_POOL_SIZE: u32 = 16;

/// Opens the pool. SQLite gets WAL, foreign keys and durable (fsync-per-commit)
/// commits on every connection; Postgres is used as configured.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    Database::connect(connect_options(url)).await
}

/// Connects and applies pending migrations: what every command does first.
pub async fn open(url: &str) -> Result<DatabaseConnection, DbErr> {
    use migration::{Migrator, MigratorTrait};
    let db = connect(url).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// The pool settings [`connect`] uses, for callers that add their own (tests set a
/// schema search path).
pub fn connect_options(url: &str) -> ConnectOptions {
    options_with(url, &[])
}

/// Opens the pool ingest's writers write through: `connections` of them, on Postgres
/// ones on which statements are planned once per connection and the plan kept
/// (`plan_cache_mode = force_generic_plan`). Ingest runs a handful of statements
/// whose texts never change, with arrays for parameters; left to choose, Postgres
/// plans the read of a batch's rows afresh for each batch, which costs more than
/// running it. The other queries keep the pool [`connect`] opens, where plans fit
/// their parameters (partial indexes, ranges).
pub async fn connect_ingest(url: &str, connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = options_with(url, &[("plan_cache_mode", "force_generic_plan")]);
    options.max_connections(connections);
    Database::connect(options).await
}

fn options_with(url: &str, settings: &[(&'static str, &'static str)]) -> ConnectOptions {
    let settings = settings.to_vec();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(ACQUIRE_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false);
    if is_sqlite_url(url) {
        // Writers are serialised in-process; readers run beside them under WAL.
        options
            .max_connections(4)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|opts| {
                // Temporary files in memory: a multi-row write inside a transaction
                // keeps a statement journal (to undo just that statement), which
                // otherwise is a file created, written and deleted for each batch.
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .pragma("temp_store", "memory")
            });
    } else {
        // Every statement the service runs is meant to be driven by an index. Left to
        // itself, the planner of a new database (tables never analyzed, tiny)
        // prepares sequential scans, and the connection keeps those cached plans
        // while the tables grow, until autovacuum next analyzes them: each batch of
        // the first minutes then reads whole tables.
        options
            .max_connections(POSTGRES_POOL_SIZE)
            .min_connections(1)
            .map_sqlx_postgres_opts(move |opts| {
                opts.options([("enable_seqscan", "off")].iter().chain(&settings).copied())
            });
    }
    options
}

pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// An SQLite database that lives in memory: each pool opened from its URL is a
/// database of its own.
pub fn is_memory_sqlite_url(url: &str) -> bool {
    is_sqlite_url(url) && (url.contains(":memory:") || url.contains("mode=memory"))
}

/// Timestamps are stored as UTC without a zone (the seed's `TIMESTAMP`) and shown
/// as RFC 3339 UTC.
pub(crate) fn utc<S: serde::Serializer>(
    t: &chrono::NaiveDateTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        &t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

/// [`utc`] for a nullable timestamp: `null` when unknown.
pub(crate) fn utc_option<S: serde::Serializer>(
    t: &Option<chrono::NaiveDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => utc(t, s),
        None => s.serialize_none(),
    }
}
