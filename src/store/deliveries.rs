//! The delivery ledger, `webhook_deliveries`, and the queries that read it back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sea_orm::entity::prelude::*;
use sea_orm::{DerivePartialModel, QueryOrder, QuerySelect, SelectModel, Selector};
use serde::Serialize;
use utoipa::ToSchema;

use super::page::{Cursor, Limit, Page};
use crate::deployments::ingest::Outcome;
use crate::webhooks::Provider;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "webhook_deliveries")]
#[serde(rename_all = "camelCase")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider: String,
    #[sea_orm(column_name = "deliveryId")]
    pub delivery_id: String,
    #[sea_orm(column_name = "eventType")]
    pub event_type: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    #[sea_orm(column_name = "receivedAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub received_at: DateTime,
    pub outcome: String,
    pub reason: String,
    #[sea_orm(column_name = "deploymentId")]
    pub deployment_id: Option<Uuid>,
    /// Copies of this delivery id received, the first included.
    pub attempts: i32,
    /// When the latest copy was received.
    #[sea_orm(column_name = "lastReceivedAt")]
    #[serde(serialize_with = "crate::store::utc_option")]
    pub last_received_at: Option<DateTime>,
    /// `webhook` (a signed request) or `backfill` (fetched from GitHub with a token).
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A ledger row without its raw body: what lists show.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel, Serialize, ToSchema)]
#[sea_orm(entity = "Entity")]
#[serde(rename_all = "camelCase")]
#[schema(as = Delivery)]
pub struct Summary {
    /// The ledger row's id (not the provider's delivery id).
    pub id: Uuid,
    #[schema(schema_with = provider_schema)]
    pub provider: String,
    /// The provider's delivery id: `X-GitHub-Delivery`, or the Vercel event's `id`.
    pub delivery_id: String,
    pub event_type: String,
    #[serde(serialize_with = "crate::store::utc")]
    pub received_at: DateTime,
    #[schema(schema_with = outcome_schema)]
    pub outcome: String,
    pub reason: String,
    /// The deployment the delivery created or changed, if any.
    pub deployment_id: Option<Uuid>,
    /// Copies of this delivery id received, the first included.
    pub attempts: i32,
    /// When the latest copy was received.
    #[serde(serialize_with = "crate::store::utc_option")]
    pub last_received_at: Option<DateTime>,
    /// `webhook` or `backfill`.
    pub source: String,
}

/// One ledger row with its raw body: `body` when the bytes are UTF-8 (as JSON and
/// form deliveries are), else `bodyBase64`; the other is null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeliveryWithBody)]
pub struct Detail {
    #[serde(flatten)]
    pub delivery: Summary,
    /// The body exactly as received, when it is valid UTF-8.
    pub body: Option<String>,
    /// The body as standard base64, only when it is not valid UTF-8.
    pub body_base64: Option<String>,
}

impl From<Model> for Detail {
    fn from(m: Model) -> Self {
        let (body, body_base64) = match String::from_utf8(m.body) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(STANDARD.encode(e.into_bytes()))),
        };
        Detail {
            delivery: Summary {
                id: m.id,
                provider: m.provider,
                delivery_id: m.delivery_id,
                event_type: m.event_type,
                received_at: m.received_at,
                outcome: m.outcome,
                reason: m.reason,
                deployment_id: m.deployment_id,
                attempts: m.attempts,
                last_received_at: m.last_received_at,
                source: m.source,
            },
            body,
            body_base64,
        }
    }
}

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}

pub fn provider_schema() -> utoipa::openapi::Object {
    string_enum([Provider::Github.as_str(), Provider::Vercel.as_str()])
}

pub fn outcome_schema() -> utoipa::openapi::Object {
    string_enum(Outcome::ALL.map(Outcome::as_str))
}

/// Which deliveries a list shows; every field narrows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub outcome: Option<Outcome>,
    pub provider: Option<Provider>,
}

/// The statement behind [`list`]: newest first on ("receivedAt", id), bodies left
/// out. Indexes: (outcome, "receivedAt") or ("receivedAt", id).
pub fn list_query(
    filter: Filter,
    cursor: Option<Cursor>,
    limit: Limit,
) -> Selector<SelectModel<Summary>> {
    let mut select = Entity::find();
    if let Some(outcome) = filter.outcome {
        select = select.filter(Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(provider) = filter.provider {
        select = select.filter(Column::Provider.eq(provider.as_str()));
    }
    if let Some(cursor) = cursor {
        select = select.filter(cursor.rows_after(Column::ReceivedAt, Column::Id));
    }
    select
        .order_by_desc(Column::ReceivedAt)
        .order_by_desc(Column::Id)
        .limit(limit.get() + 1)
        .into_partial_model::<Summary>()
}

/// A page of the ledger, newest first, without bodies.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: Filter,
    cursor: Option<Cursor>,
    limit: Limit,
) -> Result<Page<Summary>, DbErr> {
    let rows = list_query(filter, cursor, limit).all(db).await?;
    Ok(Page::from_rows(rows, limit, |d| Cursor {
        at: d.received_at,
        id: d.id,
    }))
}
impl Entity {
    /// Ledger rows in the order they were received (ties by id, which is time-ordered),
    /// only those with one of `outcomes` (all when empty) and received at or after `since`.
    pub fn find_received(
        outcomes: &[crate::deployments::ingest::Outcome],
        since: Option<DateTime>,
    ) -> Select<Entity> {
        let mut query = Entity::find()
            .order_by_asc(Column::ReceivedAt)
            .order_by_asc(Column::Id);
        if !outcomes.is_empty() {
            query = query.filter(Column::Outcome.is_in(outcomes.iter().map(|o| o.as_str())));
        }
        if let Some(since) = since {
            query = query.filter(Column::ReceivedAt.gte(since));
        }
        query
    }
}

/// How far back [`recent_mark`] counts: longer than any delivery takes from being
/// received to being committed (the request timeout is 8 s).
pub const COMMIT_LAG: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What changes whenever a delivery is committed, by this process or another: the
/// newest ledger row's key and how many rows were received within [`COMMIT_LAG`] of
/// it, so a row that commits after a newer one still changes the mark. Two index
/// range reads on idx_webhook_deliveries_received; `None` while the ledger is empty.
pub async fn recent_mark<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<(DateTime, Uuid, u64)>, DbErr> {
    use sea_orm::PaginatorTrait;
    let newest = Entity::find()
        .select_only()
        .column(Column::ReceivedAt)
        .column(Column::Id)
        .order_by_desc(Column::ReceivedAt)
        .order_by_desc(Column::Id)
        .limit(1)
        .into_tuple::<(DateTime, Uuid)>()
        .one(db)
        .await?;
    let Some((at, id)) = newest else {
        return Ok(None);
    };
    let recent = Entity::find()
        .filter(Column::ReceivedAt.gte(at - COMMIT_LAG))
        .count(db)
        .await?;
    Ok(Some((at, id, recent)))
}
