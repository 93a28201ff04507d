//! On SQLite, the narrowing migrations 8 and 12 gave Postgres: the unique keys on the
//! mostly-NULL deployment ids index only the rows that have one (same names as on
//! Postgres), and the sweeper's index holds only the rows still in flight. A row
//! without a GitHub deployment id, or a row that has finished, is then no entry there,
//! so each ingest batch writes fewer index pages. Lookups by value (`= ?`, `IN`) imply
//! `IS NOT NULL`, and the sweeper's query names the same status list, so SQLite still
//! uses each index (tests/it/schema.rs checks the plans).

use sea_orm_migration::prelude::*;

use crate::execute_on_sqlite;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on SQLite too (sea-orm-migration runs SQLite's without one): all
    /// or nothing, and every statement on one connection, so that the index dropped is
    /// gone for the statement that creates it again.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_sqlite(
            manager,
            &[
                r#"CREATE UNIQUE INDEX uq_deployments_vercel_deployment_id_set ON deployments("vercelDeploymentId") WHERE "vercelDeploymentId" IS NOT NULL"#,
                "DROP INDEX uq_deployments_vercel_deployment_id",
                r#"CREATE UNIQUE INDEX uq_deployments_github_deployment_id_set ON deployments("githubDeploymentId") WHERE "githubDeploymentId" IS NOT NULL"#,
                "DROP INDEX uq_deployments_github_deployment_id",
                "DROP INDEX idx_deployments_status_updated",
                r#"CREATE INDEX idx_deployments_status_updated ON deployments(status, "updatedAt", id) WHERE status IN ('pending', 'building')"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_sqlite(
            manager,
            &[
                "DROP INDEX idx_deployments_status_updated",
                r#"CREATE INDEX idx_deployments_status_updated ON deployments(status, "updatedAt", id)"#,
                r#"CREATE UNIQUE INDEX uq_deployments_github_deployment_id ON deployments("githubDeploymentId")"#,
                "DROP INDEX uq_deployments_github_deployment_id_set",
                r#"CREATE UNIQUE INDEX uq_deployments_vercel_deployment_id ON deployments("vercelDeploymentId")"#,
                "DROP INDEX uq_deployments_vercel_deployment_id_set",
            ],
        )
        .await
    }
}
