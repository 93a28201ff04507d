#!/usr/bin/env bash
# Reads with a long history: HISTORY deployments (bench/history.sh) loaded into a
# fresh SQLite file and a fresh Postgres database; on each, the release server is
# started and every URL that `urls` lists is requested REQUESTS times, one after
# another over one keep-alive connection (curl), after a few unrecorded warm-up
# requests; p50/p99/max of curl's time_total are printed, then the plans of the
# stats statement (examples/stats_explain.rs). A benchmark, not a test: it prints.
#
#   bench/pages.sh                          # HISTORY=1000000 REQUESTS=200 BACKENDS="sqlite postgres"
#   HISTORY=100000 REQUESTS=50 BACKENDS=sqlite bench/pages.sh
#
# Needs psql, createdb/dropdb and sqlite3 (PGHOST=127.0.0.1 PGUSER=postgres PGPORT=5432).
set -euo pipefail
cd "$(dirname "$0")/.."

# What is timed: one "label path" line each. $APP_ID is hist-app-1's id. To time a
# new page, add a line here.
urls() {
    echo "stats-one-app /api/stats?appId=$APP_ID"
    echo "stats-one-app-production /api/stats?appId=$APP_ID&environment=production"
    echo "stats-all-apps /api/stats"
    echo "page-dashboard /"
    echo "page-app /apps/$APP_ID"
    echo "page-app-failed-production /apps/$APP_ID?environment=production&status=failed"
    echo "page-live-poll /live"
}

export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGPORT=${PGPORT:-5432}
export PGSSLMODE=${PGSSLMODE:-disable}
HISTORY=${HISTORY:-1000000}
REQUESTS=${REQUESTS:-200}
WARMUP=${WARMUP:-5}
BACKENDS=${BACKENDS:-"sqlite postgres"}
TARGET=${CARGO_TARGET_DIR:-target}
export API_TOKEN=bench-token LOG_FORMAT=json RUST_LOG=warn
export GITHUB_WEBHOOK_SECRET=bench-github-secret VERCEL_WEBHOOK_SECRET=bench-vercel-secret

. bench/history.sh

cargo build -q --release --bin deploy-tracker --example stats_explain
BIN=$TARGET/release/deploy-tracker
EXPLAIN=$TARGET/release/examples/stats_explain

WORK=$(mktemp -d)
PGDB=
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    [ -n "$PGDB" ] && dropdb --if-exists "$PGDB" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

start_server() {
    PORT=$(free_port)
    DATABASE_URL=$1 "$BIN" serve --bind "127.0.0.1:$PORT" 2>>"$WORK/server.log" &
    SERVER=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
        sleep 0.01
    done
}

stop_server() {
    kill "$SERVER"
    wait "$SERVER" || true
    SERVER=
}

# time_url BACKEND LABEL PATH: REQUESTS timed GETs of PATH; one result line.
time_url() {
    local backend=$1 label=$2 path=$3 url args=() i
    url="http://127.0.0.1:$PORT$path"
    for ((i = 0; i < WARMUP + REQUESTS; i++)); do args+=(-o /dev/null "$url"); done
    curl -s -H "Authorization: Bearer $API_TOKEN" -w '%{http_code} %{time_total}\n' "${args[@]}" |
        tail -n "$REQUESTS" | awk -v what="$backend $label" -v n="$REQUESTS" '
            { if ($1 != 200) errors++; ms[NR] = $2 * 1000 }
            END {
                asort(ms)
                p50 = ms[int((n + 1) / 2)]; p99 = ms[int((99 * n + 99) / 100)]
                printf "%-40s n=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n", what, n, p50, p99, ms[n], errors
            }' | tee -a "$WORK/results"
}

# bench BACKEND URL: times every URL, then prints the plans.
bench() {
    local backend=$1 url=$2 label path
    start_server "$url"
    echo "== $backend: server on :$PORT; one response:"
    curl -s -H "Authorization: Bearer $API_TOKEN" "http://127.0.0.1:$PORT/api/stats?appId=$APP_ID"
    echo
    while read -r label path; do time_url "$backend" "$label" "$path"; done < <(urls)
    stop_server
    echo "== $backend: plans"
    DATABASE_URL=$url "$EXPLAIN" hist-app-1
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; $(psql -XtAq -d postgres -c 'SHOW server_version'); history=$HISTORY requests=$REQUESTS"
for backend in $BACKENDS; do
    case $backend in
    sqlite)
        file=$WORK/history.db
        url="sqlite://$file?mode=rwc"
        DATABASE_URL=$url "$BIN" migrate >/dev/null
        t0=$(date +%s)
        preload_sqlite "$file"
        sqlite3 "$file" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
        echo "# sqlite: $(sqlite3 "$file" 'SELECT count(*) FROM deployments') deployments loaded in $(($(date +%s) - t0)) s"
        hex=$(sqlite3 "$file" "SELECT lower(hex(id)) FROM apps WHERE name = 'hist-app-1'")
        APP_ID=${hex:0:8}-${hex:8:4}-${hex:12:4}-${hex:16:4}-${hex:20:12}
        bench sqlite "$url"
        rm -f "$file"*
        ;;
    postgres)
        PGDB=dt_pages_$$
        createdb "$PGDB"
        url="postgres://$PGUSER@$PGHOST:$PGPORT/$PGDB?sslmode=$PGSSLMODE"
        DATABASE_URL=$url "$BIN" migrate >/dev/null
        t0=$(date +%s)
        preload_postgres "$PGDB"
        echo "# postgres: $(psql -XtAq -d "$PGDB" -c 'SELECT count(*) FROM deployments') deployments loaded in $(($(date +%s) - t0)) s"
        APP_ID=$(psql -XtAq -d "$PGDB" -c "SELECT id FROM apps WHERE name = 'hist-app-1'")
        bench postgres "$url"
        dropdb "$PGDB"
        PGDB=
        ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
done

echo
echo "# summary (ms, over $REQUESTS sequential requests each)"
cat "$WORK/results"
