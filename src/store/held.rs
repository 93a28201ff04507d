//! A Postgres connection kept out of its pool between one writer's batches.
//!
//! sqlx tests a pooled connection with a round trip (a `Sync` answered by
//! `ReadyForQuery`) each time it goes back to its pool, whatever the pool's settings:
//! for ingest, a round trip more per statement (one delivery at a time, two cores:
//! 19 % of the server's CPU per delivery and 13 % of Postgres's). A writer keeps one
//! connection instead, from batch to batch, and gives it back (to be tested and
//! reused, or closed) when a statement on it fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Connection, Executor, Postgres};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_sqlx::SqlxValues;

/// A connection taken from a pool, used as a [`ConnectionTrait`] one statement at a
/// time.
pub struct Held {
    conn: tokio::sync::Mutex<PoolConnection<Postgres>>,
    last_used: Instant,
}

impl Held {
    /// A connection from `db`'s pool.
    pub async fn acquire(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let conn = db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
        Ok(Self {
            conn: tokio::sync::Mutex::new(conn),
            last_used: Instant::now(),
        })
    }

    /// A connection from `db`'s pool that answered a ping: the pool hands out a
    /// connection used less than [`super::PING_IF_IDLE_FOR`] ago untested, and after
    /// a restart of the server those are all gone.
    pub async fn acquire_live(db: &DatabaseConnection) -> Result<Self, DbErr> {
        loop {
            if let Some(held) = Self::acquire(db).await?.checked(Duration::ZERO).await {
                return Ok(held);
            }
        }
    }

    /// This connection if it can still be used: pinged first when it sat idle
    /// `idle` or longer (the server or the network may have dropped it meanwhile,
    /// as the pool's own check does for its connections); `None` when that failed.
    pub async fn checked(self, idle: Duration) -> Option<Self> {
        if self.last_used.elapsed() < idle {
            return Some(self);
        }
        let mut conn = self.conn.into_inner();
        match conn.ping().await {
            Ok(()) => Some(Self {
                conn: tokio::sync::Mutex::new(conn),
                last_used: Instant::now(),
            }),
            Err(err) => {
                tracing::info!(%err, "an ingest connection kept idle had gone; taking another");
                conn.close_on_drop();
                None
            }
        }
    }

    /// Notes that it was used just now.
    pub fn touch(&mut self) {
        self.last_used = Instant::now();
    }
}

/// The statement as sqlx runs it, its values moved, not copied (a write's carry its
/// batch's bodies).
fn query(stmt: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let values = stmt.values.unwrap_or(sea_orm::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql), SqlxValues(values))
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

#[async_trait::async_trait]
impl ConnectionTrait for Held {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        query(stmt)
            .execute(&mut **conn)
            .await
            .map(ExecResult::from)
            .map_err(exec_err)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .map(ExecResult::from)
            .map_err(exec_err)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        query(stmt)
            .fetch_optional(&mut **conn)
            .await
            .map(|row| row.map(QueryResult::from))
            .map_err(query_err)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        query(stmt)
            .fetch_all(&mut **conn)
            .await
            .map(|rows| rows.into_iter().map(QueryResult::from).collect())
            .map_err(query_err)
    }
}
