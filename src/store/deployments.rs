//! The seed's `deployments` table, and the history queries the API and CLI share.

use sea_orm::entity::prelude::*;
use sea_orm::{DerivePartialModel, QueryOrder, QuerySelect, Select, Statement};
use serde::Serialize;
use utoipa::ToSchema;

use super::page::{Cursor, Limit, Page};
pub use crate::deployments::state::Status;

/// The seed stores environments as these lowercase strings.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[sea_orm(string_value = "staging")]
    Staging,
    #[sea_orm(string_value = "production")]
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "unknown environment {other:?}: expected staging or production"
            )),
        }
    }
}

/// One deployment of one app to one environment.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, ToSchema)]
#[sea_orm(table_name = "deployments")]
#[serde(rename_all = "camelCase")]
#[schema(as = Deployment)]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_name = "appId")]
    pub app_id: Uuid,
    pub environment: Environment,
    #[schema(schema_with = status_schema)]
    pub status: Status,
    #[sea_orm(column_name = "deploymentUrl")]
    pub deployment_url: Option<String>,
    #[sea_orm(column_name = "githubCommitSha")]
    pub github_commit_sha: Option<String>,
    #[sea_orm(column_name = "vercelDeploymentId")]
    pub vercel_deployment_id: Option<String>,
    #[sea_orm(column_name = "createdAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub created_at: DateTime,
    #[sea_orm(column_name = "updatedAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub updated_at: DateTime,
    #[sea_orm(column_name = "errorMessage")]
    pub error_message: Option<String>,
    /// From the start of the build to ready or failed, by the providers' event times.
    #[sea_orm(column_name = "buildDurationMs")]
    pub build_duration_ms: Option<i64>,
    /// Why a failed row failed; only `error` counts as a change failure.
    #[sea_orm(column_name = "failureReason")]
    #[schema(schema_with = failure_reason_schema)]
    pub failure_reason: Option<FailureReason>,
    /// Who pushed or triggered the deployment.
    #[sea_orm(column_name = "triggeredBy")]
    pub triggered_by: Option<String>,
    /// Where to read the build's logs.
    #[sea_orm(column_name = "buildLogs")]
    pub build_logs: Option<String>,
    /// Provider time the build started.
    #[sea_orm(column_name = "startedAt")]
    #[serde(serialize_with = "crate::store::utc_option")]
    pub started_at: Option<DateTime>,
    /// Provider time the deployment became ready or failed.
    #[sea_orm(column_name = "finishedAt")]
    #[serde(serialize_with = "crate::store::utc_option")]
    pub finished_at: Option<DateTime>,
    /// The pushed head commit's time (for lead time).
    #[sea_orm(column_name = "committedAt")]
    #[serde(serialize_with = "crate::store::utc_option")]
    pub committed_at: Option<DateTime>,
    /// For a ready row: the ready deployment of the same app and environment it replaced.
    #[sea_orm(column_name = "previousDeploymentId")]
    pub previous_deployment_id: Option<Uuid>,
    /// This row records a rollback (or a promotion of an older deployment).
    #[sea_orm(column_name = "isRollback")]
    pub is_rollback: bool,
    /// The GitHub deployment (`deployment.id`) whose statuses this row records.
    #[sea_orm(column_name = "githubDeploymentId")]
    pub github_deployment_id: Option<i64>,
    /// For a rollback row: the Vercel deployment production went back to.
    #[sea_orm(column_name = "rollbackTo")]
    pub rollback_to: Option<String>,
}

/// Why a failed deployment failed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum FailureReason {
    /// The build or deploy failed: a change failure.
    #[sea_orm(string_value = "error")]
    Error,
    /// Someone canceled it: not a change failure.
    #[sea_orm(string_value = "canceled")]
    Canceled,
    /// No final event came in time (the sweeper): not a change failure.
    #[sea_orm(string_value = "timeout")]
    Timeout,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "error",
            FailureReason::Canceled => "canceled",
            FailureReason::Timeout => "timeout",
        }
    }
}

/// The schema of the nullable `failureReason`.
pub fn failure_reason_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]))
        .enum_values(Some(["error", "canceled", "timeout"]))
        .build()
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::apps::Entity",
        from = "Column::AppId",
        to = "super::apps::Column::Id",
        on_delete = "Cascade"
    )]
    App,
}

impl Related<super::apps::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::App.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// A new row with a fresh id and nothing known beyond what is given.
    pub fn new(
        app_id: Uuid,
        environment: Environment,
        status: Status,
        created_at: DateTime,
        updated_at: DateTime,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            app_id,
            environment,
            status,
            deployment_url: None,
            github_commit_sha: None,
            vercel_deployment_id: None,
            created_at,
            updated_at,
            error_message: None,
            build_duration_ms: None,
            failure_reason: None,
            triggered_by: None,
            build_logs: None,
            started_at: None,
            finished_at: None,
            committed_at: None,
            previous_deployment_id: None,
            is_rollback: false,
            github_deployment_id: None,
            rollback_to: None,
        }
    }
}

/// `Status` lives with the state machine; its schema is the list of its values.
pub fn status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(Status::ALL.map(Status::as_str)))
        .build()
}

/// Which deployments a history lists; every field narrows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub app_id: Option<Uuid>,
    pub environment: Option<Environment>,
    pub status: Option<Status>,
}

/// The statement behind [`history`]: newest first on ("createdAt", id), after the
/// cursor, one row more than the page. Indexes: ("appId", environment, "createdAt"),
/// ("appId", "createdAt", id), (status, "createdAt", id) or ("createdAt", id).
pub fn history_query(filter: Filter, cursor: Option<Cursor>, limit: Limit) -> Select<Entity> {
    let mut select = Entity::find();
    if let Some(app_id) = filter.app_id {
        select = select.filter(Column::AppId.eq(app_id));
    }
    if let Some(environment) = filter.environment {
        select = select.filter(Column::Environment.eq(environment));
    }
    if let Some(status) = filter.status {
        select = select.filter(Column::Status.eq(status));
    }
    if let Some(cursor) = cursor {
        select = select.filter(cursor.rows_after(Column::CreatedAt, Column::Id));
    }
    select
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(limit.get() + 1)
}

/// A page of deployment history, newest first.
pub async fn history<C: ConnectionTrait>(
    db: &C,
    filter: Filter,
    cursor: Option<Cursor>,
    limit: Limit,
) -> Result<Page<Model>, DbErr> {
    let rows = history_query(filter, cursor, limit).all(db).await?;
    Ok(Page::from_rows(rows, limit, |d| Cursor {
        at: d.created_at,
        id: d.id,
    }))
}

/// The statement behind [`history_before`]: the page of rows just before the cursor
/// in newest-first order, read oldest first (the reverse scan of the same indexes),
/// one row more than the page.
pub fn history_before_query(filter: Filter, cursor: Cursor, limit: Limit) -> Select<Entity> {
    let mut select = Entity::find();
    if let Some(app_id) = filter.app_id {
        select = select.filter(Column::AppId.eq(app_id));
    }
    if let Some(environment) = filter.environment {
        select = select.filter(Column::Environment.eq(environment));
    }
    if let Some(status) = filter.status {
        select = select.filter(Column::Status.eq(status));
    }
    select
        .filter(cursor.rows_before(Column::CreatedAt, Column::Id))
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .limit(limit.get() + 1)
}

/// The page before `cursor` (the first row of the page being shown), newest first,
/// and whether still newer rows come before it.
pub async fn history_before<C: ConnectionTrait>(
    db: &C,
    filter: Filter,
    cursor: Cursor,
    limit: Limit,
) -> Result<(Vec<Model>, bool), DbErr> {
    let mut rows = history_before_query(filter, cursor, limit).all(db).await?;
    let more = rows.len() as u64 > limit.get();
    rows.truncate(limit.get() as usize);
    rows.reverse();
    Ok((rows, more))
}

/// The newest deployment of every app to every environment, in one statement: per
/// (app, environment) a `max("createdAt")` probe and an equality lookup, both on
/// idx_deployments_app_env_created, so the cost grows with the number of apps, not
/// with the history, and an environment an app never deployed to costs no scan.
/// (`ORDER BY "createdAt" DESC, id DESC LIMIT 1` per pair lets SQLite pick the
/// ("appId", "createdAt", id) index instead and read a whole app's history when the
/// environment has no row.)
/// With `app`, only that app's (at most two rows).
pub fn latest_everywhere_statement(backend: sea_orm::DbBackend, app: Option<Uuid>) -> Statement {
    let sql = r#"SELECT d.* FROM apps
CROSS JOIN (SELECT 'staging' AS environment UNION ALL SELECT 'production') AS envs
JOIN deployments d ON d."appId" = apps.id AND d.environment = envs.environment
 AND d."createdAt" = (SELECT max(x."createdAt") FROM deployments x
                      WHERE x."appId" = apps.id AND x.environment = envs.environment)"#;
    match app {
        None => Statement::from_string(backend, sql),
        Some(app) => {
            let placeholder = match backend {
                sea_orm::DbBackend::Postgres => "$1",
                _ => "?",
            };
            Statement::from_sql_and_values(
                backend,
                format!("{sql}\nWHERE apps.id = {placeholder}"),
                [app.into()],
            )
        }
    }
}

/// The newest deployment of every app to every environment that has one, ties on
/// "createdAt" broken by the greater id as [`latest`] does; in no set order.
pub async fn latest_everywhere<C: ConnectionTrait>(
    db: &C,
    app: Option<Uuid>,
) -> Result<Vec<Model>, DbErr> {
    let rows = Entity::find()
        .from_raw_sql(latest_everywhere_statement(db.get_database_backend(), app))
        .all(db)
        .await?;
    let mut newest: std::collections::HashMap<(Uuid, Environment), Model> =
        std::collections::HashMap::new();
    for row in rows {
        match newest.entry((row.app_id, row.environment)) {
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                if row.id > seen.get().id {
                    seen.insert(row);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(row);
            }
        }
    }
    Ok(newest.into_values().collect())
}

/// What the charts of an app draw from one deployment.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Point {
    pub created_at: DateTime,
    pub status: Status,
    pub build_duration_ms: Option<i64>,
}

/// An app's deployments created at or after `since`, newest first, at most `cap`
/// of them; served by idx_deployments_app_created.
pub async fn points<C: ConnectionTrait>(
    db: &C,
    app_id: Uuid,
    since: DateTime,
    cap: u64,
) -> Result<Vec<Point>, DbErr> {
    points_query(app_id, since, cap)
        .into_partial_model::<Point>()
        .all(db)
        .await
}

/// The statement behind [`points`] (before its columns are narrowed to [`Point`]'s).
pub fn points_query(app_id: Uuid, since: DateTime, cap: u64) -> Select<Entity> {
    Entity::find()
        .filter(Column::AppId.eq(app_id))
        .filter(Column::CreatedAt.gte(since))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(cap)
}

/// The statement behind [`latest`]; served by idx_deployments_app_env_created.
pub fn latest_query(app_id: Uuid, environment: Environment) -> Select<Entity> {
    Entity::find()
        .filter(Column::AppId.eq(app_id))
        .filter(Column::Environment.eq(environment))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(1)
}

/// The newest deployment of an app to an environment, whatever its status.
pub async fn latest<C: ConnectionTrait>(
    db: &C,
    app_id: Uuid,
    environment: Environment,
) -> Result<Option<Model>, DbErr> {
    latest_query(app_id, environment).one(db).await
}

/// What an orchestrator sends to record a deployment it is about to start.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDeployment {
    /// `staging` or `production`.
    pub environment: String,
    /// The commit being deployed: 40 or 64 hex digits.
    #[serde(default)]
    pub github_commit_sha: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateDeploymentError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a deployment of this commit to this environment is already recorded and not yet linked to Vercel"
    )]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl NewDeployment {
    /// Inserts a `pending` row for the app. The caller has checked the app exists.
    pub async fn create<C: ConnectionTrait>(
        self,
        db: &C,
        app_id: Uuid,
    ) -> Result<Model, CreateDeploymentError> {
        let environment: Environment = self
            .environment
            .parse()
            .map_err(CreateDeploymentError::Invalid)?;
        let sha = match self.github_commit_sha {
            Some(sha) if crate::webhooks::is_commit_sha(&sha) => Some(sha.to_ascii_lowercase()),
            Some(sha) => {
                return Err(CreateDeploymentError::Invalid(format!(
                    "githubCommitSha must be 40 or 64 hex digits, got {sha:?}"
                )));
            }
            None => None,
        };
        let now = crate::webhooks::now();
        let row = ActiveModel::from(Model {
            github_commit_sha: sha,
            ..Model::new(app_id, environment, Status::Pending, now, now)
        });
        // Only uq_deployments_unlinked_commit_v2 can fire: the row has a fresh id and no
        // Vercel id.
        row.insert(db).await.map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => CreateDeploymentError::Conflict,
            _ => CreateDeploymentError::Db(e),
        })
    }
}
