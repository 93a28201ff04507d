//! Backfill: GitHub hook deliveries that never reached the ledger, fetched from
//! GitHub's API with a token and ingested as if they had arrived (or sent again by
//! GitHub with `--redeliver`).
//!
//! GitHub never retries a failed delivery, and keeps a hook's deliveries for three
//! days. A run lists them newest first back to `since`; one ledger query per page
//! finds the `guid`s (the `X-GitHub-Delivery` ids) already recorded, and only the
//! others are fetched, so a second run changes nothing. A fetched delivery goes
//! through [`Ingest::ingest`] like a webhook, trusted through the token; its ledger
//! row says `source = 'backfill'` and keeps the payload as the API returned it.
//!
//! `serve` runs it every `GITHUB_BACKFILL_EVERY` ([`periodic`]). Replicas take
//! turns per hook through a Postgres advisory lock held for the run; on SQLite (one
//! host) the ledger's unique key keeps a delivery to one row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement, TransactionTrait,
};
use sha2::{Digest, Sha256};

use crate::clients::github::{Client, DeliverySummary, GithubError, Hook};
use crate::deployments::ingest::{Ingest, Receipt};
use crate::store::deliveries;
use crate::webhooks::{ContentType, Provider, Source, github};

/// How far back GitHub keeps a hook's deliveries.
pub const RETENTION: Duration = Duration::from_secs(72 * 3600);

/// Pages one run reads at most (100 deliveries each): a bound on a `next` link
/// that never ends.
const MAX_PAGES: usize = 1_000;

/// What one run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub hook: Hook,
    /// Deliveries made before this are left alone.
    pub since: DateTime<Utc>,
    /// Ask GitHub to send missing deliveries again instead of fetching them.
    pub redeliver: bool,
    /// Only say what would be done.
    pub dry_run: bool,
}

/// What became of one delivery missing from the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Ingested(Receipt),
    Redelivered,
    WouldIngest,
    WouldRedeliver,
    /// GitHub kept no payload for it (nothing to ingest; `--redeliver` may still work).
    NoPayload,
}

/// One delivery missing from the ledger, and what the run did about it.
#[derive(Debug, Clone)]
pub struct Line {
    pub delivery: DeliverySummary,
    pub action: Action,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.delivery;
        let action = match &self.action {
            Action::Ingested(r) => format!("ingested: {} ({})", r.outcome.as_str(), r.reason),
            Action::Redelivered => "redelivery requested".into(),
            Action::WouldIngest => "would ingest".into(),
            Action::WouldRedeliver => "would request a redelivery".into(),
            Action::NoPayload => "skipped: GitHub kept no payload (try --redeliver)".into(),
        };
        write!(
            f,
            "{}  {:<20} {}  github said {:<3}  {action}",
            d.guid,
            d.event,
            d.delivered_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            d.status_code
        )
    }
}

/// What a run did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub hook: String,
    pub since: Option<DateTime<Utc>>,
    pub pages: usize,
    /// Distinct deliveries (guids) made since `since`.
    pub listed: usize,
    /// Of those, already in the ledger.
    pub recorded: usize,
    /// Ingested, by outcome.
    pub ingested: BTreeMap<&'static str, usize>,
    pub redelivered: usize,
    /// Missing deliveries a dry run left alone.
    pub would: usize,
    pub no_payload: usize,
    pub dry_run: bool,
    pub redeliver: bool,
}

impl Summary {
    /// Deliveries the run found missing from the ledger.
    pub fn missing(&self) -> usize {
        self.listed - self.recorded
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self
            .since
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        write!(
            f,
            "hook {}: {} deliveries since {since} ({} page{}), {} already recorded, ",
            self.hook,
            self.listed,
            self.pages,
            if self.pages == 1 { "" } else { "s" },
            self.recorded
        )?;
        if self.dry_run {
            let verb = if self.redeliver {
                "redelivered"
            } else {
                "ingested"
            };
            write!(
                f,
                "{} would be {verb} (dry run: nothing changed)",
                self.would
            )?;
        } else if self.redeliver {
            write!(f, "redelivery requested for {}", self.redelivered)?;
        } else {
            let total: usize = self.ingested.values().sum();
            write!(f, "{total} ingested")?;
            if total > 0 {
                let parts: Vec<String> = self
                    .ingested
                    .iter()
                    .map(|(outcome, n)| format!("{n} {outcome}"))
                    .collect();
                write!(f, " ({})", parts.join(", "))?;
            }
        }
        if self.no_payload > 0 {
            write!(f, ", {} without a payload", self.no_payload)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("the database failed during backfill: {0}")]
    Db(#[from] DbErr),
    #[error(
        "another backfill of hook {0} is running (a serve replica or another command); run again when it is done"
    )]
    Busy(String),
}

/// Backfills one hook: every delivery since `options.since` whose guid the ledger
/// lacks is ingested (or redelivered). Calls `report` once per such delivery.
pub async fn run(
    ingest: &Ingest,
    client: &Client,
    options: &Options,
    mut report: impl FnMut(&Line),
) -> Result<Summary, BackfillError> {
    let hook = &options.hook;
    let mut summary = Summary {
        hook: hook.to_string(),
        since: Some(options.since),
        dry_run: options.dry_run,
        redeliver: options.redeliver,
        ..Default::default()
    };
    let mut seen = HashSet::new();
    let mut next: Option<String> = None;
    loop {
        let page = client.deliveries(hook, next.as_deref()).await?;
        summary.pages += 1;
        let reached_since = page
            .deliveries
            .iter()
            .any(|d| d.delivered_at < options.since);
        // A redelivery shares its guid with the first attempt: one of each guid.
        let fresh: Vec<DeliverySummary> = page
            .deliveries
            .into_iter()
            .filter(|d| d.delivered_at >= options.since && seen.insert(d.guid.clone()))
            .collect();
        summary.listed += fresh.len();
        let recorded = recorded_guids(ingest.db(), &fresh).await?;
        for delivery in fresh {
            if recorded.contains(&delivery.guid) {
                summary.recorded += 1;
                continue;
            }
            let action = act(ingest, client, options, &delivery).await?;
            count(&mut summary, &action);
            report(&Line { delivery, action });
        }
        match page.next {
            Some(url) if !reached_since && summary.pages < MAX_PAGES => next = Some(url),
            Some(_) if !reached_since => {
                tracing::warn!(hook = %hook, "stopped after {MAX_PAGES} pages of deliveries");
                break;
            }
            _ => break,
        }
    }
    Ok(summary)
}

/// Runs [`run`] while holding this hook's backfill lock; `Busy` when another
/// process holds it.
pub async fn run_exclusive(
    ingest: &Ingest,
    client: &Client,
    options: &Options,
    report: impl FnMut(&Line),
) -> Result<Summary, BackfillError> {
    let db = ingest.db();
    if db.get_database_backend() != DbBackend::Postgres {
        return run(ingest, client, options, report).await;
    }
    // A transaction-level advisory lock: it lives on the transaction's connection
    // and goes away with it, even if this process dies mid-run.
    let txn = db.begin().await?;
    let locked = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            // Advisory locks span the database: the schema keeps apart two
            // deployments that share one.
            "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema())) AS locked",
            [lock_key(&options.hook).into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if !locked {
        txn.rollback().await?;
        return Err(BackfillError::Busy(options.hook.to_string()));
    }
    let result = run(ingest, client, options, report).await;
    // Only the lock was taken in it; ending it releases the lock.
    if let Err(err) = txn.rollback().await {
        tracing::warn!(%err, "could not end the backfill lock's transaction");
    }
    result
}

/// The advisory lock's number for a hook, the same in every replica.
fn lock_key(hook: &Hook) -> i32 {
    let digest = Sha256::digest(format!("deploy-tracker backfill {hook}").as_bytes());
    i32::from_be_bytes(digest[..4].try_into().expect("4 bytes"))
}

/// The guids of `deliveries` the ledger already holds: one query.
async fn recorded_guids<C: ConnectionTrait>(
    db: &C,
    deliveries: &[DeliverySummary],
) -> Result<HashSet<String>, DbErr> {
    if deliveries.is_empty() {
        return Ok(HashSet::new());
    }
    let guids: Vec<String> = deliveries.iter().map(|d| d.guid.clone()).collect();
    let found: Vec<String> = deliveries::Entity::find()
        .select_only()
        .column(deliveries::Column::DeliveryId)
        .filter(deliveries::Column::Provider.eq(Provider::Github.as_str()))
        .filter(deliveries::Column::DeliveryId.is_in(guids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found.into_iter().collect())
}

/// Fetches and ingests, or redelivers, one missing delivery.
async fn act(
    ingest: &Ingest,
    client: &Client,
    options: &Options,
    summary: &DeliverySummary,
) -> Result<Action, BackfillError> {
    let hook = &options.hook;
    match (options.redeliver, options.dry_run) {
        (true, true) => return Ok(Action::WouldRedeliver),
        (false, true) => return Ok(Action::WouldIngest),
        (true, false) => {
            client.redeliver(hook, summary.id).await?;
            return Ok(Action::Redelivered);
        }
        (false, false) => {}
    }
    let detail = client.delivery(hook, summary.id).await?;
    let Some(payload) = detail.payload() else {
        return Ok(Action::NoPayload);
    };
    let event = detail.header("x-github-event").unwrap_or(&detail.event);
    // GitHub's API always gives the payload as JSON, whatever the hook's content type.
    let mut delivery = github::delivery(
        Some(event),
        Some(&summary.guid),
        ContentType::Json,
        payload.as_bytes().to_vec(),
    );
    delivery.source = Source::Backfill;
    let receipt = ingest.ingest(&delivery).await?;
    tracing::info!(
        hook = %hook,
        delivery_id = %summary.guid,
        event_type = %delivery.event_type,
        outcome = receipt.outcome.as_str(),
        reason = %receipt.reason,
        "delivery backfilled"
    );
    Ok(Action::Ingested(receipt))
}

fn count(summary: &mut Summary, action: &Action) {
    let outcome = match action {
        Action::Ingested(receipt) => {
            let outcome = receipt.outcome.as_str();
            *summary.ingested.entry(outcome).or_default() += 1;
            outcome
        }
        Action::Redelivered => {
            summary.redelivered += 1;
            "redelivered"
        }
        Action::NoPayload => {
            summary.no_payload += 1;
            "no_payload"
        }
        Action::WouldIngest | Action::WouldRedeliver => {
            summary.would += 1;
            return;
        }
    };
    metrics::counter!("deploy_tracker_backfill_deliveries_total", "outcome" => outcome)
        .increment(1);
}

/// `serve`'s periodic backfill: every `every`, each hook in turn. The first round
/// looks back over GitHub's whole retention; later ones back to a little before the
/// hook's last successful round began.
pub async fn periodic(ingest: Ingest, client: Client, hooks: Vec<Hook>, every: Duration) {
    describe_metrics();
    let mut last_success: HashMap<Hook, DateTime<Utc>> = HashMap::new();
    let margin = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::zero())
        + chrono::Duration::minutes(5);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for hook in &hooks {
            let started = Utc::now();
            let oldest = started - chrono::Duration::from_std(RETENTION).expect("72 h");
            let since = last_success
                .get(hook)
                .map(|t| (*t - margin).max(oldest))
                .unwrap_or(oldest);
            let options = Options {
                hook: hook.clone(),
                since,
                redeliver: false,
                dry_run: false,
            };
            let result = run_exclusive(&ingest, &client, &options, |_| {}).await;
            let label = match &result {
                Ok(_) => "done",
                Err(BackfillError::Busy(_)) => "busy",
                Err(_) => "failed",
            };
            metrics::counter!("deploy_tracker_backfill_rounds_total", "result" => label)
                .increment(1);
            match result {
                Ok(summary) => {
                    last_success.insert(hook.clone(), started);
                    if summary.missing() > 0 {
                        tracing::info!(hook = %hook, "{summary}");
                    } else {
                        tracing::debug!(hook = %hook, "{summary}");
                    }
                }
                Err(BackfillError::Busy(_)) => {
                    tracing::debug!(hook = %hook, "another replica is backfilling this hook");
                }
                Err(err) => tracing::warn!(hook = %hook, "backfill failed: {err}"),
            }
        }
    }
}

fn describe_metrics() {
    metrics::describe_counter!(
        "deploy_tracker_backfill_rounds_total",
        "Periodic backfill rounds of one hook, by result (done, busy: another replica had it, failed)"
    );
    metrics::describe_counter!(
        "deploy_tracker_backfill_deliveries_total",
        "GitHub deliveries found missing from the ledger and backfilled, by outcome (ingest outcome, redelivered, no_payload)"
    );
    metrics::describe_counter!(
        "deploy_tracker_backfill_api_errors_total",
        "Failed GitHub API requests during backfill, by HTTP status (or timeout, network)"
    );
}
