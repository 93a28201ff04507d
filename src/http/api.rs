//! `/api`: the app registry, deployment history and the delivery ledger. Handlers
//! parse the request, call the queries in [`crate::store`] and map their errors.

use std::fmt::Display;
use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use sea_orm::EntityTrait;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody, Result};
use crate::stats::{self, Stats, Window};
use crate::store::apps::{self, CreateAppError, NewApp};
use crate::store::deliveries;
use crate::store::deployments::{self, CreateDeploymentError, Environment, NewDeployment};
use crate::store::page::{Cursor, Limit, Page};

/// The query of every deployment list. Empty values count as absent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// Only this environment.
    #[param(value_type = Option<Environment>)]
    environment: Option<String>,
    /// Only this status.
    #[param(schema_with = deployments::status_schema)]
    status: Option<String>,
    /// Rows per page, 1 to 500; 50 when absent.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

impl DeploymentQuery {
    fn parse(self, app_id: Option<Uuid>) -> Result<(deployments::Filter, Option<Cursor>, Limit)> {
        let filter = deployments::Filter {
            app_id,
            environment: parse(self.environment)?,
            status: parse(self.status)?,
        };
        Ok((
            filter,
            parse(self.cursor)?,
            parse(self.limit)?.unwrap_or_default(),
        ))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    /// Required: `staging` or `production`.
    #[param(value_type = Environment)]
    environment: Option<String>,
}

/// The query of the delivery list. Empty values count as absent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this outcome.
    #[param(schema_with = deliveries::outcome_schema)]
    outcome: Option<String>,
    /// Only this provider.
    #[param(schema_with = deliveries::provider_schema)]
    provider: Option<String>,
    /// Rows per page, 1 to 500; 50 when absent.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The window of `GET /api/stats`. Empty values count as absent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct StatsQuery {
    /// Only this app.
    #[param(value_type = Option<Uuid>)]
    app_id: Option<String>,
    /// Only this environment.
    #[param(value_type = Option<Environment>)]
    environment: Option<String>,
    /// Rows created at or after this time (RFC 3339); default: 30 days before `until`.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    since: Option<String>,
    /// Rows created before this time (RFC 3339); default: now.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    until: Option<String>,
}

/// A query value through its `FromStr`; a refusal is a 400 with the parser's sentence.
fn parse<T>(value: Option<String>) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|e: T::Err| ApiError::BadRequest(e.to_string()))
        })
        .transpose()
}

fn query<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn uuid(kind: &str, raw: &str) -> Result<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a {kind} id (a UUID)")))
}

/// Every registered app, newest first (one page: the registry is small).
#[utoipa::path(
    get, path = "/api/apps", tag = "apps",
    responses(
        (status = 200, body = Page<apps::Model>),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_apps(State(state): State<AppState>) -> Result<Json<Page<apps::Model>>> {
    Ok(Json(Page {
        items: apps::all(state.ingest.db()).await?,
        next_cursor: None,
    }))
}

/// Register an app so its deliveries can be matched.
#[utoipa::path(
    post, path = "/api/apps", tag = "apps",
    request_body = NewApp,
    responses(
        (status = 201, body = apps::Model),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "API_TOKEN is not set", body = ErrorBody),
        (status = 409, description = "name or Vercel project id taken", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_app(
    State(state): State<AppState>,
    body: std::result::Result<Json<NewApp>, JsonRejection>,
) -> Result<(StatusCode, Json<apps::Model>)> {
    let Json(new_app) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let app = new_app
        .create(state.ingest.db())
        .await
        .map_err(|e| match e {
            CreateAppError::Invalid(msg) => ApiError::BadRequest(msg),
            CreateAppError::Conflict => ApiError::Conflict(e.to_string()),
            CreateAppError::Db(err) => err.into(),
        })?;
    Ok((StatusCode::CREATED, Json(app)))
}

#[utoipa::path(
    get, path = "/api/apps/{appId}", tag = "apps",
    params(("appId" = Uuid, Path, description = "The app's id")),
    responses(
        (status = 200, body = apps::Model),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<apps::Model>> {
    Ok(Json(find_app(&state, &app_id).await?))
}

/// An app's deployment history, newest first.
#[utoipa::path(
    get, path = "/api/apps/{appId}/deployments", tag = "deployments",
    params(("appId" = Uuid, Path, description = "The app's id"), DeploymentQuery),
    responses(
        (status = 200, body = Page<deployments::Model>),
        (status = 400, description = "a malformed id or query value", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_app_deployments(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    params: std::result::Result<Query<DeploymentQuery>, QueryRejection>,
) -> Result<Json<Page<deployments::Model>>> {
    let app = find_app(&state, &app_id).await?;
    let (filter, cursor, limit) = query(params)?.parse(Some(app.id))?;
    Ok(Json(
        deployments::history(state.ingest.db(), filter, cursor, limit).await?,
    ))
}

/// The newest deployment of an app to one environment, whatever its status.
#[utoipa::path(
    get, path = "/api/apps/{appId}/deployments/latest", tag = "deployments",
    params(("appId" = Uuid, Path, description = "The app's id"), LatestQuery),
    responses(
        (status = 200, body = deployments::Model),
        (status = 400, description = "environment missing or invalid", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app, or no deployment to that environment yet", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn latest_app_deployment(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    params: std::result::Result<Query<LatestQuery>, QueryRejection>,
) -> Result<Json<deployments::Model>> {
    let app = find_app(&state, &app_id).await?;
    let environment: Environment = parse(query(params)?.environment)?.ok_or_else(|| {
        ApiError::BadRequest("environment is required: staging or production".into())
    })?;
    deployments::latest(state.ingest.db(), app.id, environment)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{} has no {} deployment yet",
                app.name,
                environment.as_str()
            ))
        })
}

/// Record a `pending` deployment an orchestrator is about to start; webhooks for the
/// same commit then move this row along.
#[utoipa::path(
    post, path = "/api/apps/{appId}/deployments", tag = "deployments",
    params(("appId" = Uuid, Path, description = "The app's id")),
    request_body = NewDeployment,
    responses(
        (status = 201, body = deployments::Model,
            headers(("location" = String, description = "/api/deployments/{id}"))),
        (status = 400, description = "invalid environment or commit SHA", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "API_TOKEN is not set", body = ErrorBody),
        (status = 404, description = "no such app", body = ErrorBody),
        (status = 409, description = "this commit already has a pending row for that environment, not yet linked to Vercel", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_deployment(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    body: std::result::Result<Json<NewDeployment>, JsonRejection>,
) -> Result<(
    StatusCode,
    [(header::HeaderName, String); 1],
    Json<deployments::Model>,
)> {
    let app = find_app(&state, &app_id).await?;
    let Json(new) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let deployment = new
        .create(state.ingest.db(), app.id)
        .await
        .map_err(|e| match e {
            CreateDeploymentError::Invalid(msg) => ApiError::BadRequest(msg),
            CreateDeploymentError::Conflict => ApiError::Conflict(e.to_string()),
            CreateDeploymentError::Db(err) => err.into(),
        })?;
    let location = format!("/api/deployments/{}", deployment.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(deployment),
    ))
}

/// Deployments of every app, newest first: e.g. `?status=failed`.
#[utoipa::path(
    get, path = "/api/deployments", tag = "deployments",
    params(DeploymentQuery),
    responses(
        (status = 200, body = Page<deployments::Model>),
        (status = 400, description = "a malformed query value", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_deployments(
    State(state): State<AppState>,
    params: std::result::Result<Query<DeploymentQuery>, QueryRejection>,
) -> Result<Json<Page<deployments::Model>>> {
    let (filter, cursor, limit) = query(params)?.parse(None)?;
    Ok(Json(
        deployments::history(state.ingest.db(), filter, cursor, limit).await?,
    ))
}

#[utoipa::path(
    get, path = "/api/deployments/{id}", tag = "deployments",
    params(("id" = Uuid, Path, description = "The deployment's id")),
    responses(
        (status = 200, body = deployments::Model),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<deployments::Model>> {
    let id = uuid("deployment", &id)?;
    deployments::Entity::find_by_id(id)
        .one(state.ingest.db())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no deployment has id {id}")))
}

/// The delivery ledger, newest first, without raw bodies.
#[utoipa::path(
    get, path = "/api/deliveries", tag = "deliveries",
    params(DeliveryQuery),
    responses(
        (status = 200, body = Page<deliveries::Summary>),
        (status = 400, description = "a malformed query value", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    params: std::result::Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<Page<deliveries::Summary>>> {
    let params = query(params)?;
    let filter = deliveries::Filter {
        outcome: parse(params.outcome)?,
        provider: parse(params.provider)?,
    };
    let (cursor, limit) = (
        parse(params.cursor)?,
        parse(params.limit)?.unwrap_or_default(),
    );
    Ok(Json(
        deliveries::list(state.ingest.db(), filter, cursor, limit).await?,
    ))
}

/// One delivery with its raw body: `body` if it is UTF-8, else `bodyBase64`.
#[utoipa::path(
    get, path = "/api/deliveries/{id}", tag = "deliveries",
    params(("id" = Uuid, Path, description = "The ledger row's id (not the provider's delivery id)")),
    responses(
        (status = 200, body = deliveries::Detail),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<deliveries::Detail>> {
    let id = uuid("delivery", &id)?;
    deliveries::Entity::find_by_id(id)
        .one(state.ingest.db())
        .await?
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::NotFound(format!("no delivery has id {id}")))
}

/// The DORA figures of the deployments created in `[since, until)`: all apps, or one
/// app, or one environment. Rollbacks are not counted as deployments.
#[utoipa::path(
    get, path = "/api/stats", tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, body = Stats),
        (status = 400, description = "a malformed id, environment or time, or since not before until", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn stats(
    State(state): State<AppState>,
    params: std::result::Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Stats>> {
    let params = query(params)?;
    let time = |name: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| stats::parse_time(name, &v))
            .transpose()
            .map_err(ApiError::BadRequest)
    };
    let (since, until) = (time("since", params.since)?, time("until", params.until)?);
    let window =
        Window::between(since, until, crate::webhooks::now()).map_err(ApiError::BadRequest)?;
    let environment = parse(params.environment)?;
    let app_id = match params.app_id.filter(|v| !v.is_empty()) {
        Some(raw) => Some(find_app(&state, &raw).await?.id),
        None => None,
    };
    let window = Window {
        app_id,
        environment,
        ..window
    };
    Ok(Json(stats::compute(state.ingest.db(), &window).await?))
}

async fn find_app(state: &AppState, app_id: &str) -> Result<apps::Model> {
    let id = uuid("app", app_id)?;
    apps::Entity::find_by_id(id)
        .one(state.ingest.db())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no app has id {id}")))
}
