//! Per-app history without an environment filter, newest first, pages keyed on
//! ("createdAt", id): `GET /api/apps/{appId}/deployments` and `deployments list --app`.

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
                r#"CREATE INDEX idx_deployments_app_created ON deployments("appId", "createdAt" DESC, id DESC)"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP INDEX idx_deployments_app_created"]).await
    }
}
