//! `deploy-tracker replay PATH… [--url URL] [--fresh-ids] [--delay MS]`.

use std::time::Duration;

use anyhow::{Result, bail};
use sea_orm::DatabaseConnection;

use crate::config::ReplayArgs;
use crate::deployments::ingest::Ingest;
use crate::replay::{self, FreshIds, Options, Target};

/// `db` is the database to apply to when there is no `--url`.
pub async fn run(db: Option<DatabaseConnection>, args: ReplayArgs) -> Result<()> {
    let fixtures = replay::load(&args.paths)?;
    let target = match (&args.url, db) {
        (Some(url), _) => {
            let (github, vercel) = args.secrets.parse().map_err(anyhow::Error::msg)?;
            Target::http(url, &github, &vercel).map_err(anyhow::Error::msg)?
        }
        (None, Some(db)) => Target::Database(Ingest::new(db)),
        (None, None) => bail!("replay needs --url or a database"),
    };
    let options = Options {
        fresh_ids: args.fresh_ids.then(FreshIds::new),
        delay: Duration::from_millis(args.delay),
    };
    let report = replay::replay(&fixtures, &target, &options, |sent| println!("{sent}"))
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{}", report.summary());
    let failed = report.failed();
    if failed > 0 {
        bail!("{failed} of {} deliveries failed", report.sent.len());
    }
    Ok(())
}
