//! The app registry: which repository and Vercel project belong to which app.

use sea_orm_migration::prelude::*;

use crate::{execute_all, is_postgres};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (uuid, ts) = if is_postgres(manager) {
            ("UUID", "TIMESTAMP")
        } else {
            ("BLOB", "TEXT")
        };
        let table = format!(
            r#"CREATE TABLE apps (
  id {uuid} PRIMARY KEY NOT NULL,
  name VARCHAR(255) NOT NULL UNIQUE,
  "githubRepo" VARCHAR(255) NOT NULL,
  "vercelProjectId" VARCHAR(255) UNIQUE,
  "stagingBranch" VARCHAR(255) NOT NULL DEFAULT 'staging',
  "productionBranch" VARCHAR(255) NOT NULL DEFAULT 'main',
  "createdAt" {ts} NOT NULL,
  "updatedAt" {ts} NOT NULL
)"#
        );
        // Repositories match case-insensitively, so the index is on the lowered name.
        execute_all(
            manager,
            &[
                &table,
                r#"CREATE INDEX idx_apps_github_repo ON apps (lower("githubRepo"))"#,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_all(manager, &["DROP TABLE apps"]).await
    }
}
