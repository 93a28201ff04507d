//! `deploy-tracker deployments list|latest`: the same queries as the HTTP API.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::config::DeploymentsCommand;
use crate::store::{apps, deployments};

pub async fn run(db: &DatabaseConnection, command: DeploymentsCommand) -> Result<()> {
    match command {
        DeploymentsCommand::List(args) => {
            let app_id = match &args.app {
                Some(key) => Some(find_app(db, key).await?.id),
                None => None,
            };
            let filter = deployments::Filter {
                app_id,
                environment: args.environment,
                status: args.status,
            };
            let page = deployments::history(db, filter, args.page.cursor, args.page.limit).await?;
            if args.page.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_table(db, &page.items).await?;
                if let Some(cursor) = &page.next_cursor {
                    println!("next page: --cursor {cursor}");
                }
            }
        }
        DeploymentsCommand::Latest(args) => {
            let app = find_app(db, &args.app).await?;
            let deployment = deployments::latest(db, app.id, args.environment)
                .await?
                .ok_or_else(|| {
                    anyhow!(
                        "{} has no {} deployment yet",
                        app.name,
                        args.environment.as_str()
                    )
                })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&deployment)?);
            } else {
                print_table(db, &[deployment]).await?;
            }
        }
    }
    Ok(())
}

async fn find_app(db: &DatabaseConnection, key: &str) -> Result<apps::Model> {
    apps::find_by_id_or_name(db, key)
        .await
        .context("cannot look up the app")?
        .ok_or_else(|| anyhow!("no app is named {key:?} or has that id"))
}

async fn print_table(db: &DatabaseConnection, rows: &[deployments::Model]) -> Result<()> {
    let names: HashMap<Uuid, String> = apps::all(db)
        .await?
        .into_iter()
        .map(|app| (app.id, app.name))
        .collect();
    println!(
        "{:<36}  {:<20}  {:<10}  {:<8}  {:<12}  {:<27}  URL / ERROR",
        "ID", "APP", "ENV", "STATUS", "COMMIT", "CREATED"
    );
    for d in rows {
        let sha = d.github_commit_sha.as_deref().unwrap_or("-");
        println!(
            "{:<36}  {:<20}  {:<10}  {:<8}  {:<12}  {:<27}  {}",
            d.id,
            names.get(&d.app_id).map(String::as_str).unwrap_or("?"),
            d.environment.as_str(),
            d.status.as_str(),
            &sha[..sha.len().min(12)],
            d.created_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            d.deployment_url
                .as_deref()
                .or(d.error_message.as_deref())
                .unwrap_or("-"),
        );
    }
    Ok(())
}
