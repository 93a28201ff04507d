//! A version on each app that every write of its deployment rows raises, on Postgres.
//!
//! Ingest reads a batch's rows without locks and writes them in one statement that
//! commits on its own, on condition that none of the batch's apps changed version
//! since it read: two round trips to read (the apps, then the rows) and one to write,
//! instead of BEGIN, lock, read, write and COMMIT. Every other writer (a locked batch, the
//! sweeper, reprocessing) raises the versions of the apps it locks, so a batch that
//! read before it committed writes nothing and is done again under locks. SQLite
//! writes one transaction at a time and needs none of this.

use sea_orm_migration::prelude::*;

use crate::execute_on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[r#"ALTER TABLE apps ADD COLUMN "ingestVersion" bigint NOT NULL DEFAULT 0"#],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on_postgres(
            manager,
            &[r#"ALTER TABLE apps DROP COLUMN "ingestVersion""#],
        )
        .await
    }
}
