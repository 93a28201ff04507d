//! The stats' time to restore: for a failure, the first ready row of the same app and
//! environment finished after it is one probe of this index, not a walk through the
//! app's history.

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
                r#"CREATE INDEX idx_deployments_ready_finished ON deployments("appId", environment, "finishedAt") WHERE status = 'ready'"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP INDEX idx_deployments_ready_finished"]).await
    }
}
