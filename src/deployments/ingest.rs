//! Ingest: one verified delivery becomes one ledger row and at most one state change
//! per app, committed together in a single transaction.
//!
//! Order and repetition do not matter: a duplicate delivery id changes nothing, status
//! only moves forward (see [`super::state`]), missing fields are only ever filled, and
//! "createdAt" is the earliest event time seen for the deployment.

use std::sync::Arc;

use chrono::NaiveDateTime;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait, TryInsertResult,
};
use serde::Serialize;
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};
use uuid::Uuid;

use super::state::{Status, Transition, transition};
use crate::store::deployments::Environment;
use crate::store::{apps, deliveries, deployments};
use crate::webhooks::{Delivery, Event, Provider, Push, Target, VercelDeployment, now};

/// What a delivery did, as the ledger's `outcome` column records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A deployment row was created or changed.
    Applied,
    /// The delivery id was seen before, or the event changed nothing.
    Duplicate,
    /// Understood, but not about a tracked deployment (ping, tag, preview, other types).
    Ignored,
    /// About a repository or project no app is registered for (yet).
    Unmatched,
    /// Older than what the row records, or contradicting a final status.
    Stale,
    /// Signed but not understood; kept raw for re-processing.
    Malformed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Applied,
        Outcome::Duplicate,
        Outcome::Ignored,
        Outcome::Unmatched,
        Outcome::Stale,
        Outcome::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Unmatched => "unmatched",
            Outcome::Stale => "stale",
            Outcome::Malformed => "malformed",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown outcome {s:?}: expected applied, duplicate, ignored, unmatched, stale or malformed"
                )
            })
    }
}

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

/// The effect of one event on the deployments table, before it is written to the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Effect {
    outcome: Outcome,
    reason: String,
    app_id: Option<Uuid>,
    deployment_id: Option<Uuid>,
}

impl Effect {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            app_id: None,
            deployment_id: None,
        }
    }

    fn on(mut self, app_id: Uuid, deployment_id: Uuid) -> Self {
        self.app_id = Some(app_id);
        self.deployment_id = Some(deployment_id);
        self
    }
}

/// Applies deliveries to the database. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Ingest {
    db: DatabaseConnection,
    /// SQLite has one writer at a time; taking turns here, instead of inside SQLite,
    /// turns lock contention into an orderly queue instead of `SQLITE_BUSY` errors,
    /// and lets deliveries that queue up share one commit (one fsync).
    sqlite_writer: Option<Arc<SqliteWriter>>,
}

/// Group commit for SQLite. Whoever gets the turn takes every delivery queued so far
/// and applies them in one transaction, each inside its own savepoint (one failure
/// spoils no other), then answers each only once that transaction has committed.
struct SqliteWriter {
    turn: Arc<Mutex<()>>,
    queue: std::sync::Mutex<Vec<Queued>>,
}

struct Queued {
    delivery: Delivery,
    answer: oneshot::Sender<Result<Receipt, DbErr>>,
}

impl Ingest {
    pub fn new(db: DatabaseConnection) -> Self {
        let sqlite_writer = (db.get_database_backend() == DbBackend::Sqlite).then(|| {
            Arc::new(SqliteWriter {
                turn: Arc::new(Mutex::new(())),
                queue: std::sync::Mutex::new(Vec::new()),
            })
        });
        Self { db, sqlite_writer }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Records the delivery and applies its event in one transaction. Returns only
    /// once both are committed; an error means nothing was written.
    pub async fn ingest(&self, delivery: &Delivery) -> Result<Receipt, DbErr> {
        match &self.sqlite_writer {
            Some(writer) => self.ingest_grouped(writer, delivery).await,
            None => {
                let txn = self.db.begin().await?;
                match ingest_in(&txn, delivery, false).await? {
                    Some(receipt) => {
                        txn.commit().await?;
                        Ok(receipt)
                    }
                    None => {
                        txn.rollback().await?;
                        duplicate_of(&self.db, delivery).await
                    }
                }
            }
        }
    }

    async fn ingest_grouped(
        &self,
        writer: &SqliteWriter,
        delivery: &Delivery,
    ) -> Result<Receipt, DbErr> {
        let (answer, mut answered) = oneshot::channel();
        writer.queue.lock().expect("queue lock").push(Queued {
            delivery: delivery.clone(),
            answer,
        });
        loop {
            tokio::select! {
                biased;
                receipt = &mut answered => {
                    return receipt.unwrap_or_else(|_| {
                        Err(DbErr::Custom("the write batch was abandoned".into()))
                    });
                }
                turn = writer.turn.clone().lock_owned() => {
                    let batch = std::mem::take(&mut *writer.queue.lock().expect("queue lock"));
                    // Empty: an earlier turn took this delivery and has answered it.
                    if !batch.is_empty() {
                        // A task of its own, so a caller that gives up (a request
                        // timeout) does not abandon the others' deliveries mid-batch.
                        tokio::spawn(commit_batch(self.db.clone(), batch, turn));
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
        let _turn = match &self.sqlite_writer {
            Some(writer) => Some(writer.turn.lock().await),
            None => None,
        };
        let txn = self.db.begin().await?;
        // A no-op write first, as in `ingest`: it takes SQLite's write lock before
        // anything is read, and on Postgres it locks the row so that two runs take turns.
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
        let mut effect = apply(&txn, &delivery.event).await?;
        effect.reason = ledger_reason(&effect.reason);
        let keep =
            stored.outcome == Outcome::Applied.as_str() && effect.outcome != Outcome::Applied;
        let changed = !keep
            && (stored.outcome != effect.outcome.as_str()
                || stored.reason != effect.reason
                || stored.deployment_id != effect.deployment_id);
        if changed {
            record(&txn, ledger_id, &effect).await?;
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

/// Applies a batch in one transaction, a savepoint per delivery, and answers each
/// after the commit (or with the error that stopped the batch). The turn is given
/// back only after every answer has been sent.
async fn commit_batch(db: DatabaseConnection, batch: Vec<Queued>, turn: OwnedMutexGuard<()>) {
    let failed = |err: &DbErr| DbErr::Custom(format!("the write batch failed: {err}"));
    let txn = match db.begin().await {
        Ok(txn) => txn,
        Err(err) => {
            for queued in batch {
                let _ = queued.answer.send(Err(failed(&err)));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for queued in batch {
        let result = match txn.begin().await {
            Err(err) => Err(err),
            Ok(savepoint) => match ingest_in(&savepoint, &queued.delivery, true).await {
                Ok(Some(receipt)) => savepoint.commit().await.map(|()| receipt),
                // A copy of a delivery recorded earlier, perhaps earlier in this batch.
                Ok(None) => match savepoint.rollback().await {
                    Ok(()) => duplicate_of(&txn, &queued.delivery).await,
                    Err(err) => Err(err),
                },
                Err(err) => {
                    let _ = savepoint.rollback().await;
                    Err(err)
                }
            },
        };
        results.push((queued.answer, result));
    }
    match txn.commit().await {
        Ok(()) => {
            for (answer, result) in results {
                let _ = answer.send(result);
            }
        }
        Err(err) => {
            for (answer, _) in results {
                let _ = answer.send(Err(failed(&err)));
            }
        }
    }
    drop(turn);
}

/// Records the delivery and applies its event inside `txn`. `None` when the ledger
/// already holds its (provider, delivery id): the caller rolls back and answers
/// [`duplicate_of`].
///
/// With `ledger_first` (SQLite) the ledger row goes first, so the write lock is
/// taken before anything is read (another process may be writing too), and is
/// completed once the effect is known. Otherwise (Postgres) it goes last, already
/// complete: one round trip fewer. Either way a concurrent copy of the same delivery
/// waits on the ledger's unique key (or on the app lock before it), then finds the
/// row.
async fn ingest_in(
    txn: &DatabaseTransaction,
    delivery: &Delivery,
    ledger_first: bool,
) -> Result<Option<Receipt>, DbErr> {
    let received_at = now();
    let ledger_id = Uuid::now_v7();
    let row = |effect: &Effect| deliveries::ActiveModel {
        id: Set(ledger_id),
        provider: Set(delivery.provider.as_str().to_owned()),
        delivery_id: Set(delivery.delivery_id.clone()),
        event_type: Set(delivery.event_type.clone()),
        body: Set(delivery.body.clone()),
        received_at: Set(received_at),
        outcome: Set(effect.outcome.as_str().to_owned()),
        reason: Set(ledger_reason(&effect.reason)),
        deployment_id: Set(effect.deployment_id),
    };
    if ledger_first && !insert_ledger(txn, row(&Effect::new(Outcome::Applied, ""))).await? {
        return Ok(None);
    }
    let effect = apply(txn, &delivery.event).await?;
    if ledger_first {
        record(txn, ledger_id, &effect).await?;
    } else if !insert_ledger(txn, row(&effect)).await? {
        return Ok(None);
    }
    Ok(Some(Receipt {
        id: ledger_id,
        outcome: effect.outcome,
        reason: effect.reason,
        app_id: effect.app_id,
        deployment_id: effect.deployment_id,
    }))
}

/// The answer to a delivery id already in the ledger.
async fn duplicate_of<C: ConnectionTrait>(db: &C, delivery: &Delivery) -> Result<Receipt, DbErr> {
    let original = deliveries::Entity::find()
        .filter(deliveries::Column::Provider.eq(delivery.provider.as_str()))
        .filter(deliveries::Column::DeliveryId.eq(delivery.delivery_id.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the conflicting delivery".into()))?;
    // A resend of a delivery that could not be read is refused again, as the
    // first copy was; answering it 200 would tell the sender all is well.
    if original.outcome == Outcome::Malformed.as_str() {
        return Ok(Receipt {
            id: original.id,
            outcome: Outcome::Malformed,
            reason: original.reason,
            app_id: None,
            deployment_id: None,
        });
    }
    Ok(Receipt {
        id: original.id,
        outcome: Outcome::Duplicate,
        reason: format!("delivery already recorded as {}", original.outcome),
        app_id: None,
        deployment_id: original.deployment_id,
    })
}

/// Inserts a ledger row unless its (provider, delivery id) is already there.
async fn insert_ledger(
    txn: &DatabaseTransaction,
    row: deliveries::ActiveModel,
) -> Result<bool, DbErr> {
    let inserted = deliveries::Entity::insert(row)
        .on_conflict_do_nothing_on([deliveries::Column::Provider, deliveries::Column::DeliveryId])
        .exec_without_returning(txn)
        .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// A reason as the ledger's `reason` column can hold it, on either database.
fn ledger_reason(reason: &str) -> String {
    crate::webhooks::truncate(crate::webhooks::storable(reason), 255)
}

async fn record(txn: &DatabaseTransaction, ledger_id: Uuid, effect: &Effect) -> Result<(), DbErr> {
    deliveries::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(ledger_id),
        outcome: Set(effect.outcome.as_str().to_owned()),
        reason: Set(ledger_reason(&effect.reason)),
        deployment_id: Set(effect.deployment_id),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(())
}

/// What an event does to the deployments table, inside the caller's transaction.
pub(crate) async fn apply(txn: &DatabaseTransaction, event: &Event) -> Result<Effect, DbErr> {
    match event {
        Event::Ignored(reason) => Ok(Effect::new(Outcome::Ignored, reason.clone())),
        Event::Malformed(m) => Ok(Effect::new(Outcome::Malformed, m.reason.clone())),
        Event::Push(push) => apply_push(txn, push).await,
        Event::Vercel(vercel) => apply_vercel(txn, vercel).await,
    }
}

/// Apps registered for a repository (case-insensitive), locked in id order so that
/// concurrent deliveries for the same apps queue instead of deadlocking.
async fn apps_for_repository(
    txn: &DatabaseTransaction,
    repository: &str,
) -> Result<Vec<apps::Model>, DbErr> {
    let query = apps::Entity::find()
        .filter(
            Expr::expr(Func::lower(Expr::col(apps::Column::GithubRepo)))
                .eq(repository.to_lowercase()),
        )
        .order_by_asc(apps::Column::Id);
    locked(txn, query).all(txn).await
}

/// Adds `FOR UPDATE` on Postgres. SQLite has no row locks: its writers already
/// run one at a time.
fn locked<Q: QuerySelect>(txn: &DatabaseTransaction, query: Q) -> Q {
    if txn.get_database_backend() == DbBackend::Postgres {
        query.lock_exclusive()
    } else {
        query
    }
}

fn environment_for_branch(app: &apps::Model, branch: &str) -> Option<Environment> {
    if branch == app.production_branch {
        Some(Environment::Production)
    } else if branch == app.staging_branch {
        Some(Environment::Staging)
    } else {
        None
    }
}

async fn apply_push(txn: &DatabaseTransaction, push: &Push) -> Result<Effect, DbErr> {
    let apps = apps_for_repository(txn, &push.repository).await?;
    if apps.is_empty() {
        return Ok(Effect::new(
            Outcome::Unmatched,
            format!("no app is registered for repository {}", push.repository),
        ));
    }
    let mut first = None;
    let mut created = 0;
    let mut changed = 0;
    for app in &apps {
        let Some(environment) = environment_for_branch(app, &push.branch) else {
            continue;
        };
        let existing = deployments::Entity::find()
            .filter(deployments::Column::AppId.eq(app.id))
            .filter(deployments::Column::Environment.eq(environment))
            .filter(deployments::Column::GithubCommitSha.eq(push.commit_sha.as_str()))
            .order_by_asc(deployments::Column::CreatedAt)
            .order_by_asc(deployments::Column::Id)
            .one(txn)
            .await?;
        let id = match existing {
            Some(row) => {
                let id = row.id;
                if row.created_at > push.pushed_at {
                    let mut row = row.into_active_model();
                    row.created_at = Set(push.pushed_at);
                    row.updated_at = Set(now());
                    row.update(txn).await?;
                    changed += 1;
                }
                id
            }
            None => {
                created += 1;
                insert_deployment(
                    txn,
                    NewDeployment {
                        app_id: app.id,
                        environment,
                        status: Status::Pending,
                        commit_sha: Some(push.commit_sha.clone()),
                        vercel_deployment_id: None,
                        url: None,
                        error_message: None,
                        created_at: push.pushed_at,
                    },
                )
                .await?
            }
        };
        first.get_or_insert((app.id, id));
    }
    let Some(first) = first else {
        return Ok(Effect::new(
            Outcome::Ignored,
            format!(
                "branch {} is neither a staging nor a production branch",
                push.branch
            ),
        ));
    };
    let effect = match (created, changed) {
        (0, 0) => Effect::new(Outcome::Duplicate, "deployment already recorded"),
        (0, _) => Effect::new(Outcome::Applied, "deployment updated"),
        (1, _) => Effect::new(Outcome::Applied, "pending deployment created"),
        (n, _) => Effect::new(Outcome::Applied, format!("{n} pending deployments created")),
    };
    Ok(effect.on(first.0, first.1))
}

/// The app a Vercel event belongs to: by project id, else by repository when exactly
/// one app has it. Locked like [`apps_for_repository`].
async fn app_for_vercel(
    txn: &DatabaseTransaction,
    event: &VercelDeployment,
) -> Result<Result<apps::Model, String>, DbErr> {
    if let Some(project_id) = &event.project_id {
        let query =
            apps::Entity::find().filter(apps::Column::VercelProjectId.eq(project_id.as_str()));
        if let Some(app) = locked(txn, query).one(txn).await? {
            return Ok(Ok(app));
        }
    }
    let Some(repository) = &event.repository else {
        return Ok(Err(format!(
            "no app is registered for Vercel project {}",
            event.project_id.as_deref().unwrap_or("(none)")
        )));
    };
    let mut apps = apps_for_repository(txn, repository).await?;
    Ok(match apps.len() {
        1 => Ok(apps.remove(0)),
        0 => Err(format!(
            "no app is registered for Vercel project {} or repository {repository}",
            event.project_id.as_deref().unwrap_or("(none)")
        )),
        n => Err(format!(
            "{n} apps share repository {repository} and none has Vercel project {}",
            event.project_id.as_deref().unwrap_or("(none)")
        )),
    })
}

async fn apply_vercel(
    txn: &DatabaseTransaction,
    event: &VercelDeployment,
) -> Result<Effect, DbErr> {
    let app = match app_for_vercel(txn, event).await? {
        Ok(app) => app,
        Err(reason) => return Ok(Effect::new(Outcome::Unmatched, reason)),
    };
    let environment = match event.target {
        Target::Production => Environment::Production,
        Target::Staging => Environment::Staging,
        Target::ByBranch => {
            match event
                .commit_ref
                .as_deref()
                .and_then(|branch| environment_for_branch(&app, branch))
            {
                Some(environment) => environment,
                None => {
                    return Ok(Effect::new(
                        Outcome::Ignored,
                        format!(
                            "a preview of branch {}",
                            event.commit_ref.as_deref().unwrap_or("(unknown)")
                        ),
                    ));
                }
            }
        }
    };

    // The row with this Vercel id, else the earliest unlinked row for the commit:
    // one statement for both (a round trip per delivery counts), the Vercel id first.
    let mut candidates = Condition::any()
        .add(deployments::Column::VercelDeploymentId.eq(event.deployment_id.as_str()));
    if let Some(sha) = &event.commit_sha {
        candidates = candidates.add(
            Condition::all()
                .add(deployments::Column::AppId.eq(app.id))
                .add(deployments::Column::Environment.eq(environment))
                .add(deployments::Column::GithubCommitSha.eq(sha.as_str()))
                .add(deployments::Column::VercelDeploymentId.is_null()),
        );
    }
    let row = match deployments::Entity::find()
        .filter(candidates)
        .order_by_asc(Expr::col(deployments::Column::VercelDeploymentId).is_null())
        .order_by_asc(deployments::Column::CreatedAt)
        .order_by_asc(deployments::Column::Id)
        .one(txn)
        .await?
    {
        Some(row) if row.app_id != app.id => {
            return Ok(Effect::new(
                Outcome::Unmatched,
                format!(
                    "Vercel deployment {} is recorded for another app",
                    event.deployment_id
                ),
            ));
        }
        row => row,
    };

    let Some(row) = row else {
        let id = insert_deployment(
            txn,
            NewDeployment {
                app_id: app.id,
                environment,
                status: event.status,
                commit_sha: event.commit_sha.clone(),
                vercel_deployment_id: Some(event.deployment_id.clone()),
                url: event.url.clone().filter(|_| event.status == Status::Ready),
                error_message: event.failure.map(str::to_owned),
                created_at: event.occurred_at,
            },
        )
        .await?;
        return Ok(Effect::new(
            Outcome::Applied,
            format!("deployment created as {}", event.status),
        )
        .on(app.id, id));
    };

    let id = row.id;
    let current = row.status;
    let step = transition(current, event.status);
    let mut update = row.clone().into_active_model();
    let mut changed = false;
    if let Transition::Advance(next) = step {
        update.status = Set(next);
        if let Some(failure) = event.failure {
            update.error_message = Set(Some(failure.to_owned()));
        }
        changed = true;
    }
    if row.vercel_deployment_id.is_none() {
        update.vercel_deployment_id = Set(Some(event.deployment_id.clone()));
        changed = true;
    }
    if row.github_commit_sha.is_none() && event.commit_sha.is_some() {
        update.github_commit_sha = Set(event.commit_sha.clone());
        changed = true;
    }
    if row.deployment_url.is_none()
        && event.status == Status::Ready
        && step != Transition::Stale
        && let Some(url) = &event.url
    {
        update.deployment_url = Set(Some(url.clone()));
        changed = true;
    }
    if row.created_at > event.occurred_at {
        update.created_at = Set(event.occurred_at);
        changed = true;
    }
    if changed {
        update.updated_at = Set(now());
        update.update(txn).await?;
    }
    let effect = match step {
        Transition::Stale => Effect::new(
            Outcome::Stale,
            format!("deployment is already {current}; {} is stale", event.status),
        ),
        Transition::Advance(next) => Effect::new(Outcome::Applied, format!("{current} -> {next}")),
        Transition::Unchanged if changed => {
            Effect::new(Outcome::Applied, format!("still {current}; fields filled"))
        }
        Transition::Unchanged => Effect::new(
            Outcome::Duplicate,
            format!("deployment is already {current}"),
        ),
    };
    Ok(effect.on(app.id, id))
}

pub(crate) struct NewDeployment {
    pub app_id: Uuid,
    pub environment: Environment,
    pub status: Status,
    pub commit_sha: Option<String>,
    pub vercel_deployment_id: Option<String>,
    pub url: Option<String>,
    pub error_message: Option<String>,
    pub created_at: NaiveDateTime,
}

pub(crate) async fn insert_deployment<C: ConnectionTrait>(
    db: &C,
    new: NewDeployment,
) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    deployments::ActiveModel {
        id: Set(id),
        app_id: Set(new.app_id),
        environment: Set(new.environment),
        status: Set(new.status),
        deployment_url: Set(new.url),
        github_commit_sha: Set(new.commit_sha),
        vercel_deployment_id: Set(new.vercel_deployment_id),
        created_at: Set(new.created_at),
        updated_at: Set(now()),
        error_message: Set(new.error_message),
    }
    .insert(db)
    .await?;
    Ok(id)
}
