#!/usr/bin/env bash
# How fast Postgres takes the rows the complete record writes when no receiver asks
# for them: pgbench runs one statement that inserts ROWS deployment rows (a third each
# pending, building and ready) and ROWS ledger rows pointing at them, with real
# webhook bodies from the shared benchmark's workload, into a scratch database
# migrated by the release binary (every index, check and foreign key of the real
# schema). No lookup, no upsert, no version check: a floor for a delivery's database
# work. Prints deliveries (rows pairs) a second and the machine's CPU a delivery (its
# busy share less idle and iowait, over the run, so nothing else should run). The
# database is dropped at the end.
#
#   PGPORT=55432 bench/floor.sh          # the shared benchmark's cluster (pg-up.sh)
#   CLIENTS="2 32" ROWS="1 16" DURATION=8 bench/floor.sh   # seconds a run
#
# Needs the release binary (cargo build --release), pgbench and the workload that
# ../shared/bench/compare.py generates (WORKLOAD, default /tmp/dt-bench/wl/main.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGPORT=${PGPORT:-5432}
export PGSSLMODE=${PGSSLMODE:-disable} PGOPTIONS="-c client_min_messages=warning"
CLIENTS=${CLIENTS:-"1 2 8 32"}
ROWS=${ROWS:-"1 4 8 16"}
DURATION=${DURATION:-8}
WORKLOAD=${WORKLOAD:-/tmp/dt-bench/wl/main.tsv}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/deploy-tracker}
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
[ -f "$WORKLOAD" ] || { echo "no workload at $WORKLOAD: run ../shared/bench/compare.py once" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release" >&2; exit 2; }

DB=dt_floor_$$
WORK=$(mktemp -d)
createdb "$DB"
trap 'dropdb --if-exists "$DB"; rm -rf "$WORK"' EXIT
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB" "$BIN" migrate >/dev/null

# The workload's first 40,000 bodies (its fifth field), as hex for COPY.
python3 - "$WORKLOAD" >"$WORK/bodies.tsv" <<'PY'
import sys
n = 0
for line in open(sys.argv[1], "rb"):
    if line.startswith(b"#"):
        continue
    body = line.rstrip(b"\n").split(b"\t", 4)[4]
    n += 1
    print(f"{n}\t\\\\x{body.hex()}")
    if n == 40000:
        break
PY
psql -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
INSERT INTO apps (id, name, "githubRepo", "vercelProjectId", "createdAt", "updatedAt")
SELECT gen_random_uuid(), 'app-' || a, 'acme/app-' || a, 'prj_' || a, now(), now()
FROM generate_series(1, 200) AS a;
CREATE TABLE bodies (i int PRIMARY KEY, body bytea NOT NULL);
\copy bodies FROM '$WORK/bodies.tsv'
VACUUM ANALYZE;
SQL
BODIES=$(psql -XAt -d "$DB" -c "SELECT count(*) FROM bodies")

cat >"$WORK/floor.sql" <<'SQL'
\set k random(0, 1000000)
WITH a AS (SELECT array_agg(id ORDER BY id) AS ids FROM apps),
d AS (
  INSERT INTO deployments (id, "appId", environment, status, "githubCommitSha",
                           "vercelDeploymentId", "deploymentUrl", "createdAt", "updatedAt",
                           "finishedAt", "startedAt", "triggeredBy")
  SELECT gen_random_uuid(), a.ids[1 + (:k + g) % 200],
         CASE WHEN g % 2 = 0 THEN 'staging' ELSE 'production' END,
         (ARRAY['pending', 'building', 'ready'])[1 + g % 3], md5(random()::text),
         CASE WHEN g % 3 > 0 THEN 'dpl_' || md5(random()::text) END,
         'https://app-' || g || '.vercel.app', now(), now(),
         CASE WHEN g % 3 = 2 THEN now() END, now(), 'someone'
  FROM generate_series(1, :rows) AS g, a
  RETURNING id)
INSERT INTO webhook_deliveries (id, provider, "deliveryId", "eventType", body, "receivedAt",
                                outcome, reason, "deploymentId", attempts, "lastReceivedAt", source)
SELECT gen_random_uuid(), 'github', gen_random_uuid()::text, 'push', b.body, now(),
       'applied', '', d.id, 1, now(), 'webhook'
FROM (SELECT id, row_number() OVER () AS r FROM d) AS d
JOIN bodies AS b ON b.i = (:k * 16 + d.r) % :bodies + 1;
SQL

cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
printf '%-8s %-5s %12s %8s %6s\n' clients rows deliveries/s cpu_us busy
for c in $CLIENTS; do
  for rows in $ROWS; do
    psql -q -d "$DB" -c "TRUNCATE deployments, webhook_deliveries" -c "CHECKPOINT"
    read -r t0 i0 < <(cpu_ticks)
    out=$("$PGBENCH" -n -M prepared -c "$c" -j $(( c < 2 ? 1 : 2 )) -T "$DURATION" \
      -D rows="$rows" -D bodies="$BODIES" -f "$WORK/floor.sql" "$DB" 2>&1) \
      || { echo "$out" >&2; exit 1; }
    read -r t1 i1 < <(cpu_ticks)
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    python3 - "$c" "$rows" "$tps" "$t0" "$i0" "$t1" "$i1" "$(nproc)" <<'PY'
import sys
c, rows = sys.argv[1], int(sys.argv[2])
tps, t0, i0, t1, i1, cores = map(float, sys.argv[3:])
busy = 1 - (i1 - i0) / (t1 - t0)
rate = tps * rows
print(f"{c:<8} {rows:<5} {rate:12.0f} {busy * cores * 1e6 / rate:8.0f} {busy:6.2f}")
PY
  done
done
