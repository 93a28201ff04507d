//! `deploy-tracker sweep [--stuck-after D]`: one sweep of stuck deployments, one line
//! per change and a summary.

use anyhow::Result;
use sea_orm::DatabaseConnection;

use crate::config::SweepArgs;
use crate::sweep;

pub async fn run(db: &DatabaseConnection, args: SweepArgs) -> Result<()> {
    let sweeper = args.sweeper().map_err(anyhow::Error::msg)?;
    if sweeper.stuck_after.duration().is_none() {
        println!("STUCK_AFTER is off: nothing swept");
        return Ok(());
    }
    let report = sweep::run_once(db, &sweeper, crate::webhooks::now()).await?;
    for change in &report.changes {
        println!(
            "{}  {:<20} {:<10} {} -> {}  {}",
            change.deployment_id,
            change.app,
            change.environment.as_str(),
            change.from,
            change.to,
            change.why
        );
    }
    println!(
        "swept deployments with no event for {}: {}",
        sweeper.stuck_after,
        report.summary()
    );
    Ok(())
}
