//! The delivery ledger, `webhook_deliveries`.

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
