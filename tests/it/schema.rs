//! The migrated schema is the seed's, as the database itself reports it.

use deploy_tracker::store::deployments::{self, Environment, Status};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, TestApp};

async fn rows(app: &TestApp, sql: &str) -> Vec<Vec<String>> {
    let result = app
        .db
        .query_all_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap();
    result
        .iter()
        .map(|row| {
            (0..)
                .map_while(|i| row.try_get_by_index::<Option<String>>(i).ok())
                .map(Option::unwrap_or_default)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn postgres_reports_the_seed_columns_checks_cascade_and_indexes() {
    let Some(app) = TestApp::try_new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let columns = rows(
        &app,
        "SELECT column_name::text, data_type::text, is_nullable::text, \
         COALESCE(character_maximum_length::text, '') \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'deployments' \
         ORDER BY ordinal_position",
    )
    .await;
    let expected = [
        ["id", "uuid", "NO", ""],
        ["appId", "uuid", "NO", ""],
        ["environment", "character varying", "NO", "20"],
        ["status", "character varying", "NO", "20"],
        ["deploymentUrl", "character varying", "YES", "255"],
        ["githubCommitSha", "character varying", "YES", "64"],
        ["vercelDeploymentId", "character varying", "YES", "64"],
        ["createdAt", "timestamp without time zone", "NO", ""],
        ["updatedAt", "timestamp without time zone", "NO", ""],
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(columns[i], want.map(String::from), "column {i}");
    }

    let checks = rows(
        &app,
        "SELECT conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c \
         JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE t.relname = 'deployments' AND n.nspname = current_schema() AND c.contype = 'c' \
         ORDER BY conname",
    )
    .await;
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert_eq!(checks[2][0], "deployments_failureReason_check");
    for reason in ["error", "canceled", "timeout"] {
        assert!(checks[2][1].contains(&format!("'{reason}'")), "{checks:?}");
    }
    assert_eq!(checks[0][0], "check_environment");
    assert!(checks[0][1].contains("'staging'") && checks[0][1].contains("'production'"));
    assert_eq!(checks[1][0], "check_status");
    for status in ["pending", "building", "ready", "failed"] {
        assert!(checks[1][1].contains(&format!("'{status}'")), "{checks:?}");
    }

    let fks = rows(
        &app,
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c \
         JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE t.relname = 'deployments' AND n.nspname = current_schema() AND c.contype = 'f'",
    )
    .await;
    // The seed's cascade to apps, and wave 2's link to the deployment replaced.
    assert_eq!(fks.len(), 2, "{fks:?}");
    assert!(
        fks.iter()
            .any(|fk| fk[0].contains("REFERENCES apps(id) ON DELETE CASCADE")),
        "{fks:?}"
    );
    assert!(
        fks.iter().any(|fk| fk[0].contains(
            r#"FOREIGN KEY ("previousDeploymentId") REFERENCES deployments(id) ON DELETE SET NULL"#
        )),
        "{fks:?}"
    );

    let indexes = rows(
        &app,
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = 'deployments'",
    )
    .await;
    let names: Vec<&str> = indexes.iter().map(|r| r[0].as_str()).collect();
    for name in [
        "idx_deployments_app_id",
        "idx_deployments_environment",
        "idx_deployments_status",
        "idx_deployments_app_env_created",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let composite = indexes
        .iter()
        .find(|r| r[0] == "idx_deployments_app_env_created")
        .unwrap();
    assert!(
        composite[1].contains(r#"("appId", environment, "createdAt" DESC)"#),
        "{composite:?}"
    );
}

#[tokio::test]
async fn sqlite_enforces_the_seed_checks_and_cascade() {
    let app = TestApp::new(Backend::Sqlite).await;
    let app_id = app.storefront().await;
    let id: uuid::Uuid = app_id.parse().unwrap();
    let bad = app
        .db
        .execute_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            r#"INSERT INTO deployments (id, "appId", environment, status) VALUES (?, ?, 'qa', 'pending')"#,
            [uuid::Uuid::new_v4().into(), id.into()],
        ))
        .await;
    assert!(bad.is_err(), "the environment CHECK holds");
    app.fixture("github/push.staging.json").await;
    assert_eq!(app.deployments().await.len(), 1);
    app.db
        .execute_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "DELETE FROM apps WHERE id = ?",
            [id.into()],
        ))
        .await
        .unwrap();
    assert!(
        app.deployments().await.is_empty(),
        "deleting the app cascades"
    );
    assert_eq!(app.delivery_count().await, 1, "the ledger outlives the app");
}

#[tokio::test]
async fn postgres_compresses_bodies_with_lz4_when_it_can_and_indexes_sparse_keys_by_value() {
    let Some(app) = TestApp::try_new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let lz4 = rows(
        &app,
        "SELECT ('lz4' = ANY(enumvals))::text FROM pg_settings \
         WHERE name = 'default_toast_compression'",
    )
    .await;
    let compression = rows(
        &app,
        "SELECT attcompression::text FROM pg_attribute \
         WHERE attrelid = 'webhook_deliveries'::regclass AND attname = 'body'",
    )
    .await;
    // Without lz4 (or before 14) the migration leaves the default, pglz.
    let expected = if lz4.first().is_some_and(|r| r[0] == "true") {
        "l"
    } else {
        ""
    };
    assert_eq!(compression, [[expected]]);

    let indexes = rows(
        &app,
        "SELECT indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = 'deployments' \
           AND indexname LIKE 'uq_deployments_%_deployment_id%' ORDER BY indexname",
    )
    .await;
    let names: Vec<&str> = indexes.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "uq_deployments_github_deployment_id_set",
            "uq_deployments_vercel_deployment_id_set"
        ]
    );
    for index in &indexes {
        assert!(
            index[1].contains("UNIQUE") && index[1].contains("IS NOT NULL"),
            "{index:?}"
        );
    }
}

/// A batch reads each (app, environment)'s newest ready rows to link
/// "previousDeploymentId" in memory. With a long history that must stay a few entries
/// of `idx_deployments_ready_created`, not every row of the pair read and sorted (which
/// made each batch cost more the longer the history: 636 µs a lookup against 133 µs
/// in ../shared/bench at C=8). The plans are of the statements ingest runs.
async fn the_batch_reads_a_pairs_newest_ready_rows_through_their_index(app: TestApp) {
    use chrono::Duration;
    use deploy_tracker::deployments::ingest::{LOOKUP_POSTGRES, LOOKUP_SQLITE};
    use deploy_tracker::deployments::plan::HEAD_WINDOW;
    use deploy_tracker::simulate::SimApp;
    use sea_orm::Value;

    // Sixteen (app, environment) pairs of 250 rows each, interleaved in time, one in
    // ten failed.
    let mut apps = Vec::new();
    for n in 0..8 {
        let id = app.register(SimApp::numbered(n).registration()).await;
        apps.push(id.parse::<uuid::Uuid>().unwrap());
    }
    let app_id = apps[3];
    let (start, _) = insert_history(&app, 4_000, |i| {
        let environment = if i % 16 < 8 {
            Environment::Production
        } else {
            Environment::Staging
        };
        let status = if i % 10 == 0 {
            Status::Failed
        } else {
            Status::Ready
        };
        (apps[(i % 8) as usize], environment, status)
    })
    .await;
    // On SQLite every arm of the lookup, each with one key, as a batch of every kind
    // of event sends it; without statistics (as a new database has them) and with.
    let sqlite_values = || -> Vec<Value> {
        let hex = app_id.simple().to_string();
        vec![
            r#"["dpl_1", "dpl_2"]"#.into(),
            "[1, 2]".into(),
            serde_json::json!([[hex, "production", "abc123"]])
                .to_string()
                .into(),
            serde_json::json!([[hex, "production"], [hex, "staging"]])
                .to_string()
                .into(),
        ]
    };
    if app.backend == Backend::Sqlite {
        let plan = plan_of(&app, &LOOKUP_SQLITE, sqlite_values()).await;
        assert_lookup_indexed(&plan);
    }
    app.db
        .execute_unprepared("ANALYZE deployments")
        .await
        .unwrap();
    if app.backend == Backend::Sqlite {
        // A long history of Vercel-only deploys (no row has a GitHub deployment id)
        // or of GitHub-only ones (no Vercel id): SQLite's statistics count NULLs as
        // one value, so they say each id matches every row (as bench/run.sh's
        // 100,000-row history made them). The lookup must still probe the unique
        // keys, not read the table for each batch.
        app.db
            .execute_unprepared(
                "UPDATE sqlite_stat1 SET stat = '100000 100000' \
                 WHERE idx IN ('uq_deployments_github_deployment_id_set', \
                               'uq_deployments_vercel_deployment_id_set'); \
                 ANALYZE sqlite_schema",
            )
            .await
            .unwrap();
    }

    let (sql, values): (&str, Vec<Value>) = match app.backend {
        Backend::Postgres => (
            LOOKUP_POSTGRES,
            vec![
                Vec::<String>::new().into(),
                Vec::<uuid::Uuid>::new().into(),
                Vec::<String>::new().into(),
                Vec::<String>::new().into(),
                Vec::<i64>::new().into(),
                vec![app_id].into(),
                vec![start + Duration::minutes(3_000)].into(),
                vec![app_id].into(),
                vec!["production".to_owned()].into(),
                (HEAD_WINDOW as i64).into(),
            ],
        ),
        Backend::Sqlite => (&LOOKUP_SQLITE, sqlite_values()),
    };
    let text = plan_of(&app, sql, values).await;
    assert!(text.contains("idx_deployments_ready_created"), "{text}");
    // Neither a sort of the pair's rows (Postgres) nor a temporary B-tree for the
    // order (SQLite): the index hands them over newest first.
    assert!(
        !text.contains("Sort") && !text.contains("TEMP B-TREE"),
        "{text}"
    );
    if app.backend == Backend::Sqlite {
        assert_lookup_indexed(&text);
    }
}

crate::db_test!(the_batch_reads_a_pairs_newest_ready_rows_through_their_index);

/// The sweeper pages through the rows in flight by an index of status: the seed's, or
/// idx_deployments_status_updated, which holds only those rows (partial on both
/// backends; SQLite uses it because the query names its condition word for word). A
/// long history of finished rows costs a sweep nothing either way.
async fn the_sweeper_reads_the_rows_in_flight_through_their_index(app: TestApp) {
    use chrono::Duration;
    use deploy_tracker::simulate::SimApp;
    use deploy_tracker::sweep::candidates_query;
    use sea_orm::QueryTrait;

    let app_id: uuid::Uuid = app
        .register(SimApp::numbered(0).registration())
        .await
        .parse()
        .unwrap();
    let (start, history) = insert_history(&app, 2_000, |i| {
        let status = match i % 100 {
            0 => Status::Pending,
            1 => Status::Building,
            2 => Status::Failed,
            _ => Status::Ready,
        };
        (app_id, Environment::Staging, status)
    })
    .await;
    app.db
        .execute_unprepared("ANALYZE deployments")
        .await
        .unwrap();
    let backend = app.db.get_database_backend();
    let cutoff = start + Duration::days(30);
    for after in [
        None,
        Some((start + Duration::minutes(500), uuid::Uuid::nil())),
    ] {
        let statement = candidates_query(cutoff, after).build(backend);
        let values = statement.values.map(|v| v.0).unwrap_or_default();
        let text = plan_of(&app, &statement.sql, values).await;
        assert!(text.contains("idx_deployments_status"), "{text}");
        assert!(!text.contains("Seq Scan"), "{text}");
        if app.backend == Backend::Sqlite {
            for step in text.lines() {
                assert!(!step.starts_with("SCAN "), "a table scan: {step}\n{text}");
            }
        }
        // And it answers: the rows in flight before the cutoff, oldest first.
        let found = candidates_query(cutoff, after).all(&app.db).await.unwrap();
        let expected = history
            .iter()
            .filter(|row| {
                matches!(row.status.as_ref(), Status::Pending | Status::Building)
                    && *row.updated_at.as_ref() < cutoff
                    && after.is_none_or(|(at, _)| *row.updated_at.as_ref() >= at)
            })
            .count();
        assert!(expected > 0);
        assert_eq!(found.len(), expected, "{after:?}");
        assert!(found.windows(2).all(|w| w[0].updated_at <= w[1].updated_at));
        assert!(
            found
                .iter()
                .all(|row| matches!(row.status, Status::Pending | Status::Building))
        );
    }
}

crate::db_test!(the_sweeper_reads_the_rows_in_flight_through_their_index);

/// `n` deployment rows a minute apart from 2026-01-01 00:00, row `i` of the app,
/// environment and status `row(i)` gives, inserted 500 at a time. Returns the first
/// row's time and the rows.
async fn insert_history(
    app: &TestApp,
    n: i64,
    row: impl Fn(i64) -> (uuid::Uuid, Environment, Status),
) -> (chrono::NaiveDateTime, Vec<deployments::ActiveModel>) {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let history: Vec<_> = (0..n)
        .map(|i| {
            let at = start + chrono::Duration::minutes(i);
            let (app_id, environment, status) = row(i);
            deployments::ActiveModel {
                id: Set(uuid::Uuid::new_v4()),
                app_id: Set(app_id),
                environment: Set(environment),
                status: Set(status),
                created_at: Set(at),
                updated_at: Set(at),
                ..Default::default()
            }
        })
        .collect();
    for chunk in history.chunks(500) {
        deployments::Entity::insert_many(chunk.iter().cloned())
            .exec_without_returning(&app.db)
            .await
            .unwrap();
    }
    (start, history)
}

/// The plan of `sql` with `values`, one line a step: Postgres's `EXPLAIN (COSTS
/// OFF)`, SQLite's `EXPLAIN QUERY PLAN` (each step's text).
async fn plan_of(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> String {
    let explain = match app.backend {
        Backend::Postgres => "EXPLAIN (COSTS OFF)",
        Backend::Sqlite => "EXPLAIN QUERY PLAN",
    };
    let plan = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            format!("{explain} {sql}"),
            values,
        ))
        .await
        .unwrap();
    plan.iter()
        .map(|row| match app.backend {
            Backend::Postgres => row.try_get_by_index::<String>(0).unwrap(),
            Backend::Sqlite => row.try_get_by_index::<String>(3).unwrap(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// No step of the plan reads a whole table: only the JSON arrays are scanned.
fn assert_no_table_scan(plan: &str) {
    for step in plan.lines() {
        assert!(
            !step.starts_with("SCAN ") || step.contains("VIRTUAL TABLE"),
            "a table scan: {step}\n{plan}"
        );
    }
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

/// Each arm of SQLite's batch lookup goes through its index.
fn assert_lookup_indexed(plan: &str) {
    assert_no_table_scan(plan);
    for index in [
        "uq_deployments_vercel_deployment_id_set (vercelDeploymentId=?)",
        "idx_deployments_rollback_to (rollbackTo=?)",
        "uq_deployments_github_deployment_id_set (githubDeploymentId=?)",
        "idx_deployments_app_env_sha (appId=? AND environment=? AND githubCommitSha=?)",
        "idx_deployments_ready_created (appId=? AND environment=?)",
        "sqlite_autoindex_deployments_1 (id=?)",
    ] {
        assert!(plan.contains(index), "{index} not used:\n{plan}");
    }
}

/// The other statements a batch reads with on SQLite, each one text for any batch
/// (JSON arrays): the apps it names and the ledger rows of its deliveries, each key
/// a probe of an index, on a new database and once it has statistics.
#[tokio::test]
async fn sqlite_reads_a_batchs_apps_and_copies_through_their_indexes() {
    use deploy_tracker::deployments::ingest::{APPS_SQLITE, RECORDED_SQLITE};
    use deploy_tracker::simulate::SimApp;
    use deploy_tracker::store::deliveries;
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let app = TestApp::new(Backend::Sqlite).await;
    // The batch's statements need `json_each` (3.9), `->>` (3.38) and `unhex` (3.41):
    // sqlx's bundled SQLite has them all.
    let version = rows(&app, "SELECT sqlite_version()").await;
    eprintln!("SQLite {}", version[0][0]);
    let number: Vec<u32> = version[0][0]
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(number[..2] >= [3, 41][..], "SQLite {version:?}");
    // Tables of some size, so that with statistics an index beats reading them whole.
    for n in 0..40 {
        app.register(SimApp::numbered(n).registration()).await;
    }
    let at = chrono::Utc::now().naive_utc();
    let ledger: Vec<deliveries::ActiveModel> = (0..600)
        .map(|n| deliveries::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            provider: Set(if n % 2 == 0 { "github" } else { "vercel" }.to_owned()),
            delivery_id: Set(format!("delivery-{n}")),
            event_type: Set("push".to_owned()),
            body: Set(b"{}".to_vec()),
            received_at: Set(at),
            outcome: Set("applied".to_owned()),
            reason: Set(String::new()),
            deployment_id: Set(None),
            attempts: Set(1),
            last_received_at: Set(Some(at)),
            source: Set("webhook".to_owned()),
        })
        .collect();
    for chunk in ledger.chunks(50) {
        deliveries::Entity::insert_many(chunk.iter().cloned())
            .exec_without_returning(&app.db)
            .await
            .unwrap();
    }
    for analyzed in [false, true] {
        if analyzed {
            app.db.execute_unprepared("ANALYZE").await.unwrap();
        }
        let apps = plan_of(
            &app,
            APPS_SQLITE,
            vec![
                r#"["sim-org/app-0001", "sim-org/app-0002"]"#.into(),
                r#"["prj_sim00000000000000000003"]"#.into(),
            ],
        )
        .await;
        assert_no_table_scan(&apps);
        assert!(apps.contains("idx_apps_github_repo (<expr>=?)"), "{apps}");
        assert!(apps.contains("(vercelProjectId=?)"), "{apps}");
        let copies = plan_of(
            &app,
            RECORDED_SQLITE,
            vec![r#"[["github", "delivery-2"], ["vercel", "delivery-3"]]"#.into()],
        )
        .await;
        assert_no_table_scan(&copies);
        assert!(copies.contains("(provider=? AND deliveryId=?)"), "{copies}");
    }
}

/// Statistics gathered while a table was tiny make bad plans for it once it has
/// grown, and the writers keep their plans until the statistics change: ingest
/// analyzes a table whose statistics are stale (never gathered, or gathered when it
/// held less than half its rows) and leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_are_gathered_again_once_a_table_has_doubled() {
    use deploy_tracker::deployments::ingest::analyze_if_stale;
    let Some(app) = TestApp::try_new(Backend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL is not set; skipped");
        return;
    };
    let app_id: uuid::Uuid = app.storefront().await.parse().unwrap();
    assert!(analyze_if_stale(&app.db).await.unwrap(), "never analyzed");
    assert!(
        !analyze_if_stale(&app.db).await.unwrap(),
        "analyzed, and not grown"
    );

    insert_history(&app, 50, |_| (app_id, Environment::Staging, Status::Ready)).await;
    // Postgres counts the rows a moment after they are committed (a backend reports
    // its counts at most once a second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !analyze_if_stale(&app.db).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "50 rows in a table analyzed empty, still not stale"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!analyze_if_stale(&app.db).await.unwrap(), "analyzed again");
    let analyzed = rows(
        &app,
        "SELECT reltuples::bigint::text FROM pg_class WHERE oid = to_regclass('deployments')",
    )
    .await;
    assert_eq!(analyzed, [["50"]]);

    // A database restored or copied (CREATE DATABASE … TEMPLATE), or whose server
    // crashed, keeps its statistics but starts its counters again: nothing to gather.
    app.db
        .execute_unprepared(
            "SELECT pg_stat_reset_single_table_counters(t::regclass) \
             FROM unnest(ARRAY['apps', 'deployments', 'webhook_deliveries']) AS t",
        )
        .await
        .unwrap();
    let reset = rows(
        &app,
        "SELECT (last_analyze IS NULL)::text FROM pg_stat_user_tables \
         WHERE relid = to_regclass('deployments')",
    )
    .await;
    assert_eq!(reset, [["true"]], "the counters were reset");
    assert!(
        !analyze_if_stale(&app.db).await.unwrap(),
        "statistics kept, counters reset"
    );
}
