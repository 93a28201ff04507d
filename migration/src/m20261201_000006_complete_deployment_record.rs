//! The complete deployment record (DESIGN section 6): build times and duration, why a
//! failed row failed, who triggered it, where its logs are, what it replaced, and
//! rollbacks; the keys GitHub deployment statuses and rollbacks are matched by; and
//! the ledger's count of the copies of each delivery.

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
                r#"ALTER TABLE deployments ADD COLUMN "buildDurationMs" BIGINT"#,
                r#"ALTER TABLE deployments ADD COLUMN "failureReason" VARCHAR(16) CHECK ("failureReason" IN ('error', 'canceled', 'timeout'))"#,
                r#"ALTER TABLE deployments ADD COLUMN "triggeredBy" VARCHAR(255)"#,
                r#"ALTER TABLE deployments ADD COLUMN "buildLogs" VARCHAR(2048)"#,
                r#"ALTER TABLE deployments ADD COLUMN "finishedAt" TIMESTAMP"#,
                r#"ALTER TABLE deployments ADD COLUMN "previousDeploymentId" UUID REFERENCES deployments(id) ON DELETE SET NULL"#,
                r#"ALTER TABLE deployments ADD COLUMN "isRollback" BOOLEAN NOT NULL DEFAULT false"#,
                // When the build started (provider time), for "buildDurationMs".
                r#"ALTER TABLE deployments ADD COLUMN "startedAt" TIMESTAMP"#,
                // The pushed head commit's time, for the lead-time figure.
                r#"ALTER TABLE deployments ADD COLUMN "committedAt" TIMESTAMP"#,
                // The GitHub deployment a deployment_status belongs to.
                r#"ALTER TABLE deployments ADD COLUMN "githubDeploymentId" BIGINT"#,
                // A rollback row: the Vercel deployment production went back to.
                r#"ALTER TABLE deployments ADD COLUMN "rollbackTo" VARCHAR(64)"#,
                r#"CREATE UNIQUE INDEX uq_deployments_github_deployment_id ON deployments("githubDeploymentId")"#,
                r#"CREATE INDEX idx_deployments_rollback_to ON deployments("rollbackTo") WHERE "rollbackTo" IS NOT NULL"#,
                // A row a GitHub deployment created is linked, like one Vercel created.
                "DROP INDEX uq_deployments_unlinked_commit",
                r#"CREATE UNIQUE INDEX uq_deployments_unlinked_commit_v2 ON deployments("appId", environment, "githubCommitSha") WHERE "vercelDeploymentId" IS NULL AND "githubDeploymentId" IS NULL AND "githubCommitSha" IS NOT NULL AND "isRollback" = false"#,
                r#"ALTER TABLE webhook_deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1"#,
                r#"ALTER TABLE webhook_deliveries ADD COLUMN "lastReceivedAt" TIMESTAMP"#,
                r#"UPDATE webhook_deliveries SET "lastReceivedAt" = "receivedAt""#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(
            manager,
            &[
                r#"ALTER TABLE webhook_deliveries DROP COLUMN "lastReceivedAt""#,
                "ALTER TABLE webhook_deliveries DROP COLUMN attempts",
                "DROP INDEX uq_deployments_unlinked_commit_v2",
                r#"CREATE UNIQUE INDEX uq_deployments_unlinked_commit ON deployments("appId", environment, "githubCommitSha") WHERE "vercelDeploymentId" IS NULL AND "githubCommitSha" IS NOT NULL"#,
                "DROP INDEX idx_deployments_rollback_to",
                "DROP INDEX uq_deployments_github_deployment_id",
                r#"ALTER TABLE deployments DROP COLUMN "rollbackTo""#,
                r#"ALTER TABLE deployments DROP COLUMN "githubDeploymentId""#,
                r#"ALTER TABLE deployments DROP COLUMN "committedAt""#,
                r#"ALTER TABLE deployments DROP COLUMN "startedAt""#,
                r#"ALTER TABLE deployments DROP COLUMN "isRollback""#,
                r#"ALTER TABLE deployments DROP COLUMN "previousDeploymentId""#,
                r#"ALTER TABLE deployments DROP COLUMN "finishedAt""#,
                r#"ALTER TABLE deployments DROP COLUMN "buildLogs""#,
                r#"ALTER TABLE deployments DROP COLUMN "triggeredBy""#,
                r#"ALTER TABLE deployments DROP COLUMN "failureReason""#,
                r#"ALTER TABLE deployments DROP COLUMN "buildDurationMs""#,
            ],
        )
        .await
    }
}
