//! `deploy-tracker deliveries export ID… [--out PATH]` and
//! `deliveries export --outcome O [--since T] [--dir DIR]`: stored raw bodies as
//! fixture files that `replay` reads back.

use std::io::Write;

use anyhow::{Context, Result, bail};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::config::ExportArgs;
use crate::replay;
use crate::store::deliveries;

pub async fn run(db: &DatabaseConnection, args: ExportArgs) -> Result<()> {
    let filtered = !args.outcome.is_empty() || args.since.is_some();
    let rows = match (args.ids.is_empty(), filtered) {
        (false, true) => bail!("give delivery ids or --outcome/--since, not both"),
        (true, false) => {
            bail!(
                "give the ids of the deliveries to export, or choose them with --outcome (and --since)"
            )
        }
        (true, true) => {
            deliveries::Entity::find_received(&args.outcome, args.since)
                .all(db)
                .await?
        }
        (false, false) => {
            let mut rows = Vec::with_capacity(args.ids.len());
            for id in &args.ids {
                match deliveries::Entity::find_by_id(*id).one(db).await? {
                    Some(row) => rows.push(row),
                    None => bail!(
                        "no delivery has id {id} (ids are the ledger rows' ids, not the providers' delivery ids)"
                    ),
                }
            }
            rows
        }
    };

    if let Some(out) = &args.out {
        let [row] = rows.as_slice() else {
            bail!("--out takes exactly one delivery; use --dir for several");
        };
        if out.as_os_str() == "-" {
            std::io::stdout().write_all(&row.body)?;
            return Ok(());
        }
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(out, &row.body)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("{}", out.display());
        return Ok(());
    }

    if rows.is_empty() {
        println!("no deliveries match");
        return Ok(());
    }
    let mut files = Vec::with_capacity(rows.len());
    for row in &rows {
        let path = replay::export(row, &args.dir).with_context(|| {
            format!(
                "cannot write delivery {} under {}",
                row.id,
                args.dir.display()
            )
        })?;
        println!("{}", path.display());
        files.push(path);
    }
    if files.len() > 1 {
        let scenario = replay::write_scenario(&args.dir, "deliveries.scenario", &files)
            .with_context(|| format!("cannot write a scenario in {}", args.dir.display()))?;
        println!("{} (the same files in received order)", scenario.display());
    }
    Ok(())
}
