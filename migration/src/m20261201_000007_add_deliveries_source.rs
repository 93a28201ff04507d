//! How a ledger row came in: `webhook` (a signed request) or `backfill` (fetched from
//! GitHub's hook-deliveries API with a token; DESIGN section 8).

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &[r#"ALTER TABLE webhook_deliveries ADD COLUMN source VARCHAR(16) NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'backfill'))"#],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &["ALTER TABLE webhook_deliveries DROP COLUMN source"],
        )
        .await
    }
}
