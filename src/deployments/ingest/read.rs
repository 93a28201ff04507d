//! What a batch reads: the ledger's copies of its deliveries, its apps (locked or
//! not) and the deployment rows its events could touch, on either database.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::NaiveDateTime;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::{
    HEAD_WINDOW, Outcome, Receipt, hex_id, json, postgres_statement, sqlite_statement, strings,
};
use crate::deployments::plan::{AppKeys, Snapshot};
use crate::store::deployments::{Environment, Status};
use crate::store::{apps, deliveries, deployments};
use crate::webhooks::{Delivery, Event, Provider, now};

/// What the ledger already holds for a (provider, delivery id).
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub(super) id: Uuid,
    pub(super) outcome: String,
    pub(super) reason: String,
    pub(super) deployment_id: Option<Uuid>,
}

impl Recorded {
    /// The answer to another copy of this delivery.
    pub(super) fn answer_copy(&self) -> Receipt {
        // A resend of a delivery that could not be read is refused again, as the
        // first copy was; answering it 200 would tell the sender all is well.
        if self.outcome == Outcome::Malformed.as_str() {
            return Receipt {
                id: self.id,
                outcome: Outcome::Malformed,
                reason: self.reason.clone(),
                app_id: None,
                deployment_id: None,
            };
        }
        Receipt {
            id: self.id,
            outcome: Outcome::Duplicate,
            reason: format!("delivery already recorded as {}", self.outcome),
            app_id: None,
            deployment_id: self.deployment_id,
        }
    }
}

pub(super) type LedgerKey = (&'static str, String);

pub(super) fn ledger_key(delivery: &Delivery) -> LedgerKey {
    (delivery.provider.as_str(), delivery.delivery_id.clone())
}

/// The ledger rows already recorded for these deliveries.
pub(super) async fn recorded<C: ConnectionTrait>(
    db: &C,
    deliveries: &[&Delivery],
) -> Result<HashMap<LedgerKey, Recorded>, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        let pairs: Vec<LedgerKey> = deliveries.iter().map(|d| ledger_key(d)).collect();
        let rows = db
            .query_all_raw(sqlite_statement(RECORDED_SQLITE, [json(&pairs)?]))
            .await?
            .iter()
            .map(|row| row.try_get_many_by_index())
            .collect::<Result<_, _>>()?;
        return Ok(by_ledger_key(rows));
    }
    let rows: Vec<RecordedRow> = deliveries::Entity::find()
        .select_only()
        .columns([
            deliveries::Column::Id,
            deliveries::Column::Provider,
            deliveries::Column::DeliveryId,
            deliveries::Column::Outcome,
            deliveries::Column::Reason,
            deliveries::Column::DeploymentId,
        ])
        .filter(
            Provider::ALL
                .into_iter()
                .fold(Condition::any(), |any, provider| {
                    // Per provider, so the lookup uses the (provider, "deliveryId") key.
                    let ids: Vec<String> = deliveries
                        .iter()
                        .filter(|d| d.provider == provider)
                        .map(|d| d.delivery_id.clone())
                        .collect();
                    any.add_option((!ids.is_empty()).then(|| {
                        let backend = db.get_database_backend();
                        deliveries::Column::Provider
                            .eq(provider.as_str())
                            .and(one_of(
                                backend,
                                Expr::col(deliveries::Column::DeliveryId),
                                ids,
                            ))
                    }))
                }),
        )
        .into_tuple()
        .all(db)
        .await?;
    Ok(by_ledger_key(rows))
}

/// A ledger row as [`recorded`] reads it: id, provider, delivery id, outcome, reason,
/// deployment.
type RecordedRow = (Uuid, String, String, String, String, Option<Uuid>);

fn by_ledger_key(rows: Vec<RecordedRow>) -> HashMap<LedgerKey, Recorded> {
    let mut found = HashMap::new();
    for (id, provider, delivery_id, outcome, reason, deployment_id) in rows {
        if let Ok(provider) = provider.parse::<Provider>() {
            let record = Recorded {
                id,
                outcome,
                reason,
                deployment_id,
            };
            found.insert((provider.as_str(), delivery_id), record);
        }
    }
    found
}

/// The answer to a delivery id already in the ledger, once this copy is counted.
pub(super) async fn duplicate_of<C: ConnectionTrait>(
    db: &C,
    delivery: &Delivery,
) -> Result<Receipt, DbErr> {
    let receipt = recorded(db, &[delivery])
        .await?
        .get(&ledger_key(delivery))
        .map(Recorded::answer_copy)
        .ok_or_else(|| DbErr::RecordNotFound("the conflicting delivery".into()))?;
    count_copies(db, receipt.id, 1, now()).await?;
    Ok(receipt)
}

/// Adds `copies` received copies to a ledger row's "attempts".
pub(super) async fn count_copies<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    copies: i32,
    received_at: NaiveDateTime,
) -> Result<(), DbErr> {
    deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::Attempts,
            Expr::col(deliveries::Column::Attempts).add(copies),
        )
        .col_expr(deliveries::Column::LastReceivedAt, Expr::val(received_at))
        .filter(deliveries::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The batch's lookup on Postgres: every deployment row a batch's events could touch,
/// in one statement of one text for any batch (arrays, not lists of parameters). The
/// arms: rows by Vercel id, rollback rows naming those ids, rows by GitHub deployment
/// id, rows by (app, environment, commit), for each promotion the production row it
/// replaces, and each (app, environment)'s newest `$10` ready rows. Public so that
/// the plan test can `EXPLAIN` what ingest runs.
pub const LOOKUP_POSTGRES: &str = r#"SELECT * FROM deployments WHERE "vercelDeploymentId" = ANY($1)
    UNION ALL
    SELECT * FROM deployments WHERE "rollbackTo" = ANY($1)
    UNION ALL
    SELECT * FROM deployments WHERE "githubDeploymentId" = ANY($5)
    UNION ALL
    SELECT d.* FROM unnest($2::uuid[], $3::text[], $4::text[]) AS k(app, env, sha)
    JOIN deployments d
      ON d."appId" = k.app AND d.environment = k.env AND d."githubCommitSha" = k.sha
    UNION ALL
    SELECT s.* FROM unnest($6::uuid[], $7::timestamp[]) AS p(app, at)
    CROSS JOIN LATERAL (
        SELECT * FROM deployments d
        WHERE d."appId" = p.app AND d.environment = 'production' AND d.status = 'ready'
          AND d."createdAt" < p.at
        ORDER BY d."createdAt" DESC, d.id DESC LIMIT 1) s
    UNION ALL
    SELECT h.* FROM unnest($8::uuid[], $9::text[]) AS p(app, env)
    CROSS JOIN LATERAL (
        SELECT * FROM deployments d
        WHERE d."appId" = p.app AND d.environment = p.env AND d.status = 'ready'
        ORDER BY d."createdAt" DESC, d.id DESC LIMIT $10) h"#;

/// The batch's lookup on SQLite, as [`LOOKUP_POSTGRES`] is on Postgres: one text for
/// any batch, so that each connection prepares it once (sqlx keeps prepared statements
/// by their text). Built from the batch's lists (`IN (?, ?, …)`, an `OR` group per
/// commit, an arm per pair), nearly every batch was a new text, and preparing it about
/// half of what ingest cost the server on SQLite. SQLite has no arrays, so each list
/// is one JSON text that `json_each` expands, uuids (16-byte blobs there) as hex that
/// `unhex` turns back. The arms: rows by Vercel id (`?1`), rollback rows naming one
/// of those ids, rows by GitHub deployment id (`?2`), rows by [app, environment,
/// commit] (`?3`), and each [app, environment]'s newest [`HEAD_WINDOW`] ready rows
/// (`?4`); that count is written into the text, as a bound `LIMIT` makes SQLite plan
/// the statement again each time it is bound (it reads the value to plan). An
/// empty array costs nothing but its parse. `CROSS JOIN` keeps SQLite walking the
/// JSON and probing the table, not the other way round (without statistics it may
/// rather walk an index on status), and the literal status lets it use the partial
/// index of ready rows. The id arms name their index (`INDEXED BY`): SQLite's
/// statistics count NULLs as one value, so where no row has a GitHub deployment id
/// (Vercel-only deploys) or a Vercel id (GitHub-only CD) they say each id matches
/// every row, and the planner read the whole table for every batch (a 100,000-row
/// history: 560 deliveries/s instead of 2,700). Public so that the plan test can
/// `EXPLAIN` what ingest runs.
pub static LOOKUP_SQLITE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"SELECT * FROM deployments INDEXED BY uq_deployments_vercel_deployment_id_set
    WHERE "vercelDeploymentId" IN (SELECT value FROM json_each(?1))
    UNION ALL
    SELECT * FROM deployments INDEXED BY idx_deployments_rollback_to
    WHERE "rollbackTo" IN (SELECT value FROM json_each(?1))
    UNION ALL
    SELECT * FROM deployments INDEXED BY uq_deployments_github_deployment_id_set
    WHERE "githubDeploymentId" IN (SELECT value FROM json_each(?2))
    UNION ALL
    SELECT d.* FROM jsonb_each(?3) AS k CROSS JOIN deployments AS d
    WHERE d."appId" = unhex(k.value ->> 0) AND d.environment = k.value ->> 1
      AND d."githubCommitSha" = k.value ->> 2
    UNION ALL
    SELECT d.* FROM jsonb_each(?4) AS p CROSS JOIN deployments AS d
    WHERE d.id IN (SELECT x.id FROM deployments AS x
        WHERE x."appId" = unhex(p.value ->> 0) AND x.environment = p.value ->> 1
          AND x.status = 'ready'
        ORDER BY x."createdAt" DESC, x.id DESC LIMIT {HEAD_WINDOW})"#
    )
});

/// The apps a batch names on SQLite: by repository, lowercased (`?1`, a JSON array),
/// or by Vercel project id (`?2`). One text for any batch, as [`LOOKUP_SQLITE`]; each
/// term goes through its index (SQLite's "multi-index OR"). Public for the plan test.
pub const APPS_SQLITE: &str = r#"SELECT * FROM apps
    WHERE lower("githubRepo") IN (SELECT value FROM json_each(?1))
       OR "vercelProjectId" IN (SELECT value FROM json_each(?2))"#;

/// The ledger rows already recorded for a batch on SQLite, given its deliveries'
/// [provider, delivery id] pairs as one JSON array (`?1`): one text for any batch,
/// each pair a probe of the ledger's unique key. Public for the plan test.
pub const RECORDED_SQLITE: &str = r#"SELECT w.id, w.provider, w."deliveryId", w.outcome, w.reason,
       w."deploymentId"
    FROM jsonb_each(?1) AS k CROSS JOIN webhook_deliveries AS w
    WHERE w.provider = k.value ->> 0 AND w."deliveryId" = k.value ->> 1"#;

/// Reads what `events` can touch: the apps they name, locked on Postgres in id order
/// (so that concurrent transactions queue instead of deadlocking) with their
/// versions raised (see [`WRITE_UNLOCKED`]), then every deployment row they could
/// look up.
pub(super) async fn read_snapshot<'e>(
    txn: &DatabaseTransaction,
    events: impl IntoIterator<Item = &'e Event> + Clone,
) -> Result<Snapshot, DbErr> {
    let apps = read_apps(txn, &AppKeys::of(events.clone()), true).await?;
    let apps = apps.into_iter().map(|(app, _)| app).collect();
    read_rows(txn, Snapshot::new(apps), events).await
}

/// One app, as a locked batch takes it: on Postgres locked, and its version raised
/// (see [`WRITE_UNLOCKED`]). For a writer of its rows outside ingest.
pub(crate) async fn lock_app(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> Result<Option<apps::Model>, DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return apps::Entity::find_by_id(id).one(txn).await;
    }
    let sql = r#"UPDATE apps SET "ingestVersion" = "ingestVersion" + 1 WHERE id = $1 RETURNING *"#;
    apps::Entity::find()
        .from_raw_sql(postgres_statement(sql, [id.into()]))
        .one(txn)
        .await
}

/// The apps a batch names, by index: by repository, lowercased, or by Vercel
/// project; `repositories` and `projects` are the placeholders of two `text[]`
/// parameters (`$1`, `$2`).
pub(super) fn named_apps(repositories: &str, projects: &str) -> String {
    format!(
        r#"SELECT id FROM apps WHERE lower("githubRepo") = ANY({repositories})
    UNION SELECT id FROM apps WHERE "vercelProjectId" = ANY({projects})"#
    )
}

/// The apps `keys` name, each with its version (0 on SQLite, which keeps none). On
/// Postgres with `lock`, each is locked, in id order, and its version raised: the
/// locked batch may change its rows, and an unlocked one that read them before must
/// not then write.
pub(super) async fn read_apps<C: ConnectionTrait>(
    db: &C,
    keys: &AppKeys,
    lock: bool,
) -> Result<Vec<(apps::Model, i64)>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        // One statement text for any batch (arrays, not lists of parameters), so
        // it is parsed once per connection; each text is built once per process.
        static READ: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT * FROM apps WHERE id IN ({})",
                named_apps("$1", "$2")
            )
        });
        static LOCK: LazyLock<String> = LazyLock::new(|| {
            format!(
                r#"UPDATE apps SET "ingestVersion" = apps."ingestVersion" + 1
                FROM (SELECT id FROM apps WHERE id IN ({}) ORDER BY id FOR UPDATE) l
                WHERE apps.id = l.id RETURNING apps.*"#,
                named_apps("$1", "$2")
            )
        });
        let sql = if lock { &LOCK } else { &READ };
        let values = [strings(&keys.repositories), strings(&keys.projects)];
        let rows = db.query_all_raw(postgres_statement(sql, values)).await?;
        return rows
            .iter()
            .map(|row| {
                Ok((
                    apps::Model::from_query_result(row, "")?,
                    row.try_get("", "ingestVersion")?,
                ))
            })
            .collect();
    }
    // SQLite has no row locks: its writers already run one at a time.
    let values = [json(&keys.repositories)?, json(&keys.projects)?];
    let apps = apps::Entity::find()
        .from_raw_sql(sqlite_statement(APPS_SQLITE, values))
        .all(db)
        .await?;
    Ok(apps.into_iter().map(|app| (app, 0)).collect())
}

/// Adds to `snapshot` every deployment row `events` could look up, given its apps.
pub(super) async fn read_rows<'e, C: ConnectionTrait>(
    txn: &C,
    mut snapshot: Snapshot,
    events: impl IntoIterator<Item = &'e Event> + Clone,
) -> Result<Snapshot, DbErr> {
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let keys = snapshot.row_keys(events.clone());
    if keys.is_empty() {
        return Ok(snapshot);
    }
    let rows = if postgres {
        // Arms whose arrays are empty cost an index probe each. A row two arms find
        // comes twice and is held once: cheaper than Postgres comparing whole rows.
        let (apps, environments, shas): (Vec<Uuid>, Vec<String>, Vec<String>) = keys
            .commits
            .iter()
            .map(|(app, env, sha)| (*app, env.as_str().to_owned(), sha.clone()))
            .collect();
        let (serving_apps, serving_at): (Vec<Uuid>, Vec<NaiveDateTime>) =
            keys.serving.iter().copied().unzip();
        let (head_apps, head_environments): (Vec<Uuid>, Vec<String>) = keys
            .heads
            .iter()
            .map(|(app, env)| (*app, env.as_str().to_owned()))
            .unzip();
        let values = [
            strings(&keys.vercel_ids),
            apps.into(),
            environments.into(),
            shas.into(),
            keys.github_ids.iter().copied().collect::<Vec<i64>>().into(),
            serving_apps.into(),
            serving_at.into(),
            head_apps.into(),
            head_environments.into(),
            (HEAD_WINDOW as i64).into(),
        ];
        deployments::Entity::find()
            .from_raw_sql(postgres_statement(LOOKUP_POSTGRES, values))
            .all(txn)
            .await?
    } else {
        use deployments::Column;
        let commits: Vec<(String, &str, &str)> = keys
            .commits
            .iter()
            .map(|(app, env, sha)| (hex_id(*app), env.as_str(), sha.as_str()))
            .collect();
        let heads: Vec<(String, &str)> = keys
            .heads
            .iter()
            .map(|(app, env)| (hex_id(*app), env.as_str()))
            .collect();
        let mut rows = if keys.vercel_ids.is_empty()
            && keys.github_ids.is_empty()
            && commits.is_empty()
            && heads.is_empty()
        {
            Vec::new()
        } else {
            let values = [
                json(&keys.vercel_ids)?,
                json(&keys.github_ids)?,
                json(&commits)?,
                json(&heads)?,
            ];
            deployments::Entity::find()
                .from_raw_sql(sqlite_statement(&LOOKUP_SQLITE, values))
                .all(txn)
                .await?
        };
        // Promotions are rare: a lookup each.
        for (app_id, at) in &keys.serving {
            rows.extend(
                deployments::Entity::find()
                    .filter(Column::AppId.eq(*app_id))
                    .filter(Column::Environment.eq(Environment::Production))
                    .filter(Column::Status.eq(Status::Ready))
                    .filter(Column::CreatedAt.lt(*at))
                    .order_by_desc(Column::CreatedAt)
                    .order_by_desc(Column::Id)
                    .one(txn)
                    .await?,
            );
        }
        rows
    };
    snapshot.add_rows(rows);
    snapshot.add_heads(keys.heads.iter().copied());
    let github = events
        .clone()
        .into_iter()
        .any(|event| matches!(event, Event::GithubDeployment(_)));
    if github {
        let targets = snapshot.unread_rollback_targets(&keys);
        if !targets.is_empty() {
            let rollbacks = deployments::Entity::find()
                .filter(one_of(
                    txn.get_database_backend(),
                    Expr::col(deployments::Column::RollbackTo),
                    targets.into_iter().collect(),
                ))
                .all(txn)
                .await?;
            snapshot.add_rows(rollbacks);
        }
    }
    Ok(snapshot)
}

/// Works out "previousDeploymentId" again, in each (app, environment) given, for the
/// ready rows created at or after the time given: each points at the ready row of
/// its app and environment just before it in ("createdAt", id) order. Derived from
/// the table as it stands, it is the same whatever order the rows arrived in. For
/// the chains [`Snapshot::link_previous`] could not extend in memory, and for the
/// sweeper's settlements.
pub(crate) async fn link_previous(
    txn: &DatabaseTransaction,
    changes: &[(Uuid, Environment, NaiveDateTime)],
) -> Result<(), DbErr> {
    if changes.is_empty() {
        return Ok(());
    }
    const PREVIOUS: &str = r#"(SELECT p.id FROM deployments p
        WHERE p."appId" = d."appId" AND p.environment = d.environment AND p.status = 'ready'
          AND (p."createdAt" < d."createdAt" OR (p."createdAt" = d."createdAt" AND p.id < d.id))
        ORDER BY p."createdAt" DESC, p.id DESC LIMIT 1)"#;
    if txn.get_database_backend() == DbBackend::Postgres {
        let sql = format!(
            r#"WITH c AS (
                SELECT d.id, {PREVIOUS} AS prev
                FROM unnest($1::uuid[], $2::text[], $3::timestamp[]) AS k(app, env, since)
                JOIN deployments d ON d."appId" = k.app AND d.environment = k.env
                 AND d."createdAt" >= k.since AND d.status = 'ready')
            UPDATE deployments SET "previousDeploymentId" = c.prev FROM c
            WHERE deployments.id = c.id
              AND deployments."previousDeploymentId" IS DISTINCT FROM c.prev"#
        );
        let mut apps = Vec::new();
        let mut environments = Vec::new();
        let mut since = Vec::new();
        for (app, env, at) in changes {
            apps.push(*app);
            environments.push(env.as_str().to_owned());
            since.push(*at);
        }
        txn.execute_raw(postgres_statement(
            &sql,
            [apps.into(), environments.into(), since.into()],
        ))
        .await?;
    } else {
        let sql = format!(
            r#"UPDATE deployments AS d SET "previousDeploymentId" = {PREVIOUS}
            WHERE d."appId" = ? AND d.environment = ? AND d.status = 'ready' AND d."createdAt" >= ?"#
        );
        for (app, env, at) in changes {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                &sql,
                [(*app).into(), env.as_str().into(), (*at).into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// `expr IN (values)` with one parameter, so that the statement text is the same
/// for any number of values: on Postgres `expr = ANY($1)`, an array; on SQLite
/// `expr IN (SELECT value FROM json_each(?))`, a JSON array.
fn one_of(backend: DbBackend, expr: impl Into<Expr>, values: Vec<String>) -> Expr {
    let expr = expr.into();
    if backend == DbBackend::Postgres {
        expr.eq(Func::cust("ANY").arg(Expr::val(values)))
    } else {
        let list = serde_json::to_string(&values).expect("strings encode as JSON");
        expr.in_subquery(
            sea_orm::sea_query::Query::select()
                .column("value")
                .from_function(Func::cust("json_each").arg(list), "j")
                .to_owned(),
        )
    }
}
