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
        "{:<36}  {:<20}  {:<10}  {:<8}  {:<12}  {:<27}  {:>8}  {:<16}  URL / ERROR",
        "ID", "APP", "ENV", "STATUS", "COMMIT", "CREATED", "DURATION", "TRIGGERED BY"
    );
    for d in rows {
        let sha = d.github_commit_sha.as_deref().unwrap_or("-");
        let status = match (d.is_rollback, d.failure_reason) {
            (true, _) => "rollback".to_owned(),
            (false, Some(reason)) if reason != deployments::FailureReason::Error => {
                format!("{} ({})", d.status.as_str(), reason.as_str())
            }
            _ => d.status.as_str().to_owned(),
        };
        println!(
            "{:<36}  {:<20}  {:<10}  {:<8}  {:<12}  {:<27}  {:>8}  {:<16}  {}",
            d.id,
            names.get(&d.app_id).map(String::as_str).unwrap_or("?"),
            d.environment.as_str(),
            status,
            &sha[..sha.len().min(12)],
            d.created_at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            d.build_duration_ms.map_or("-".to_owned(), duration),
            d.triggered_by.as_deref().unwrap_or("-"),
            d.deployment_url
                .as_deref()
                .or(d.error_message.as_deref())
                .unwrap_or("-"),
        );
    }
    Ok(())
}

/// A build duration as people read it: `4.2s`, `3m05s`, `1h02m`.
fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        ..60 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_seconds_minutes_or_hours() {
        assert_eq!(super::duration(85_408), "1m25s");
        assert_eq!(super::duration(4_200), "4.2s");
        assert_eq!(super::duration(3_725_000), "1h02m");
    }
}
