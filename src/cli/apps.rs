//! `deploy-tracker apps add|list`.

use anyhow::Result;
use sea_orm::DatabaseConnection;

use crate::config::AppsCommand;
use crate::store::apps;

pub async fn run(db: &DatabaseConnection, command: AppsCommand) -> Result<()> {
    match command {
        AppsCommand::Add(args) => {
            let app = apps::NewApp {
                name: args.name,
                github_repo: args.github_repo,
                vercel_project_id: args.vercel_project_id,
                staging_branch: args.staging_branch,
                production_branch: args.production_branch,
            }
            .create(db)
            .await?;
            println!("{}", serde_json::to_string_pretty(&app)?);
        }
        AppsCommand::List => {
            let apps = apps::all(db).await?;
            println!(
                "{:<36}  {:<20}  {:<30}  {:<12}  {:<12}  VERCEL PROJECT",
                "ID", "NAME", "GITHUB REPO", "STAGING", "PRODUCTION"
            );
            for app in apps {
                println!(
                    "{:<36}  {:<20}  {:<30}  {:<12}  {:<12}  {}",
                    app.id,
                    app.name,
                    app.github_repo,
                    app.staging_branch,
                    app.production_branch,
                    app.vercel_project_id.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}
