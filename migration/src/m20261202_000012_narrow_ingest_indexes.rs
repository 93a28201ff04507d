//! Less work per delivery inside Postgres, measured with `../shared/bench`: two
//! indexes narrowed to the rows their queries look for, and pushes' bodies kept in
//! the ledger's own pages.
//!
//! - The sweeper's (status, "updatedAt", id) only ever looks for pending and
//!   building rows, and most row versions are neither: they are no longer indexed.
//! - The ledger's (outcome, "receivedAt") serves the filters that pick out the few
//!   deliveries that need a look; `applied`, nearly every row, is listed through
//!   ("receivedAt", id) instead.
//! - A GitHub push of 5–8 KB compresses to about 2.6 KB, over Postgres's default
//!   2 KB target, so each was moved to the TOAST table in two chunks (a heap and an
//!   index insert each). With a 4 KB target it stays inline, compressed; larger
//!   bodies still go out of line.
//!
//! SQLite is left as it is: its planner uses a partial index only where a query
//! repeats the index's condition word for word.

use sea_orm_migration::prelude::*;

use crate::execute_on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[
                "DROP INDEX idx_deployments_status_updated",
                r#"CREATE INDEX idx_deployments_status_updated ON deployments(status, "updatedAt", id) WHERE status IN ('pending', 'building')"#,
                "DROP INDEX idx_webhook_deliveries_outcome",
                r#"CREATE INDEX idx_webhook_deliveries_outcome ON webhook_deliveries(outcome, "receivedAt" DESC) WHERE outcome <> 'applied'"#,
                "ALTER TABLE webhook_deliveries SET (toast_tuple_target = 4080)",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[
                "ALTER TABLE webhook_deliveries RESET (toast_tuple_target)",
                "DROP INDEX idx_webhook_deliveries_outcome",
                r#"CREATE INDEX idx_webhook_deliveries_outcome ON webhook_deliveries(outcome, "receivedAt" DESC)"#,
                "DROP INDEX idx_deployments_status_updated",
                r#"CREATE INDEX idx_deployments_status_updated ON deployments(status, "updatedAt", id)"#,
            ],
        )
        .await
    }
}
