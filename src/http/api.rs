//! `/api`: the app registry and deployment history.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Result};
use crate::store::apps::{self, CreateAppError, NewApp};
use crate::store::deployments;

/// Every list answers in this shape, newest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

const DEFAULT_LIMIT: u64 = 50;

pub async fn list_apps(State(state): State<AppState>) -> Result<Json<Page<apps::Model>>> {
    let items = apps::Entity::find()
        .order_by_desc(apps::Column::CreatedAt)
        .order_by_desc(apps::Column::Id)
        .all(state.ingest.db())
        .await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

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

pub async fn get_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<apps::Model>> {
    Ok(Json(find_app(&state, &app_id).await?))
}

pub async fn list_app_deployments(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<Page<deployments::Model>>> {
    let app = find_app(&state, &app_id).await?;
    let items = deployments::Entity::find()
        .filter(deployments::Column::AppId.eq(app.id))
        .order_by_desc(deployments::Column::CreatedAt)
        .order_by_desc(deployments::Column::Id)
        .limit(DEFAULT_LIMIT)
        .all(state.ingest.db())
        .await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

async fn find_app(state: &AppState, app_id: &str) -> Result<apps::Model> {
    let id: Uuid = app_id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{app_id:?} is not an app id (a UUID)")))?;
    apps::Entity::find_by_id(id)
        .one(state.ingest.db())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no app has id {id}")))
}
