//! Schema migrations for deploy-tracker, in the order they were shipped.
//! A shipped migration is never edited; a change is a new file.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_apps;
mod m20261125_000002_create_deployments;
mod m20261125_000003_create_webhook_deliveries;
mod m20261125_000004_add_deployment_lookup_keys;
mod m20261126_000005_add_deployments_app_created;
mod m20261201_000006_complete_deployment_record;
mod m20261201_000007_add_deliveries_source;
mod m20261201_000008_lighter_ingest_writes;
mod m20261201_000010_add_deployments_status_updated;
mod m20261201_000011_add_deployments_ready_finished;
mod m20261202_000012_narrow_ingest_indexes;
mod m20261202_000013_add_deployments_ready_created;
mod m20261206_000014_add_apps_ingest_version;
mod m20261206_000015_narrow_sqlite_indexes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_apps::Migration),
            Box::new(m20261125_000002_create_deployments::Migration),
            Box::new(m20261125_000003_create_webhook_deliveries::Migration),
            Box::new(m20261125_000004_add_deployment_lookup_keys::Migration),
            Box::new(m20261126_000005_add_deployments_app_created::Migration),
            Box::new(m20261201_000006_complete_deployment_record::Migration),
            Box::new(m20261201_000007_add_deliveries_source::Migration),
            Box::new(m20261201_000008_lighter_ingest_writes::Migration),
            Box::new(m20261201_000010_add_deployments_status_updated::Migration),
            Box::new(m20261201_000011_add_deployments_ready_finished::Migration),
            Box::new(m20261202_000012_narrow_ingest_indexes::Migration),
            Box::new(m20261202_000013_add_deployments_ready_created::Migration),
            Box::new(m20261206_000014_add_apps_ingest_version::Migration),
            Box::new(m20261206_000015_narrow_sqlite_indexes::Migration),
        ]
    }
}

/// Runs each statement in order on the connection's backend.
async fn execute_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Runs each statement in order on Postgres; on SQLite does nothing (for the
/// migrations that only tune what Postgres stores or indexes).
async fn execute_on_postgres(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    if !is_postgres(manager) {
        return Ok(());
    }
    execute_all(manager, statements).await
}

/// Runs each statement in order on SQLite; on Postgres does nothing (for the
/// migrations that give SQLite what an earlier one gave Postgres alone).
async fn execute_on_sqlite(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if is_postgres(manager) {
        return Ok(());
    }
    execute_all(manager, statements).await
}

fn is_postgres(manager: &SchemaManager<'_>) -> bool {
    manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres
}
