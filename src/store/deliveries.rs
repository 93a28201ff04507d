//! The delivery ledger, `webhook_deliveries`.

use sea_orm::QueryOrder;
use sea_orm::entity::prelude::*;
use serde::Serialize;

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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

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
