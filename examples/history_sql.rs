//! Prints the exact SQL the history API and CLI issue on Postgres, one statement a
//! line as `label<TAB>sql`, for `bench/explain.sh` to EXPLAIN. Second pages start at
//! the cursor the real first page returns.
//!
//! `DATABASE_URL=postgres://… cargo run --example history_sql`

use deploy_tracker::deployments::ingest::Outcome;
use deploy_tracker::store::deployments::{self, Environment, Filter, Status};
use deploy_tracker::store::page::Limit;
use deploy_tracker::store::{self, deliveries};
use sea_orm::{DbBackend, EntityTrait, QueryOrder, QueryTrait};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = store::connect(&std::env::var("DATABASE_URL")?).await?;
    // Any app will do; take the oldest.
    let app = store::apps::Entity::find()
        .order_by_asc(store::apps::Column::CreatedAt)
        .one(&db)
        .await?
        .ok_or("no apps: load the data first")?;
    let limit = Limit::default();
    let per_app = Filter {
        app_id: Some(app.id),
        ..Filter::default()
    };
    let failed = Filter {
        status: Some(Status::Failed),
        ..Filter::default()
    };
    let next = |page: store::page::Page<deployments::Model>| {
        page.next_cursor
            .map(|c| c.parse().expect("a cursor we issued"))
    };
    let per_app_cursor = next(deployments::history(&db, per_app, None, limit).await?);
    let failed_cursor = next(deployments::history(&db, failed, None, limit).await?);

    let statements = [
        (
            "latest per app/env",
            deployments::latest_query(app.id, Environment::Production).build(DbBackend::Postgres),
        ),
        (
            "per-app history, first page",
            deployments::history_query(per_app, None, limit).build(DbBackend::Postgres),
        ),
        (
            "per-app history, next page",
            deployments::history_query(per_app, per_app_cursor, limit).build(DbBackend::Postgres),
        ),
        (
            "per-app history in one environment",
            deployments::history_query(
                Filter {
                    environment: Some(Environment::Staging),
                    ..per_app
                },
                None,
                limit,
            )
            .build(DbBackend::Postgres),
        ),
        (
            "failed across apps, first page",
            deployments::history_query(failed, None, limit).build(DbBackend::Postgres),
        ),
        (
            "failed across apps, next page",
            deployments::history_query(failed, failed_cursor, limit).build(DbBackend::Postgres),
        ),
        (
            "all deliveries, first page",
            deliveries::list_query(deliveries::Filter::default(), None, limit)
                .into_statement(DbBackend::Postgres),
        ),
        (
            "unmatched deliveries, first page",
            deliveries::list_query(
                deliveries::Filter {
                    outcome: Some(Outcome::Unmatched),
                    provider: None,
                },
                None,
                limit,
            )
            .into_statement(DbBackend::Postgres),
        ),
        (
            "per-app history, the newer page before a cursor (the status page)",
            deployments::history_before_query(
                per_app,
                per_app_cursor.expect("more than one page"),
                limit,
            )
            .build(DbBackend::Postgres),
        ),
        (
            "latest of every app and environment (the dashboard)",
            deployments::latest_everywhere_statement(DbBackend::Postgres, None),
        ),
        (
            "latest of one app in both environments (the app page)",
            deployments::latest_everywhere_statement(DbBackend::Postgres, Some(app.id)),
        ),
        (
            "one app's last 30 days for the charts (the app page)",
            deployments::points_query(
                app.id,
                deploy_tracker::webhooks::now() - chrono::TimeDelta::days(30),
                10_000,
            )
            .build(DbBackend::Postgres),
        ),
    ];
    for (label, statement) in statements {
        // One statement a line, for the reader in bench/explain.sh.
        let sql = statement.to_string().replace('\n', " ");
        println!("{label}\t{sql}");
    }
    Ok(())
}
