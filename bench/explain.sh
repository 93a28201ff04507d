#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of the history queries on a scratch Postgres database
# with ROWS deployments (default 200 000) across 100 apps, and 100 000 deliveries. The SQL is what the code
# issues, printed by examples/history_sql.rs. The database is dropped at the end.
#
#   bench/explain.sh            # PGHOST=127.0.0.1 PGUSER=postgres PGPORT=5432 by default
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGPORT=${PGPORT:-5432}
ROWS=${ROWS:-200000}
DB=dt_explain_$$
URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"

createdb "$DB"
trap 'dropdb --if-exists "$DB"' EXIT

export DATABASE_URL=$URL
cargo run -q --bin deploy-tracker -- migrate >/dev/null

psql -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
INSERT INTO apps (id, name, "githubRepo", "vercelProjectId", "createdAt", "updatedAt")
SELECT gen_random_uuid(), 'app-' || a, 'acme/app-' || a, 'prj_' || a,
       now() - interval '400 days' + a * interval '1 second', now()
FROM generate_series(1, 100) AS a;

-- One statement: ROWS deployments, one every 30 s, spread round-robin over the apps;
-- 60 % staging, about 3 % failed, the newest few still pending or building.
INSERT INTO deployments (id, "appId", environment, status, "deploymentUrl",
                         "githubCommitSha", "vercelDeploymentId", "createdAt", "updatedAt")
SELECT gen_random_uuid(), apps.id,
       CASE WHEN abs(hashint4(i + 1)) % 5 < 3 THEN 'staging' ELSE 'production' END,
       CASE WHEN i <= 200 THEN (ARRAY['pending', 'building'])[1 + i % 2]
            WHEN hashint4(i) % 33 = 0 THEN 'failed' ELSE 'ready' END,
       'https://app-' || i || '.vercel.app',
       md5(i::text) || substr(md5('x' || i), 1, 8),
       'dpl_' || i,
       now() - i * interval '30 seconds', now() - i * interval '30 seconds'
FROM generate_series(1, $ROWS) AS i
JOIN apps ON apps.name = 'app-' || (1 + i % 100);

-- And a ledger of 100 000 deliveries, one every 30 s, 5 % unmatched.
INSERT INTO webhook_deliveries (id, provider, "deliveryId", "eventType", body,
                                "receivedAt", outcome, reason)
SELECT gen_random_uuid(), (ARRAY['github', 'vercel'])[1 + i % 2], 'd-' || i,
       'push', convert_to('{"n":' || i || '}', 'UTF8'), now() - i * interval '30 seconds',
       CASE WHEN hashint4(i) % 20 = 0 THEN 'unmatched' ELSE 'applied' END, 'bench'
FROM generate_series(1, 100000) AS i;

ANALYZE;
SQL

echo "# $(psql -tA -d "$DB" -c 'SELECT count(*) FROM deployments') deployments, $(psql -tA -d "$DB" -c "SELECT count(*) FROM deployments WHERE status = 'failed'") failed, 100 apps; $(psql -tA -d "$DB" -c 'SHOW server_version')"
cargo run -q --example history_sql | while IFS=$'\t' read -r label sql; do
    echo
    echo "## $label"
    echo "$sql"
    psql -X -d "$DB" -c "EXPLAIN (ANALYZE, BUFFERS) $sql" </dev/null
done
