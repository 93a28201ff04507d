# The pre-loaded history the benchmarks share (sourced by bench/run.sh and
# bench/pages.sh): 100 apps "hist-app-N" and HISTORY deployments, one every 30 s
# going back from now, round-robin over the apps; 60 % staging; 1 in 33 failed
# (of those, 1 in 3 canceled and 1 in 5 timed out, the rest errors); every row with
# a build of 30 s to 5 min (startedAt = createdAt, finishedAt = + build) and a
# commit 0 to 10 min before it was created.
HISTORY=${HISTORY:-1000000}

# preload_postgres DB: one INSERT a table, then VACUUM ANALYZE.
preload_postgres() {
    psql -q -X -v ON_ERROR_STOP=1 -d "$1" <<SQL
INSERT INTO apps (id, name, "githubRepo", "vercelProjectId", "createdAt", "updatedAt")
SELECT gen_random_uuid(), 'hist-app-' || a, 'hist/app-' || a, 'prj_hist' || a, now(), now()
FROM generate_series(1, 100) AS a;
INSERT INTO deployments (id, "appId", environment, status, "deploymentUrl",
                         "githubCommitSha", "vercelDeploymentId", "createdAt", "updatedAt",
                         "failureReason", "buildDurationMs", "startedAt", "finishedAt", "committedAt")
SELECT gen_random_uuid(), apps.id,
       CASE WHEN i % 5 < 3 THEN 'staging' ELSE 'production' END,
       CASE WHEN i % 33 = 0 THEN 'failed' ELSE 'ready' END,
       'https://hist-' || i || '.vercel.app', md5(i::text) || substr(md5('x' || i), 1, 8),
       'dpl_hist' || i, t.created, t.created + t.build,
       CASE WHEN i % 33 <> 0 THEN NULL WHEN i % 99 = 0 THEN 'canceled'
            WHEN i % 165 = 0 THEN 'timeout' ELSE 'error' END,
       t.build_ms, t.created, t.created + t.build, t.created - (i % 600) * interval '1 second'
FROM generate_series(1, $HISTORY) AS i
CROSS JOIN LATERAL (SELECT now()::timestamp - i * interval '30 seconds' AS created,
                           30000 + (i * 7919) % 270000 AS build_ms,
                           (30000 + (i * 7919) % 270000) * interval '1 millisecond' AS build) AS t
JOIN apps ON apps.name = 'hist-app-' || (1 + i % 100);
VACUUM ANALYZE;
SQL
}

# preload_sqlite FILE: the same history in SQLite: UUIDs are 16-byte blobs,
# timestamps sqlx's text.
preload_sqlite() {
    sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
INSERT INTO apps (id, name, "githubRepo", "vercelProjectId", "stagingBranch", "productionBranch", "createdAt", "updatedAt")
WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a WHERE n < 100)
SELECT randomblob(16), 'hist-app-' || n, 'hist/app-' || n, 'prj_hist' || n, 'staging', 'main',
       strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now') FROM a;
CREATE TEMP TABLE hist_apps (k INTEGER PRIMARY KEY, id BLOB NOT NULL);
INSERT INTO hist_apps SELECT row_number() OVER (ORDER BY name) - 1, id FROM apps WHERE name LIKE 'hist-app-%';
INSERT INTO deployments (id, "appId", environment, status, "deploymentUrl",
                         "githubCommitSha", "vercelDeploymentId", "createdAt", "updatedAt",
                         "failureReason", "buildDurationMs", "startedAt", "finishedAt", "committedAt")
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $HISTORY),
t AS (SELECT i, 30000 + (i * 7919) % 270000 AS build_ms FROM s)
SELECT randomblob(16), (SELECT id FROM hist_apps WHERE k = i % 100),
       CASE WHEN i % 5 < 3 THEN 'staging' ELSE 'production' END,
       CASE WHEN i % 33 = 0 THEN 'failed' ELSE 'ready' END,
       'https://hist-' || i || '.vercel.app', printf('%040x', i), 'dpl_hist' || i,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 30) || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 30) || ' seconds', '+' || (build_ms / 1000.0) || ' seconds'),
       CASE WHEN i % 33 <> 0 THEN NULL WHEN i % 99 = 0 THEN 'canceled'
            WHEN i % 165 = 0 THEN 'timeout' ELSE 'error' END,
       build_ms,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 30) || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 30) || ' seconds', '+' || (build_ms / 1000.0) || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i * 30 + i % 600) || ' seconds')
FROM t;
ANALYZE;
SQL
}
