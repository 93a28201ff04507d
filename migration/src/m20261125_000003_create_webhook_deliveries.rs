//! The delivery ledger: every verified delivery, raw, with what it did.

use sea_orm_migration::prelude::*;

use crate::{execute_all, is_postgres};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (uuid, ts, bytes) = if is_postgres(manager) {
            ("UUID", "TIMESTAMP", "BYTEA")
        } else {
            ("BLOB", "TEXT", "BLOB")
        };
        // The deployment reference is SET NULL on delete: removing an app must not
        // erase the audit trail of what was delivered.
        let table = format!(
            r#"CREATE TABLE webhook_deliveries (
  id {uuid} PRIMARY KEY NOT NULL,
  provider VARCHAR(16) NOT NULL,
  "deliveryId" VARCHAR(255) NOT NULL,
  "eventType" VARCHAR(100) NOT NULL,
  body {bytes} NOT NULL,
  "receivedAt" {ts} NOT NULL,
  outcome VARCHAR(16) NOT NULL,
  reason VARCHAR(255) NOT NULL,
  "deploymentId" {uuid} REFERENCES deployments(id) ON DELETE SET NULL,
  CONSTRAINT check_provider CHECK (provider IN ('github', 'vercel')),
  CONSTRAINT uq_webhook_deliveries_provider_delivery UNIQUE (provider, "deliveryId")
)"#
        );
        execute_all(
            manager,
            &[
                &table,
                r#"CREATE INDEX idx_webhook_deliveries_received ON webhook_deliveries("receivedAt" DESC, id DESC)"#,
                r#"CREATE INDEX idx_webhook_deliveries_outcome ON webhook_deliveries(outcome, "receivedAt" DESC)"#,
                r#"CREATE INDEX idx_webhook_deliveries_deployment ON webhook_deliveries("deploymentId")"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP TABLE webhook_deliveries"]).await
    }
}
