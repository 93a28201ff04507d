#!/usr/bin/env bash
# The standard benchmark, in one command: the release server on a scratch Postgres
# database and on a temporary SQLite file, driven by examples/load.rs at C = 8 and 32,
# on an empty history and on one pre-loaded with HISTORY deployments; pgbench with a
# single-row INSERT into deployments at the same client counts for reference; and
# start-up to /readyz on an already-migrated database. Medians of RUNS runs at the end.
#
#   bench/run.sh                     # PGHOST=127.0.0.1 PGUSER=postgres PGPORT=5432
#   RUNS=1 FLOWS=3000 bench/run.sh   # a quick look
#   BIN=/tmp/old/deploy-tracker bench/run.sh   # another build, same driver
#
# Needs psql, createdb/dropdb, pgbench and sqlite3 on the machine running it, and a
# Postgres role that may CHECKPOINT (a superuser, or pg_checkpoint on PostgreSQL 15+).
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGPORT=${PGPORT:-5432}
# Loopback needs no TLS, and on this cluster a TLS handshake costs ~200 ms per new
# connection; pgbench (libpq) and the server (sqlx) use the same mode either way.
export PGSSLMODE=${PGSSLMODE:-disable}
RUNS=${RUNS:-3}
APPS=${APPS:-100}
FLOWS=${FLOWS:-10000}               # Postgres: three deliveries a flow
SQLITE_FLOWS=${SQLITE_FLOWS:-4000}
HISTORY=${HISTORY:-1000000}
CLIENTS=${CLIENTS:-"8 32"}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
TARGET=${CARGO_TARGET_DIR:-target}

export GITHUB_WEBHOOK_SECRET=bench-github-secret VERCEL_WEBHOOK_SECRET=bench-vercel-secret
export API_TOKEN=bench-token LOG_FORMAT=json RUST_LOG=warn

# BIN=path/to/deploy-tracker measures another build (an older commit's, say); with
# LOAD=path/to/load as well, nothing is built.
if [ -z "${BIN:-}" ] || [ -z "${LOAD:-}" ]; then
    cargo build -q --release --bin deploy-tracker --example load
fi
BIN=${BIN:-$TARGET/release/deploy-tracker}
LOAD=${LOAD:-$TARGET/release/examples/load}

WORK=$(mktemp -d)
PGDBS=()
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    for db in "${PGDBS[@]}"; do dropdb --if-exists "$db" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
RESULTS=$WORK/results

pg_url() { echo "postgres://$PGUSER@$PGHOST:$PGPORT/$1?sslmode=$PGSSLMODE"; }

# A port below Linux's ephemeral range (32768 and up by default): a port there that
# nothing listens on may still be the local end of a client's connection (the load
# driver's, pgbench's, the pool's), and binding it then fails.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# start_server URL: serves URL on a free port; sets SERVER, PORT and STARTUP_MS (spawn
# to the first 200 from /readyz).
start_server() {
    PORT=$(free_port)
    local t0 t1
    t0=$(date +%s%N)
    DATABASE_URL=$1 "$BIN" serve --bind "127.0.0.1:$PORT" 2>>"$WORK/server.log" &
    SERVER=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    STARTUP_MS=$(((t1 - t0) / 1000000))
}

stop_server() {
    kill "$SERVER"
    wait "$SERVER" || true
    SERVER=
}

# load LABEL FLOWS C: one load run against the running server, recorded in RESULTS.
load() {
    local label=$1 flows=$2 c=$3 out
    out=$("$LOAD" --url "http://127.0.0.1:$PORT" --apps "$APPS" --flows "$flows" \
        --concurrency "$c" --pid "$SERVER") || true
    echo "$out" | sed "s/^/  /"
    local line
    line="label=$label $(echo "$out" | grep '^load ' | sed 's/^load //')"
    line="$line $(echo "$out" | grep '^cpu ' | sed 's/^cpu //')"
    line="$line latest_$(echo "$out" | grep '^latest ' | grep -o 'p99_ms=[0-9.]*')"
    line="$line $(echo "$out" | grep -o '^verify=[A-Z]*' || echo verify=MISSING)"
    line="$line startup_ms=$STARTUP_MS"
    echo "$line" >>"$RESULTS"
}

# checkpoint: flushes what loading or copying a database left dirty now, rather than
# during the next run (a checkpoint writes out up to the whole copied history).
checkpoint() {
    psql -XqAt -d postgres -c CHECKPOINT
}

# pgbench_insert DB C: single-row INSERT into deployments at C clients; prints tps.
pgbench_insert() {
    local db=$1 c=$2 app
    app=$(psql -XtAq -d "$db" -c "SELECT id FROM apps ORDER BY name LIMIT 1")
    cat >"$WORK/insert.sql" <<SQL
INSERT INTO deployments (id, "appId", environment, status, "githubCommitSha", "vercelDeploymentId", "createdAt", "updatedAt")
VALUES (gen_random_uuid(), '$app', 'staging', 'pending', md5(random()::text), 'dpl_pgb' || md5(random()::text), now(), now());
SQL
    "$PGBENCH" -n -M prepared -c "$c" -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/insert.sql" "$db" 2>/dev/null |
        grep -o 'tps = [0-9.]*' | head -1 | cut -d' ' -f3
}

# pg_run DB RUN empty|history C: one Postgres run on DB, a migrated database of its
# own: the load, then pgbench's reference at the same client count; drops DB.
pg_run() {
    local db=$1 run=$2 kind=$3 c=$4 what tps
    what=$([ "$kind" = empty ] && echo empty || echo "${HISTORY}-row history")
    checkpoint
    start_server "$(pg_url "$db")"
    echo "== run $run: postgres $what C=$c (start-up to /readyz ${STARTUP_MS} ms)"
    load "pg-$kind-c$c" "$FLOWS" "$c"
    stop_server
    tps=$(pgbench_insert "$db" "$c")
    echo "  pgbench single INSERT C=$c: tps=$tps"
    sed -i "\$s/\$/ pgbench_tps=$tps/" "$RESULTS"
    dropdb "$db"
}

# preload_postgres and preload_sqlite: the HISTORY deployments.
. bench/history.sh

echo "# $(date -u +%FT%TZ) $(nproc) cores; $(psql -XtAq -d postgres -c 'SHOW server_version') ; sqlite $(sqlite3 --version | cut -d' ' -f1); runs=$RUNS apps=$APPS flows=$FLOWS sqlite_flows=$SQLITE_FLOWS history=$HISTORY"

for run in $(seq 1 "$RUNS"); do
    # Postgres, empty history: a fresh database per client count.
    for c in $CLIENTS; do
        db=dt_bench_$$_e$run$c
        createdb "$db" && PGDBS+=("$db")
        DATABASE_URL=$(pg_url "$db") "$BIN" migrate >/dev/null
        pg_run "$db" "$run" empty "$c"
    done
done

# Postgres with HISTORY deployments, loaded once; every run gets its own copy
# (CREATE DATABASE … TEMPLATE), so that neither an earlier run nor pgbench's rows
# add to the history a run starts from.
base=dt_bench_$$_h
createdb "$base" && PGDBS+=("$base")
DATABASE_URL=$(pg_url "$base") "$BIN" migrate >/dev/null
t0=$(date +%s)
preload_postgres "$base"
echo "# postgres: $(psql -XtAq -d "$base" -c 'SELECT count(*) FROM deployments') deployments loaded in $(($(date +%s) - t0)) s"
for run in $(seq 1 "$RUNS"); do
    for c in $CLIENTS; do
        db=dt_bench_$$_h$run$c
        createdb -T "$base" --strategy=file_copy "$db" && PGDBS+=("$db")
        pg_run "$db" "$run" history "$c"
    done
done

# SQLite (WAL, synchronous=FULL): a fresh file per empty run, a copy of the history
# file per history run.
for run in $(seq 1 "$RUNS"); do
    for c in $CLIENTS; do
        file=$WORK/empty-$run-$c.db
        DATABASE_URL="sqlite://$file?mode=rwc" "$BIN" migrate >/dev/null
        start_server "sqlite://$file?mode=rwc"
        echo "== run $run: sqlite empty C=$c (start-up to /readyz ${STARTUP_MS} ms)"
        load "sqlite-empty-c$c" "$SQLITE_FLOWS" "$c"
        stop_server
        rm -f "$file"*
    done
done
file=$WORK/history.db
DATABASE_URL="sqlite://$file?mode=rwc" "$BIN" migrate >/dev/null
t0=$(date +%s)
preload_sqlite "$file"
echo "# sqlite: $(sqlite3 "$file" 'SELECT count(*) FROM deployments') deployments loaded in $(($(date +%s) - t0)) s"
sqlite3 "$file" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
for run in $(seq 1 "$RUNS"); do
    for c in $CLIENTS; do
        copy=$WORK/history-$run-$c.db
        cp "$file" "$copy"
        start_server "sqlite://$copy?mode=rwc"
        echo "== run $run: sqlite ${HISTORY}-row history C=$c (start-up to /readyz ${STARTUP_MS} ms)"
        load "sqlite-history-c$c" "$SQLITE_FLOWS" "$c"
        stop_server
        rm -f "$copy"*
    done
done

# The awk function both tables take their medians with ("-" when no run has the key),
# and one that prints such a median as a whole number.
MEDIAN='
        function median(key,   n, i, j, t, v) {
            n = 0
            for (i = 1; i <= NR; i++) if ((i, key) in val) v[++n] = val[i, key]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            if (n == 0) return "-"
            return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        function whole(x) { return x == "-" ? "-" : sprintf("%.0f", x) }
'

echo
echo "# medians of $RUNS runs (rate = deliveries/s; ratio = rate / pgbench single-INSERT tps)"
printf '%-20s %8s %8s %8s %8s %6s %9s %8s %6s %8s %9s %s\n' \
    config rate p50_ms p99_ms max_ms errors rss_mb latest99 boot_ms pgb_tps ratio verify
for label in $(grep -o '^label=[^ ]*' "$RESULTS" | cut -d= -f2 | awk '!seen[$0]++'); do
    grep "^label=$label " "$RESULTS" | awk -v label="$label" "$MEDIAN"'
        {
            for (f = 2; f <= NF; f++) {
                split($f, kv, "=")
                if (kv[2] ~ /^[0-9.]+$/) val[NR, kv[1]] = kv[2] + 0
                else text[NR, kv[1]] = kv[2]
            }
            if ((NR, "pgbench_tps") in val && val[NR, "pgbench_tps"] > 0) val[NR, "ratio"] = val[NR, "rate"] / val[NR, "pgbench_tps"]
            verify = verify (NR > 1 ? "," : "") text[NR, "verify"]
        }
        END {
            printf "%-20s %8.0f %8.2f %8.2f %8.2f %6d %9.1f %8.2f %6d %8s %9s %s\n", label,
                median("rate"), median("p50_ms"), median("p99_ms"), median("max_ms"), median("errors"),
                median("peak_rss_mb"), median("latest_p99_ms"), median("startup_ms"),
                median("pgbench_tps") == "-" ? "-" : sprintf("%.0f", median("pgbench_tps")),
                median("ratio") == "-" ? "-" : sprintf("%.2f", median("ratio")), verify
        }'
done

echo
echo "# where the CPU went while deliveries were sent: microseconds per delivery in the"
echo "# server, in Postgres (every postgres process) and in the driver; busy = their sum"
echo "# as a share of all cores (medians of $RUNS runs)"
printf '%-20s %10s %12s %10s %9s\n' config server_us postgres_us driver_us busy_pct
for label in $(grep -o '^label=[^ ]*' "$RESULTS" | cut -d= -f2 | awk '!seen[$0]++'); do
    grep "^label=$label " "$RESULTS" | awk -v label="$label" "$MEDIAN"'
        { for (f = 2; f <= NF; f++) { split($f, kv, "="); if (kv[2] ~ /^[0-9.]+$/) val[NR, kv[1]] = kv[2] + 0 } }
        END {
            printf "%-20s %10s %12s %10s %9s\n", label, whole(median("server_us")),
                whole(median("postgres_us")), whole(median("driver_us")), whole(median("busy_pct"))
        }'
done
