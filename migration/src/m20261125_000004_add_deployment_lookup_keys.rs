//! Keys the webhook mapping needs beyond the seed schema: fast lookups by commit and
//! by Vercel deployment, and unique keys backing "one row per deployment".

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
                r#"ALTER TABLE deployments ADD COLUMN "errorMessage" VARCHAR(255)"#,
                // One row per Vercel deployment.
                r#"CREATE UNIQUE INDEX uq_deployments_vercel_deployment_id ON deployments("vercelDeploymentId")"#,
                r#"CREATE INDEX idx_deployments_app_env_sha ON deployments("appId", environment, "githubCommitSha")"#,
                // A push creates at most one not-yet-linked row per (app, environment, commit).
                r#"CREATE UNIQUE INDEX uq_deployments_unlinked_commit ON deployments("appId", environment, "githubCommitSha") WHERE "vercelDeploymentId" IS NULL AND "githubCommitSha" IS NOT NULL"#,
                // Failed-across-apps and other status listings, newest first.
                r#"CREATE INDEX idx_deployments_status_created ON deployments(status, "createdAt" DESC, id DESC)"#,
                r#"CREATE INDEX idx_deployments_created ON deployments("createdAt" DESC, id DESC)"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &[
                "DROP INDEX idx_deployments_created",
                "DROP INDEX idx_deployments_status_created",
                "DROP INDEX uq_deployments_unlinked_commit",
                "DROP INDEX idx_deployments_app_env_sha",
                "DROP INDEX uq_deployments_vercel_deployment_id",
                r#"ALTER TABLE deployments DROP COLUMN "errorMessage""#,
            ],
        )
        .await
    }
}
