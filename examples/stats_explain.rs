//! Prints the plan of the stats statement for one app and for all apps over the
//! last 30 days, as the database the server uses would run it: `EXPLAIN (ANALYZE,
//! BUFFERS)` on Postgres (on a plain connection, without the server's
//! `enable_seqscan = off`, so the plan is the planner's own choice), `EXPLAIN QUERY
//! PLAN` on SQLite (the bundled library the server links). Each plan ends with a
//! verdict line: whether deployments is read by a sequential scan.
//!
//! `DATABASE_URL=… cargo run --release --example stats_explain [APP_NAME]`

use deploy_tracker::stats::{self, Window};
use deploy_tracker::store::{self, apps};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    Statement,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let db = if store::is_sqlite_url(&url) {
        store::connect(&url).await?
    } else {
        Database::connect(url.as_str()).await?
    };
    let backend = db.get_database_backend();
    let app = match std::env::args().nth(1) {
        Some(name) => apps::Entity::find().filter(apps::Column::Name.eq(name)),
        None => apps::Entity::find().order_by_asc(apps::Column::Name),
    }
    .one(&db)
    .await?
    .ok_or("no such app: load the history first")?;
    let all = Window::last_days(stats::DEFAULT_DAYS, deploy_tracker::webhooks::now());
    let windows = [
        (
            format!("one app ({}), last 30 days", app.name),
            Window {
                app_id: Some(app.id),
                ..all
            },
        ),
        ("all apps, last 30 days".to_owned(), all),
    ];
    for (label, window) in windows {
        let statement = stats::statement(backend, &window);
        let (explain, column) = match backend {
            DbBackend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS) ", "QUERY PLAN"),
            _ => ("EXPLAIN QUERY PLAN ", "detail"),
        };
        let rows = db
            .query_all_raw(Statement {
                sql: format!("{explain}{}", statement.sql),
                ..statement.clone()
            })
            .await?;
        println!("## {label}");
        let mut lines = Vec::new();
        for row in &rows {
            let detail: String = row.try_get("", column)?;
            let line = match backend {
                // SQLite gives a tree by parent ids; indent by depth.
                DbBackend::Sqlite => {
                    let depth = depth_of(&rows, row.try_get("", "parent")?)?;
                    format!("{}{detail}", "  ".repeat(depth))
                }
                _ => detail,
            };
            lines.push(line);
        }
        for line in &lines {
            println!("{line}");
        }
        let seq_scan = lines.iter().any(|l| match backend {
            DbBackend::Postgres => l.contains("Seq Scan on deployments"),
            // SQLite names the table `deployments` or its alias `r`: SCAN reads every
            // row (or every index entry), SEARCH only a range.
            _ => {
                let words: Vec<&str> = l.split_whitespace().take(2).collect();
                matches!(words[..], ["SCAN", "deployments" | "r"])
            }
        });
        println!(
            "verdict: {}\n",
            if seq_scan {
                "deployments is scanned in full"
            } else {
                "no sequential scan of deployments"
            }
        );
    }
    Ok(())
}

/// How deep a SQLite plan row is: the number of parents above it.
fn depth_of(rows: &[sea_orm::QueryResult], mut parent: i32) -> Result<usize, sea_orm::DbErr> {
    let mut depth = 0;
    while parent != 0 {
        depth += 1;
        parent = rows
            .iter()
            .find(|r| r.try_get::<i32>("", "id").ok() == Some(parent))
            .map(|r| r.try_get::<i32>("", "parent"))
            .transpose()?
            .unwrap_or(0);
    }
    Ok(depth)
}
