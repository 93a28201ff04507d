//! `deploy-tracker deliveries list`: the ledger, as `GET /api/deliveries` shows it.

use anyhow::Result;
use sea_orm::DatabaseConnection;

use crate::config::DeliveriesCommand;
use crate::store::deliveries;

pub async fn run(db: &DatabaseConnection, command: DeliveriesCommand) -> Result<()> {
    match command {
        DeliveriesCommand::Export(args) => super::export::run(db, args).await?,
        DeliveriesCommand::List(args) => {
            let filter = deliveries::Filter {
                outcome: args.outcome,
                provider: args.provider,
            };
            let page = deliveries::list(db, filter, args.page.cursor, args.page.limit).await?;
            if args.page.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<27}  {:<8}  {:<20}  {:<10}  {:<36}  REASON",
                "ID", "RECEIVED", "PROVIDER", "EVENT", "OUTCOME", "DEPLOYMENT"
            );
            for d in &page.items {
                println!(
                    "{:<36}  {:<27}  {:<8}  {:<20}  {:<10}  {:<36}  {}",
                    d.id,
                    d.received_at
                        .and_utc()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    d.provider,
                    d.event_type,
                    d.outcome,
                    d.deployment_id
                        .map(|id| id.to_string())
                        .unwrap_or_else(|| "-".into()),
                    d.reason,
                );
            }
            if let Some(cursor) = &page.next_cursor {
                println!("next page: --cursor {cursor}");
            }
        }
    }
    Ok(())
}
