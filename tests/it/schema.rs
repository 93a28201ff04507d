//! The migrated schema is the seed's, as the database itself reports it.

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
    use chrono::{Duration, NaiveDate};
    use deploy_tracker::deployments::ingest::{LOOKUP_POSTGRES, NEWEST_READY_SQLITE};
    use deploy_tracker::deployments::plan::HEAD_WINDOW;
    use deploy_tracker::simulate::SimApp;
    use deploy_tracker::store::deployments::{self, Environment, Status};
    use sea_orm::{ActiveValue::Set, EntityTrait, Value};

    // Sixteen (app, environment) pairs of 250 rows each, interleaved in time, one in
    // ten failed.
    let mut apps = Vec::new();
    for n in 0..8 {
        let id = app.register(SimApp::numbered(n).registration()).await;
        apps.push(id.parse::<uuid::Uuid>().unwrap());
    }
    let app_id = apps[3];
    let start = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let history: Vec<_> = (0..4_000i64)
        .map(|i| {
            let at = start + Duration::minutes(i);
            deployments::ActiveModel {
                id: Set(uuid::Uuid::new_v4()),
                app_id: Set(apps[(i % 8) as usize]),
                environment: Set(if i % 16 < 8 {
                    Environment::Production
                } else {
                    Environment::Staging
                }),
                status: Set(if i % 10 == 0 {
                    Status::Failed
                } else {
                    Status::Ready
                }),
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
    let backend = app.db.get_database_backend();
    app.db
        .execute_unprepared("ANALYZE deployments")
        .await
        .unwrap();

    let (sql, values): (String, Vec<Value>) = match app.backend {
        Backend::Postgres => (
            format!("EXPLAIN (COSTS OFF) {LOOKUP_POSTGRES}"),
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
        Backend::Sqlite => (
            format!("EXPLAIN QUERY PLAN {NEWEST_READY_SQLITE}"),
            vec![
                app_id.into(),
                "production".into(),
                (HEAD_WINDOW as i64).into(),
            ],
        ),
    };
    let plan = app
        .db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap();
    let plan: Vec<String> = plan
        .iter()
        .map(|row| match app.backend {
            Backend::Postgres => row.try_get_by_index::<String>(0).unwrap(),
            Backend::Sqlite => row.try_get_by_index::<String>(3).unwrap(),
        })
        .collect();
    let text = plan.join("\n");
    assert!(text.contains("idx_deployments_ready_created"), "{text}");
    // Neither a sort of the pair's rows (Postgres) nor a temporary B-tree for the
    // order (SQLite): the index hands them over newest first.
    assert!(
        !text.contains("Sort") && !text.contains("TEMP B-TREE"),
        "{text}"
    );
}

crate::db_test!(the_batch_reads_a_pairs_newest_ready_rows_through_their_index);
