//! The sweeper's look-up of stuck deployments: rows in `pending` or `building` whose
//! "updatedAt" is older than `STUCK_AFTER`, oldest first (DESIGN section 6).

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &[r#"CREATE INDEX idx_deployments_status_updated ON deployments(status, "updatedAt", id)"#],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP INDEX idx_deployments_status_updated"]).await
    }
}
