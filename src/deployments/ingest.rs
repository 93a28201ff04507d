//! Ingest: verified deliveries become ledger rows and state changes, each delivery's
//! committed together with its row, in one transaction.
//!
//! Deliveries that arrive together share that transaction (group commit): whoever
//! gets a writer's turn takes every delivery queued for it so far, reads what they can
//! touch (the apps they name, then the deployment rows they could look up), applies
//! them one after another in memory ([`super::plan`]), writes the changed rows and the
//! ledger rows, and only once that has committed answers each delivery.
//!
//! On Postgres a batch first goes without a transaction ([`attempt_unlocked`]): it
//! reads unlocked (its apps, unless its writer kept them from an earlier batch) and
//! writes in one statement that commits on its own, on condition that its keys still
//! name the apps it planned with and none of them changed version since
//! ([`WRITE_UNLOCKED`]).
//! When one did, or the batch must relink chains of ready rows in the database, it is
//! done again in a transaction that locks its apps first (in id order) and raises
//! their versions, as every other writer of an app's rows does ([`lock_app`]). On
//! SQLite a batch is always such a transaction (`BEGIN IMMEDIATE`, one writer at a
//! time). A delivery recorded before makes the ledger insert come up short (or, in
//! the unlocked statement, fail); the batch is then rolled back and done again,
//! looking for such copies first.
//!
//! On Postgres there are several writers (`INGEST_WRITERS`), each with a queue and a
//! turn of its own, so that several backends work at once. A delivery joins the
//! queue of the writer its app's key hashes to: the repository it names, lowercased,
//! else its Vercel project id. So deliveries about one app meet in one queue, and the
//! writers' batches touch disjoint apps. Where the keys of one app differ (a Vercel
//! event without repository meta, an app whose project builds another repository),
//! two writers may hold deliveries of one app; their batches then meet on the app's
//! version and row lock, as two replicas' do, and the unique keys decide the rest.
//!
//! Order and repetition do not matter: a duplicate delivery id changes nothing, status
//! only moves forward (see [`super::state`]), missing fields are only ever filled, and
//! "createdAt" is the earliest event time seen for the deployment.
//!
//! This file holds the writers and the batches' course; the statements a batch reads
//! with are in `ingest/read.rs`, those it writes with in `ingest/write.rs`.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use chrono::NaiveDateTime;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnAcquireErr, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    RuntimeErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::app_cache::AppCache;
pub use super::plan::Outcome;
use super::plan::{AppKeys, Effect, HEAD_WINDOW, Snapshot};
use crate::store::held::Held;
use crate::store::{ACQUIRE_TIMEOUT, PING_IF_IDLE_FOR, deliveries};
use crate::webhooks::{Delivery, Provider, now};

mod read;
mod write;

pub use read::{APPS_SQLITE, LOOKUP_POSTGRES, LOOKUP_SQLITE, RECORDED_SQLITE};
use read::{
    LedgerKey, Recorded, count_copies, duplicate_of, ledger_key, read_apps, read_rows,
    read_snapshot, recorded,
};
pub(crate) use read::{link_previous, lock_app};
pub use write::{WRITE_UNLOCKED, write_values};
use write::{ledger_reason, write, write_rows};

/// The most deliveries one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 64;

/// The most body bytes one transaction takes, unless its first delivery alone has
/// more: a batch's bodies are copied into its statement, so this bounds the memory
/// a burst of large deliveries costs.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Every this many deliveries committed, this process makes sure Postgres's
/// statistics of the tables ingest reads are not stale (see [`analyze_if_stale`]).
const ANALYZE_EVERY: u64 = 2_000;

/// What ingest tells the caller about one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The ledger row's id.
    pub id: Uuid,
    pub outcome: Outcome,
    pub reason: String,
    pub app_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
}

/// What reprocessing one stored delivery left in its ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprocessed {
    /// The ledger row's id.
    pub id: Uuid,
    pub provider: Provider,
    pub event_type: String,
    /// The row's outcome before this run.
    pub previous_outcome: String,
    /// The row's outcome, reason and deployment now.
    pub outcome: String,
    pub reason: String,
    pub deployment_id: Option<Uuid>,
    /// Whether the ledger row was rewritten.
    pub changed: bool,
}

/// Applies deliveries to the database. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Ingest {
    db: DatabaseConnection,
    /// What batches are written through: `db`, or on Postgres under `serve` a pool
    /// of the writers' own (see [`Ingest::open`]).
    write_db: DatabaseConnection,
    /// Never empty; one on SQLite.
    writers: Arc<[Arc<Writer>]>,
    /// Where batches run: on Postgres under `serve` a thread of their own (see
    /// [`WriterThread`]), else the caller's runtime.
    thread: Option<Arc<WriterThread>>,
}

/// A thread with a runtime of its own, on which the writers' batches and their pool's
/// connections run. A batch is a chain of round trips, and the next batch waits for
/// it: on the server's runtime each reply waited behind the HTTP tasks ready before
/// it (a wake-up took most of a millisecond under load, against a statement of
/// 0.1 ms), while this thread is woken by the kernel as soon as a reply comes. The
/// thread ends when the last clone of the [`Ingest`] is dropped.
struct WriterThread {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl WriterThread {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ingest-writers".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

/// A group-commit queue, and the turn to drain it: one write transaction at a time
/// per writer. SQLite has one writer at a time anyway, and queueing here rather
/// than inside SQLite turns lock contention into an orderly queue. On Postgres each
/// writer owns a share of the apps (see the module's comment), so writers seldom
/// wait for each other's app locks.
struct Writer {
    turn: Arc<Semaphore>,
    /// How many wait for the turn for other work than the queue's (see
    /// [`Writer::turn_for_other_work`]): while any do, a batch gives the turn back
    /// when it ends rather than going on with the queue.
    others_waiting: AtomicUsize,
    queue: std::sync::Mutex<VecDeque<Queued>>,
    /// Deliveries committed by this process (one count shared by its writers).
    committed: Arc<AtomicU64>,
    /// Whether recent batches held copies of recorded deliveries (a sender resending):
    /// while they do, batches look for copies before writing instead of after.
    expect_copies: AtomicBool,
    /// On Postgres, the apps its batches read, for the batches after them (see
    /// [`attempt_unlocked`]).
    apps: std::sync::Mutex<AppCache>,
    /// On Postgres, the connection its unlocked batches run on, kept from one batch
    /// to the next (see [`Held`]).
    held: std::sync::Mutex<Option<Held>>,
}

struct Queued {
    delivery: Delivery,
    /// When it joined the queue: it waits for a connection until [`ACQUIRE_TIMEOUT`]
    /// after that, however long it queued.
    since: Instant,
    answer: oneshot::Sender<Result<Receipt, DbErr>>,
}

impl Writer {
    /// Its [`AppCache`], for a moment.
    fn apps(&self) -> std::sync::MutexGuard<'_, AppCache> {
        self.apps.lock().expect("app cache lock")
    }

    /// Its kept connection, checked (see [`Held::checked`]), or else a new one from
    /// `db`'s pool; and whether it was the kept one. Given back with [`Self::keep`]
    /// when the batch went well.
    async fn connection(&self, db: &DatabaseConnection) -> Result<(Held, bool), DbErr> {
        let kept = self.held.lock().expect("held lock").take();
        if let Some(held) = kept
            && let Some(held) = held.checked(PING_IF_IDLE_FOR).await
        {
            return Ok((held, true));
        }
        Ok((Held::acquire(db).await?, false))
    }

    /// Keeps a connection for the next batch.
    fn keep(&self, mut held: Held) {
        held.touch();
        *self.held.lock().expect("held lock") = Some(held);
    }

    /// The turn, for work other than the queue's: the batches going on from one to
    /// the next let it have the turn after the batch in hand.
    async fn turn_for_other_work(&self) -> tokio::sync::SemaphorePermit<'_> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.others_waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.others_waiting);
        self.turn.acquire().await.expect("the turn is never closed")
    }

    /// The next batch, oldest first: up to [`MAX_BATCH`] deliveries and
    /// [`MAX_BATCH_BYTES`] of bodies, and at least one delivery.
    fn take(&self) -> Vec<Queued> {
        let mut queue = self.queue.lock().expect("queue lock");
        let mut bytes = 0;
        let n = queue
            .iter()
            .take(MAX_BATCH)
            .take_while(|queued| {
                bytes += queued.delivery.body.len();
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1)
            .min(queue.len());
        queue.drain(..n).collect()
    }
}

/// Why a batch's transaction was rolled back.
enum Abort {
    /// The database refused a statement or could not be reached.
    Db(DbErr),
    /// A ledger row was recorded by another transaction after this one looked: a copy
    /// of one of the deliveries, sent to another replica at the same time.
    Raced,
}

impl From<DbErr> for Abort {
    fn from(err: DbErr) -> Self {
        Abort::Db(err)
    }
}

impl Ingest {
    /// Ingest with the default number of writers
    /// ([`crate::config::default_ingest_writers`] on Postgres, one on SQLite).
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_writers(db, None)
    }

    /// Ingest with `writers` writers on Postgres (the default when `None`); SQLite,
    /// which writes one transaction at a time, always gets one.
    pub fn with_writers(db: DatabaseConnection, writers: Option<usize>) -> Self {
        let count = if db.get_database_backend() == DbBackend::Postgres {
            writers
                .unwrap_or_else(crate::config::default_ingest_writers)
                .max(1)
        } else {
            if writers.is_some_and(|n| n > 1) {
                tracing::info!("SQLite writes one transaction at a time: one ingest writer");
            }
            1
        };
        let committed = Arc::new(AtomicU64::new(0));
        let writers = (0..count)
            .map(|_| {
                Arc::new(Writer {
                    turn: Arc::new(Semaphore::new(1)),
                    others_waiting: AtomicUsize::new(0),
                    queue: std::sync::Mutex::new(VecDeque::new()),
                    committed: committed.clone(),
                    expect_copies: AtomicBool::new(false),
                    apps: std::sync::Mutex::new(AppCache::default()),
                    held: std::sync::Mutex::new(None),
                })
            })
            .collect();
        Self {
            write_db: db.clone(),
            db,
            writers,
            thread: None,
        }
    }

    /// Ingest as `serve` runs it: on Postgres, its writers run on a thread of their
    /// own ([`WriterThread`]) and write through a pool of their own, two connections
    /// each (one batch committing while the next begins), on which the ingest
    /// statements keep one plan ([`crate::store::connect_ingest`]); on SQLite, its
    /// writer writes through a connection of its own; otherwise as
    /// [`Self::with_writers`].
    pub async fn open(
        db: DatabaseConnection,
        url: &str,
        writers: Option<usize>,
    ) -> Result<Self, DbErr> {
        let mut ingest = Self::with_writers(db, writers);
        if ingest.db.get_database_backend() == DbBackend::Postgres {
            let thread = WriterThread::start().map_err(|err| {
                DbErr::Custom(format!("could not start the writers' thread: {err}"))
            })?;
            let connections = 2 * ingest.writers.len() as u32 + 1;
            let url = url.to_owned();
            // Connected from the thread, so that the connections' replies wake it.
            ingest.write_db = thread
                .handle
                .spawn(async move { crate::store::connect_ingest(&url, connections).await })
                .await
                .map_err(|err| DbErr::Custom(format!("the writers' thread failed: {err}")))??;
            ingest.thread = Some(Arc::new(thread));
        } else if !crate::store::is_memory_sqlite_url(url) {
            // One connection of the writer's own. A connection that finds the database
            // written by another since its last transaction drops its whole page cache,
            // so batches spread over the pool read every page they touch again; on one
            // connection the pages stay cached from one batch to the next. (An
            // in-memory database is one per pool: it keeps the shared pool.)
            ingest.write_db = crate::store::connect_ingest(url, 1).await?;
        }
        Ok(ingest)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// How many writers this ingest has.
    pub fn writers(&self) -> usize {
        self.writers.len()
    }

    /// Which writer's queue a delivery joins (0 up to [`Self::writers`]): by a hash of
    /// the repository its event names (lowercased, as apps match it), else of its
    /// Vercel project id, else (it names no app) of its delivery id. Copies of a
    /// delivery meet in one queue.
    pub fn writer_of(&self, delivery: &Delivery) -> usize {
        if self.writers.len() == 1 {
            return 0;
        }
        let keys = AppKeys::of([&delivery.event]);
        let mut hasher = DefaultHasher::new();
        match keys.repositories.first().or(keys.projects.first()) {
            Some(key) => key.hash(&mut hasher),
            None => delivery.delivery_id.hash(&mut hasher),
        }
        (hasher.finish() % self.writers.len() as u64) as usize
    }

    /// Records the delivery and applies its event. Returns only once both are
    /// committed; an error means nothing of it was written.
    pub async fn ingest(&self, delivery: &Delivery) -> Result<Receipt, DbErr> {
        let abandoned = || Err(DbErr::Custom("the write batch was abandoned".into()));
        let (answer, mut answered) = oneshot::channel();
        let writer = &self.writers[self.writer_of(delivery)];
        writer.queue.lock().expect("queue lock").push_back(Queued {
            delivery: delivery.clone(),
            since: Instant::now(),
            answer,
        });
        loop {
            tokio::select! {
                biased;
                receipt = &mut answered => return receipt.unwrap_or_else(|_| abandoned()),
                turn = writer.turn.clone().acquire_owned() => {
                    let turn = turn.expect("the turn is never closed");
                    let batch = writer.take();
                    if batch.is_empty() {
                        // An earlier batch took this delivery and answers it when it ends.
                        drop(turn);
                        return answered.await.unwrap_or_else(|_| abandoned());
                    }
                    // A task of its own, so a caller that gives up (a request
                    // timeout) does not abandon the others' deliveries mid-batch.
                    let batch = commit_batches(self.write_db.clone(), writer.clone(), batch, turn);
                    match &self.thread {
                        Some(thread) => drop(thread.handle.spawn(batch)),
                        None => drop(tokio::spawn(batch)),
                    }
                }
            }
        }
    }

    /// Applies a stored delivery again (e.g. after its app was registered), in one
    /// transaction with the update of its ledger row. A delivery already `applied`
    /// keeps that record unless it changes the table again, so re-running changes
    /// nothing the second time.
    pub async fn reprocess(&self, ledger_id: Uuid) -> Result<Reprocessed, DbErr> {
        // The first writer's turn: on SQLite the only one; on Postgres the ledger row's
        // and the apps' locks below are what keep this apart from the other writers.
        let _turn = self.writers[0].turn_for_other_work().await;
        let txn = begin(&self.db).await?;
        // A no-op write first: on Postgres it locks the row, so two runs take turns.
        deliveries::Entity::update_many()
            .col_expr(
                deliveries::Column::Outcome,
                Expr::col(deliveries::Column::Outcome),
            )
            .filter(deliveries::Column::Id.eq(ledger_id))
            .exec(&txn)
            .await?;
        let stored = deliveries::Entity::find_by_id(ledger_id)
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("delivery {ledger_id}")))?;
        let provider = stored.provider.parse::<Provider>().map_err(DbErr::Custom)?;
        let delivery = Delivery::from_stored(
            provider,
            &stored.delivery_id,
            &stored.event_type,
            stored.body.clone(),
        );
        let mut snapshot = read_snapshot(&txn, [&delivery.event]).await?;
        let mut effect = snapshot.apply(&delivery.event, now());
        let relinks = snapshot.link_previous();
        write_rows(&txn, &snapshot).await?;
        link_previous(&txn, &relinks).await?;
        effect.reason = ledger_reason(&effect.reason);
        let keep =
            stored.outcome == Outcome::Applied.as_str() && effect.outcome != Outcome::Applied;
        let changed = !keep
            && (stored.outcome != effect.outcome.as_str()
                || stored.reason != effect.reason
                || stored.deployment_id != effect.deployment_id);
        if changed {
            deliveries::ActiveModel {
                id: sea_orm::ActiveValue::Unchanged(ledger_id),
                outcome: Set(effect.outcome.as_str().to_owned()),
                reason: Set(effect.reason.clone()),
                deployment_id: Set(effect.deployment_id),
                ..Default::default()
            }
            .update(&txn)
            .await?;
        }
        txn.commit().await?;
        let (outcome, reason, deployment_id) = if changed {
            (
                effect.outcome.as_str().to_owned(),
                effect.reason,
                effect.deployment_id,
            )
        } else {
            (stored.outcome.clone(), stored.reason, stored.deployment_id)
        };
        Ok(Reprocessed {
            id: ledger_id,
            provider,
            event_type: stored.event_type,
            previous_outcome: stored.outcome,
            outcome,
            reason,
            deployment_id,
            changed,
        })
    }
}

/// Ingests a batch and answers each delivery, then, while it still holds the turn
/// and no other work waits for it, the batches queued meanwhile, one after
/// another. Handing the turn to a caller waiting for it instead, on the server's
/// runtime, which then hands the batch back to the writers' thread, cost two
/// wake-ups between batches: half a millisecond under load, against 1.8 ms for a
/// batch of one (`../shared/bench` at C=8: 2,413 deliveries/s against 2,012).
async fn commit_batches(
    db: DatabaseConnection,
    writer: Arc<Writer>,
    mut batch: Vec<Queued>,
    turn: OwnedSemaphorePermit,
) {
    let mut turn = Some(turn);
    loop {
        commit_batch(&db, &writer, batch, &mut turn).await;
        if turn.is_none() || writer.others_waiting.load(Ordering::SeqCst) > 0 {
            return;
        }
        batch = writer.take();
        if batch.is_empty() {
            // A delivery queued since waits for the turn, and gets it as this returns.
            return;
        }
    }
}

/// Ingests a batch and answers each delivery. When the batch's transaction is
/// refused for something one delivery or a concurrent copy can cause, the
/// deliveries are redone one transaction each, so one spoils no other. The turn is
/// given back once the batch is written, before its commit, on a locked batch on
/// Postgres (see [`attempt_batch`]); else it is still held when the answers have
/// been sent.
async fn commit_batch(
    db: &DatabaseConnection,
    writer: &Arc<Writer>,
    batch: Vec<Queued>,
    turn: &mut Option<OwnedSemaphorePermit>,
) {
    let started = Instant::now();
    let deliveries: Vec<&Delivery> = batch.iter().map(|queued| &queued.delivery).collect();
    let deadline = batch
        .iter()
        .map(|queued| queued.since)
        .min()
        .expect("a batch is never empty")
        + ACQUIRE_TIMEOUT;
    let results: Vec<Result<Receipt, DbErr>> = if deliveries.len() == 1 {
        vec![ingest_alone(db, writer, deliveries[0], deadline, turn).await]
    } else {
        match ingest_batch(db, writer, &deliveries, deadline, turn).await {
            Ok(receipts) => receipts.into_iter().map(Ok).collect(),
            Err(Abort::Db(err)) if !from_the_database(&err) => {
                let failed = |err: &DbErr| DbErr::Custom(format!("the write batch failed: {err}"));
                deliveries.iter().map(|_| Err(failed(&err))).collect()
            }
            Err(abort) => {
                if let Abort::Db(err) = &abort {
                    tracing::debug!(%err, size = deliveries.len(), "batch refused; redoing one by one");
                }
                let mut results = Vec::with_capacity(deliveries.len());
                for queued in &batch {
                    let deadline = queued.since + ACQUIRE_TIMEOUT;
                    results.push(ingest_alone(db, writer, &queued.delivery, deadline, turn).await);
                }
                results
            }
        }
    };
    tracing::debug!(
        size = batch.len(),
        took_us = started.elapsed().as_micros() as u64,
        "batch"
    );
    let committed = results.iter().filter(|result| result.is_ok()).count() as u64;
    for (queued, result) in batch.into_iter().zip(results) {
        let _ = queued.answer.send(result);
    }
    // Exactly one batch takes the count past each mark. The statistics are looked
    // at beside the batches, not in their turn.
    let before = writer.committed.fetch_add(committed, Ordering::Relaxed);
    if before / ANALYZE_EVERY != (before + committed) / ANALYZE_EVERY
        && db.get_database_backend() == DbBackend::Postgres
    {
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(err) = analyze_if_stale(&db).await {
                tracing::warn!(%err, "could not analyze the tables");
            }
        });
    }
}

/// Analyzes the tables ingest reads whose statistics in Postgres are stale: never
/// gathered, or gathered when the table held less than half the rows it holds now.
/// Returns whether it analyzed any.
///
/// The writers' statements keep one plan per connection, made from the statistics
/// of the moment and made again only when those change. Statistics gathered while a
/// table was tiny make bad plans for it once it has grown: a new database's tables,
/// never analyzed, or analyzed by autovacuum a few hundred rows in. With 217 rows
/// analyzed, the lookup's arm by commit read the whole of `deployments` through the
/// index on `environment` for every batch; with fewer, it walked every row of the
/// app through `idx_deployments_app_created` (the shared benchmark's slow runs: 1.5
/// ms for the lookup instead of 0.4 ms). Autovacuum looks at each database once a
/// minute; this looks every [`ANALYZE_EVERY`] deliveries, and an ANALYZE makes the
/// connections plan again. A table that has not grown is left alone (the apps'
/// versions change with every batch, their statistics do not). "Never gathered" is
/// the table's own `reltuples` (-1 until the first ANALYZE or VACUUM), not the
/// server's counters. A database restored, copied from a template, or whose server
/// crashed keeps its statistics but starts those counters (and the times of the last
/// ANALYZE) again; read as "never analyzed", they made the first deliveries after
/// analyze every such table whole.
pub async fn analyze_if_stale(db: &DatabaseConnection) -> Result<bool, DbErr> {
    let stale = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT string_agg(quote_ident(c.relname), ', ') AS stale \
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.relid IN (to_regclass('apps'), to_regclass('deployments'), \
                               to_regclass('webhook_deliveries')) \
               AND (c.reltuples < 0 OR s.n_live_tup > 2 * greatest(c.reltuples, 0))",
        ))
        .await?
        .map(|row| row.try_get::<Option<String>>("", "stale"))
        .transpose()?
        .flatten();
    let Some(tables) = stale else {
        return Ok(false);
    };
    db.execute_unprepared(&format!("ANALYZE {tables}")).await?;
    tracing::info!(%tables, "analyzed: their statistics were stale");
    Ok(true)
}

/// One delivery in a transaction of its own.
async fn ingest_alone(
    db: &DatabaseConnection,
    writer: &Writer,
    delivery: &Delivery,
    deadline: Instant,
    turn: &mut Option<OwnedSemaphorePermit>,
) -> Result<Receipt, DbErr> {
    match ingest_batch(db, writer, &[delivery], deadline, turn).await {
        Ok(mut receipts) => Ok(receipts.remove(0)),
        Err(Abort::Db(err)) => Err(err),
        // Recorded meanwhile by a copy: answer as that copy's duplicate.
        Err(Abort::Raced) => duplicate_of(db, delivery).await,
    }
}

/// A batch's first statement, which waits for a connection: given up at `deadline`
/// as a connection not had in time.
async fn within<T>(
    deadline: Instant,
    first: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, DbErr> {
    tokio::time::timeout_at(deadline, first)
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
}

/// Whether the database server refused a statement (a constraint, a deadlock), as
/// opposed to not being reachable: only the former is worth redoing delivery by
/// delivery.
fn from_the_database(err: &DbErr) -> bool {
    database_error(err).is_some()
}

/// Whether a statement failed because its connection was gone: closed under it, or
/// ended by the server (SQLSTATE class 08, connection exception, or 57P, operator
/// intervention: an administrator's or a shutdown's termination).
fn connection_lost(err: &DbErr) -> bool {
    match sqlx_error(err) {
        Some(sea_orm::sqlx::Error::Io(_) | sea_orm::sqlx::Error::Protocol(_)) => true,
        Some(sea_orm::sqlx::Error::Database(err)) => err
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// The error the database server answered a statement with, if it was one.
fn database_error(err: &DbErr) -> Option<&dyn sea_orm::sqlx::error::DatabaseError> {
    match sqlx_error(err)? {
        sea_orm::sqlx::Error::Database(err) => Some(&**err),
        _ => None,
    }
}

/// The driver's error under a statement's, if the driver gave one.
fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            Some(err)
        }
        _ => None,
    }
}

/// A transaction that, on SQLite, takes the write lock at once: another process may
/// be writing too, and a read-then-write transaction would then fail to upgrade.
pub(crate) async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Records each delivery and applies its event, all in one transaction, as if one
/// after another; returns the answers in the same order. Copies of a delivery
/// (recorded before, or earlier in the batch) change nothing and are answered as
/// duplicates.
async fn ingest_batch(
    db: &DatabaseConnection,
    writer: &Writer,
    batch: &[&Delivery],
    deadline: Instant,
    turn: &mut Option<OwnedSemaphorePermit>,
) -> Result<Vec<Receipt>, Abort> {
    // Copies are rare (a sender's retry, a redelivery), so a batch does not look for
    // them first unless recent ones held some: the ledger's unique key finds them,
    // and the batch is done again, looking first. A round trip fewer for nearly
    // every batch, and no batch done twice while a sender resends.
    let mut look = writer.expect_copies.load(Ordering::Relaxed);
    if !look && db.get_database_backend() == DbBackend::Postgres {
        match attempt_unlocked(db, writer, batch, deadline).await {
            Ok(Some(receipts)) => return Ok(receipts),
            // An app changed meanwhile, or the batch relinks: under locks below.
            Ok(None) => {
                tracing::debug!(size = batch.len(), "unlocked batch done again under locks")
            }
            Err(Abort::Raced) => {
                writer.expect_copies.store(true, Ordering::Relaxed);
                look = true;
            }
            Err(abort) => return Err(abort),
        }
    }
    match attempt_batch(db, batch, deadline, look, turn).await {
        Err(Abort::Raced) if !look => {
            writer.expect_copies.store(true, Ordering::Relaxed);
            let (receipts, _) = attempt_batch(db, batch, deadline, true, turn).await?;
            Ok(receipts)
        }
        Ok((receipts, copies)) => {
            if look && !copies {
                writer.expect_copies.store(false, Ordering::Relaxed);
            }
            Ok(receipts)
        }
        Err(abort) => Err(abort),
    }
}

/// A batch applied in memory: the answers, the ledger rows to insert, and the copies
/// to count in ledger rows recorded before.
struct Planned {
    receipts: Vec<Receipt>,
    ledger: Vec<deliveries::Model>,
    resent: HashMap<Uuid, i32>,
}

/// Applies a batch's deliveries to `snapshot` one after another; `seen` holds the
/// ledger rows already recorded for them. A copy (recorded before, or earlier in the
/// batch) changes nothing and is answered as a duplicate.
fn plan(
    snapshot: &mut Snapshot,
    batch: &[&Delivery],
    mut seen: HashMap<LedgerKey, Recorded>,
    received_at: NaiveDateTime,
) -> Planned {
    let mut receipts = Vec::with_capacity(batch.len());
    let mut ledger: Vec<deliveries::Model> = Vec::with_capacity(batch.len());
    // Copies count in their ledger row: rows of this batch by position, rows
    // recorded before by id.
    let mut in_batch: HashMap<LedgerKey, usize> = HashMap::new();
    let mut resent: HashMap<Uuid, i32> = HashMap::new();
    for delivery in batch {
        let key = ledger_key(delivery);
        if let Some(earlier) = seen.get(&key) {
            receipts.push(earlier.answer_copy());
            match in_batch.get(&key) {
                Some(&i) => ledger[i].attempts += 1,
                None => *resent.entry(earlier.id).or_default() += 1,
            }
            continue;
        }
        in_batch.insert(key.clone(), ledger.len());
        let Effect {
            outcome,
            reason,
            app_id,
            deployment_id,
        } = snapshot.apply(&delivery.event, received_at);
        let id = Uuid::now_v7();
        let stored_reason = ledger_reason(&reason);
        seen.insert(
            key,
            Recorded {
                id,
                outcome: outcome.as_str().to_owned(),
                reason: stored_reason.clone(),
                deployment_id,
            },
        );
        ledger.push(deliveries::Model {
            id,
            provider: delivery.provider.as_str().to_owned(),
            delivery_id: delivery.delivery_id.clone(),
            event_type: delivery.event_type.clone(),
            body: delivery.body.clone(),
            received_at,
            outcome: outcome.as_str().to_owned(),
            reason: stored_reason,
            deployment_id,
            attempts: 1,
            last_received_at: Some(received_at),
            source: delivery.source.as_str().to_owned(),
        });
        receipts.push(Receipt {
            id,
            outcome,
            reason,
            app_id,
            deployment_id,
        });
    }
    Planned {
        receipts,
        ledger,
        resent,
    }
}

/// On Postgres, a batch without a transaction: it reads its apps' versions and rows
/// unlocked, applies the deliveries in memory, and writes everything in one
/// statement that commits on its own, on condition that the apps its keys name are
/// still the ones it read, at the versions it read (see [`WRITE_UNLOCKED`]): two or
/// three round trips instead of BEGIN, lock, read, write and COMMIT. The apps come
/// from the writer's [`AppCache`] when every key of the batch was read before, and
/// are read (one round trip more) otherwise. `None` when it wrote nothing because
/// an app changed, or because the batch must relink chains in the database, which
/// only a locked transaction does; the batch is then done under locks, and the
/// cache is emptied (the locked batch raises its apps' versions).
async fn attempt_unlocked(
    db: &DatabaseConnection,
    writer: &Writer,
    batch: &[&Delivery],
    deadline: Instant,
) -> Result<Option<Vec<Receipt>>, Abort> {
    let (held, kept) = within(deadline, writer.connection(db)).await?;
    let mut attempt = attempt_unlocked_on(&held, writer, batch, deadline).await;
    // A connection whose statement failed goes back to its pool, which tests it.
    keep_if_ok(&attempt, held, writer);
    if kept && matches!(&attempt, Err(Abort::Db(err)) if connection_lost(err)) {
        // The kept connection was used less than a second ago, so it was not pinged:
        // the server may have ended it since (a restart, a failover). Once more on a
        // connection that answers. Had the write committed before the connection
        // broke, the ledger's unique key makes this a batch of copies.
        tracing::info!("an ingest connection failed; the batch is done again on another");
        let held = within(deadline, Held::acquire_live(db)).await?;
        attempt = attempt_unlocked_on(&held, writer, batch, deadline).await;
        keep_if_ok(&attempt, held, writer);
    }
    attempt
}

/// Keeps `held` for the writer's next batch if `attempt` went well; else it goes
/// back to its pool.
fn keep_if_ok<T>(attempt: &Result<T, Abort>, held: Held, writer: &Writer) {
    if attempt.is_ok() {
        writer.keep(held);
    }
}

/// [`attempt_unlocked`] on the connection `db`.
async fn attempt_unlocked_on(
    db: &Held,
    writer: &Writer,
    batch: &[&Delivery],
    deadline: Instant,
) -> Result<Option<Vec<Receipt>>, Abort> {
    let events = batch.iter().map(|d| &d.event);
    let keys = AppKeys::of(events.clone());
    let cached = writer.apps().get(&keys);
    let apps = match cached {
        Some(apps) => apps,
        None => {
            let apps = within(deadline, read_apps(db, &keys, false)).await?;
            writer.apps().fill(&keys, &apps);
            apps
        }
    };
    let (app_ids, versions): (Vec<Uuid>, Vec<i64>) =
        apps.iter().map(|(app, version)| (app.id, *version)).unzip();
    let apps = apps.into_iter().map(|(app, _)| app).collect();
    let under_locks = || {
        writer.apps().clear();
        Ok(None)
    };
    let mut snapshot = within(deadline, read_rows(db, Snapshot::new(apps), events)).await?;
    let final_before = crate::stats::final_rows(&snapshot);
    let Planned {
        receipts, ledger, ..
    } = plan(&mut snapshot, batch, HashMap::new(), now());
    // Only the apps read have versions to hold: a row of another app (found by a
    // provider's id) is written under its app's lock instead.
    let unversioned = snapshot.rows().any(|row| !app_ids.contains(&row.app_id));
    if unversioned || !snapshot.link_previous().is_empty() {
        return under_locks();
    }
    let values = [
        write_values(snapshot.touched(), ledger),
        vec![
            app_ids.clone().into(),
            versions.into(),
            strings(&keys.repositories),
            strings(&keys.projects),
        ],
    ]
    .concat();
    match db
        .execute_raw(postgres_statement(&WRITE_UNLOCKED, values))
        .await
    {
        // Every batch has a ledger row (copies are only known when looked for), so
        // none written means the apps did not hold.
        Ok(done) if done.rows_affected() == 0 => under_locks(),
        Ok(_) => {
            writer.apps().raise(&app_ids);
            crate::stats::count_finished(&snapshot, &final_before);
            Ok(Some(receipts))
        }
        Err(err) if is_ledger_conflict(&err) => Err(Abort::Raced),
        Err(err) => Err(err.into()),
    }
}

/// Whether a statement was refused for a ledger row already recorded: a copy of a
/// delivery, recorded by another transaction since the batch looked (or before,
/// when it did not look).
fn is_ledger_conflict(err: &DbErr) -> bool {
    database_error(err)
        .is_some_and(|err| err.constraint() == Some("uq_webhook_deliveries_provider_delivery"))
}

/// One transaction for [`ingest_batch`]; `look` reads the ledger for copies first.
/// Also says whether that found any.
async fn attempt_batch(
    db: &DatabaseConnection,
    batch: &[&Delivery],
    deadline: Instant,
    look: bool,
    turn: &mut Option<OwnedSemaphorePermit>,
) -> Result<(Vec<Receipt>, bool), Abort> {
    let txn = within(deadline, begin(db)).await?;
    // Apps first: on Postgres their locks make concurrent batches about the same
    // apps take turns, so what is read below is what the next batch will see.
    let mut snapshot = read_snapshot(&txn, batch.iter().map(|d| &d.event)).await?;
    let final_before = crate::stats::final_rows(&snapshot);
    let seen = if look {
        recorded(&txn, batch).await?
    } else {
        HashMap::new()
    };
    let copies = !seen.is_empty();
    let received_at = now();
    let Planned {
        receipts,
        ledger,
        resent,
    } = plan(&mut snapshot, batch, seen, received_at);
    let relinks = snapshot.link_previous();
    if !write(&txn, &snapshot, ledger, &relinks).await? {
        txn.rollback().await?;
        return Err(Abort::Raced);
    }
    for (id, copies) in resent {
        count_copies(&txn, id, copies, received_at).await?;
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        // The next batch may begin while this one commits: it waits for these apps'
        // locks, so it reads what this one wrote. (SQLite would make it poll for the
        // write lock instead.)
        turn.take();
    }
    txn.commit().await?;
    crate::stats::count_finished(&snapshot, &final_before);
    Ok((receipts, copies))
}

/// A SQLite statement with its parameters.
fn sqlite_statement(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Items as one JSON text parameter: a list for SQLite's `json_each` or `jsonb_each`.
fn json(items: &impl Serialize) -> Result<sea_orm::Value, DbErr> {
    serde_json::to_string(items)
        .map(sea_orm::Value::from)
        .map_err(|err| DbErr::Custom(format!("could not encode the batch: {err}")))
}

/// A uuid as SQLite's `unhex` reads it back into the 16-byte blob sqlx stores.
fn hex_id(id: Uuid) -> String {
    id.simple().to_string()
}

/// A Postgres statement with its parameters.
fn postgres_statement(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// A Postgres `text[]` parameter.
fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> sea_orm::Value {
    items.into_iter().cloned().collect::<Vec<String>>().into()
}
