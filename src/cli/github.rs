//! `deploy-tracker github backfill --repo OWNER/NAME | --org ORG --hook-id ID [--since 72h] [--redeliver] [--dry-run]`.

use anyhow::{Result, anyhow};
use chrono::Utc;
use sea_orm::DatabaseConnection;

use crate::backfill::{self, Options};
use crate::config::BackfillArgs;
use crate::deployments::ingest::Ingest;

pub async fn backfill(db: DatabaseConnection, args: BackfillArgs) -> Result<()> {
    let hook = args.hook().map_err(|e| anyhow!(e))?;
    let client = args.api.client().map_err(|e| anyhow!(e))?;
    let since = chrono::Duration::from_std(args.since)
        .ok()
        .and_then(|back| Utc::now().checked_sub_signed(back))
        .ok_or_else(|| anyhow!("--since reaches too far back"))?;
    let options = Options {
        hook,
        since,
        redeliver: args.redeliver,
        dry_run: args.dry_run,
    };
    let ingest = Ingest::new(db);
    let summary =
        backfill::run_exclusive(&ingest, &client, &options, |line| println!("{line}")).await?;
    println!("{summary}");
    Ok(())
}
