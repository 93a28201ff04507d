//! `/deliveries/{id}`: one ledger row with its raw body, as received (escaped).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maud::html;
use sea_orm::EntityTrait;
use uuid::Uuid;

use super::view::{self, Chrome};
use super::{PageError, PageResult, auth};
use crate::http::AppState;
use crate::store::deliveries::{self, Detail};
use crate::store::{apps, deployments};

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let db = state.ingest.db();
    let id: Uuid = id
        .parse()
        .map_err(|_| PageError::BadRequest(format!("{id:?} is not a delivery id (a UUID)")))?;
    let row = deliveries::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no delivery has the id {id}")))?;
    let detail = Detail::from(row);
    let d = &detail.delivery;
    let deployment = match d.deployment_id {
        Some(id) => deployments::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let app = match &deployment {
        Some(dep) => apps::Entity::find_by_id(dep.app_id).one(db).await?,
        None => None,
    };
    let now = crate::webhooks::now();
    let body = html! {
        section.panel #delivery {
            h1 { (d.provider) " " code { (d.event_type) } " " (view::outcome(&d.outcome)) }
            dl.facts {
                dt { "Delivery id" } dd { code { (d.delivery_id) } }
                dt { "Ledger id" } dd { code { (d.id) } }
                dt { "Received" } dd { (view::time(d.received_at, now)) }
                @if d.attempts > 1 {
                    dt { "Copies received" } dd { (d.attempts)
                        @if let Some(last) = d.last_received_at { ", the latest " (view::time(last, now)) } }
                }
                dt { "Source" } dd { (d.source) }
                dt { "Outcome" } dd { (view::outcome(&d.outcome)) " " (d.reason) }
                @if let Some(dep) = &deployment {
                    dt { "Deployment" } dd {
                        @if let Some(app) = &app {
                            a href={ "/apps/" (app.id) } { (app.name) } " · "
                        }
                        (dep.environment.as_str()) " " (view::deployment_summary(dep, now))
                    }
                }
            }
            h2 { "Body" }
            @match (&detail.body, &detail.body_base64) {
                (Some(text), _) => pre.body { (text) },
                (None, Some(b64)) => {
                    p.muted { "The body is not UTF-8; shown as base64." }
                    pre.body { (b64) }
                }
                (None, None) => p.muted { "Empty body." },
            }
        }
    };
    let chrome = Chrome {
        logout: auth::has_session(&state, &headers),
        live: None,
    };
    Ok(view::layout("Delivery", chrome, body).into_response())
}
