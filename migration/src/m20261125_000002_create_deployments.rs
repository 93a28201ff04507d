//! The `deployments` table, exactly as the seed schema defined it.

use sea_orm_migration::prelude::*;

use crate::{execute_all, is_postgres};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (uuid, ts, default_id) = if is_postgres(manager) {
            ("UUID", "TIMESTAMP", "DEFAULT gen_random_uuid()")
        } else {
            ("BLOB", "TEXT", "")
        };
        let now = if is_postgres(manager) {
            "NOW()"
        } else {
            "CURRENT_TIMESTAMP"
        };
        // SQLite cannot add constraints later, so the seed's CHECKs are declared inline
        // there; Postgres gets them by name as the seed created them.
        let inline_checks = if is_postgres(manager) {
            ""
        } else {
            ",\n  CONSTRAINT check_environment CHECK (environment IN ('staging', 'production')),\n  CONSTRAINT check_status CHECK (status IN ('pending', 'building', 'ready', 'failed'))"
        };
        let table = format!(
            r#"CREATE TABLE deployments (
  id {uuid} PRIMARY KEY NOT NULL {default_id},
  "appId" {uuid} NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  environment VARCHAR(20) NOT NULL,
  status VARCHAR(20) NOT NULL,
  "deploymentUrl" VARCHAR(255),
  "githubCommitSha" VARCHAR(64),
  "vercelDeploymentId" VARCHAR(64),
  "createdAt" {ts} NOT NULL DEFAULT {now},
  "updatedAt" {ts} NOT NULL DEFAULT {now}{inline_checks}
)"#
        );
        let mut statements = vec![
            table.as_str(),
            r#"CREATE INDEX idx_deployments_app_id ON deployments("appId")"#,
            r#"CREATE INDEX idx_deployments_environment ON deployments(environment)"#,
            r#"CREATE INDEX idx_deployments_status ON deployments(status)"#,
            r#"CREATE INDEX idx_deployments_app_env_created ON deployments("appId", environment, "createdAt" DESC)"#,
        ];
        if is_postgres(manager) {
            statements.extend([
                "ALTER TABLE deployments ADD CONSTRAINT check_environment CHECK (environment IN ('staging', 'production'))",
                "ALTER TABLE deployments ADD CONSTRAINT check_status CHECK (status IN ('pending', 'building', 'ready', 'failed'))",
            ]);
        }
        execute_all(manager, &statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP TABLE deployments"]).await
    }
}
