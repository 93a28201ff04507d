//! Each (app, environment)'s newest ready rows, in ("createdAt", id) order: what a
//! batch reads to link "previousDeploymentId" in memory, what a promotion reads for
//! the row it replaces, and what the relinking statement walks. Without it each of
//! those read every row of the pair and sorted them, so a batch cost more the longer
//! the pair's history; with it, a few index entries.

use sea_orm_migration::prelude::*;

use crate::execute_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &[
                r#"CREATE INDEX idx_deployments_ready_created ON deployments("appId", environment, "createdAt" DESC, id DESC) WHERE status = 'ready'"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP INDEX idx_deployments_ready_created"]).await
    }
}
