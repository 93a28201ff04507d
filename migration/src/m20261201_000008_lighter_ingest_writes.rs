//! Less work per delivery inside Postgres: raw bodies compressed with lz4 rather than
//! pglz (several times cheaper for the CPU, on servers built with it), and the two
//! unique keys on mostly-NULL columns narrowed to the rows that have a value, so that
//! a row version without one is not indexed there. Lookups are by value
//! (`= ANY(...)`), which the narrowed indexes still serve. SQLite is left as it is.

use sea_orm_migration::prelude::*;

use crate::execute_on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Sets the body column's compression if the server can: PostgreSQL 14 or later,
/// built with lz4. Otherwise it says so and leaves pglz, without failing the
/// migration (the statement runs dynamically inside an exception block, so even an
/// older server's syntax error is caught).
const BODY_LZ4: &str = r#"DO $$
BEGIN
    IF current_setting('server_version_num')::int < 140000 THEN
        RAISE NOTICE 'PostgreSQL before 14 has no per-column compression; bodies keep pglz';
        RETURN;
    END IF;
    EXECUTE 'ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
    RAISE NOTICE 'this server has no lz4 (%); bodies keep pglz', SQLERRM;
END $$"#;

const BODY_DEFAULT: &str = r#"DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION DEFAULT';
    END IF;
END $$"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[
                BODY_LZ4,
                // A push creates its row before Vercel names the deployment, and most
                // rows never get a GitHub deployment id.
                r#"CREATE UNIQUE INDEX uq_deployments_vercel_deployment_id_set ON deployments("vercelDeploymentId") WHERE "vercelDeploymentId" IS NOT NULL"#,
                "DROP INDEX uq_deployments_vercel_deployment_id",
                r#"CREATE UNIQUE INDEX uq_deployments_github_deployment_id_set ON deployments("githubDeploymentId") WHERE "githubDeploymentId" IS NOT NULL"#,
                "DROP INDEX uq_deployments_github_deployment_id",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[
                r#"CREATE UNIQUE INDEX uq_deployments_github_deployment_id ON deployments("githubDeploymentId")"#,
                "DROP INDEX uq_deployments_github_deployment_id_set",
                r#"CREATE UNIQUE INDEX uq_deployments_vercel_deployment_id ON deployments("vercelDeploymentId")"#,
                "DROP INDEX uq_deployments_vercel_deployment_id_set",
                BODY_DEFAULT,
            ],
        )
        .await
    }
}
