//! `deploy-tracker reprocess [--outcome O] [--since T]`.

use anyhow::Result;
use sea_orm::DatabaseConnection;

use crate::config::ReprocessArgs;
use crate::deployments::ingest::Ingest;
use crate::replay;

pub async fn run(db: DatabaseConnection, args: ReprocessArgs) -> Result<()> {
    let ingest = Ingest::new(db);
    let done = replay::reprocess(&ingest, &args.outcome, args.since, |r| {
        let change = if r.changed {
            format!("{} -> {}", r.previous_outcome, r.outcome)
        } else {
            format!("{} (unchanged)", r.outcome)
        };
        println!(
            "{}  {:<6} {:<22} {change}  {}",
            r.id,
            r.provider.as_str(),
            r.event_type,
            r.reason
        );
    })
    .await?;
    println!("{}", replay::reprocess_summary(&done));
    Ok(())
}
