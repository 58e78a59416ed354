# Shared by compare.sh and run-all.sh: start and stop the servers under test.
# Everything listens on 127.0.0.1 only.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
STOA_BIN=${STOA_BIN:-$ROOT/target/release/stoa}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/stoa-bench}
WORK=${WORK:-/tmp/stoa-bench}
STOA_PORT=${STOA_PORT:-18080}
NCHAN_PORT=8090 # as in nchan/nginx.conf
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$WORK/results.jsonl}
mkdir -p "$WORK"

# 20,000 descriptors for the server and for the load tool.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log() { echo "== $*" >&2; }

wait_port() { # port
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on 127.0.0.1:$1" >&2
    return 1
}

# STOA_PG: a PostgreSQL server's URL, ending in a database name
# (postgres://postgres@127.0.0.1:55433/postgres). When it is set, stoa runs
# on a database of its own there, $PG_DB, instead of $WORK/stoa.db.
PG_DB=${PG_DB:-stoa_bench}

backend() { if [ -n "${STOA_PG:-}" ]; then echo postgres; else echo sqlite; fi; }

pg() { # url [psql args]: psql quietly, stopping at the first error
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# start_stoa [extra stoa flags]: a fresh database unless KEEP_DB=1 (on
# PostgreSQL: $PG_DB dropped and created again). Sets STOA_DB, the file or
# URL given to --db.
start_stoa() {
    if [ -n "${STOA_PG:-}" ]; then
        STOA_DB=${STOA_PG%/*}/$PG_DB
        if [ "${KEEP_DB:-0}" != 1 ]; then
            pg "$STOA_PG" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
                -c "CREATE DATABASE $PG_DB" >/dev/null || return 1
        fi
    else
        STOA_DB=$WORK/stoa.db
        if [ "${KEEP_DB:-0}" != 1 ]; then rm -f "$STOA_DB" "$STOA_DB-wal" "$STOA_DB-shm"; fi
    fi
    local extra=()
    # A per-user write limit, where the server has one, would throttle the
    # writers: turn it off for the benchmark.
    if "$STOA_BIN" --help 2>/dev/null | grep -q -- '--write-rate'; then extra+=(--write-rate 0 --sign-in-rate 0); fi
    "$STOA_BIN" --listen "127.0.0.1:$STOA_PORT" --db "$STOA_DB" \
        --max-streams 25000 --max-streams-per-ip 25000 --log-level warn \
        "${extra[@]}" "$@" >>"$WORK/stoa.log" 2>&1 &
    STOA_PID=$!
    wait_port "$STOA_PORT"
}

stop_stoa() {
    if [ -n "${STOA_PID:-}" ]; then
        kill -TERM "$STOA_PID" 2>/dev/null
        wait "$STOA_PID" 2>/dev/null
        STOA_PID=
    fi
}

need_nchan() {
    if [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || ! command -v nginx >/dev/null; then
        log "installing nginx and libnginx-mod-nchan"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y nginx libnginx-mod-nchan
    fi
    # The Debian package starts a system nginx on port 80; it is not ours
    # to stop, and it does not use our port.
}

start_nchan() {
    local prefix=$WORK/nchan
    rm -rf "$prefix" && mkdir -p "$prefix/tmp"
    nginx -p "$prefix/" -c "$BENCH_DIR/nchan/nginx.conf" -g 'daemon off;' >>"$WORK/nchan.log" 2>&1 &
    NCHAN_PID=$!
    wait_port "$NCHAN_PORT"
    sleep 0.2
    NCHAN_PIDS=$(echo "$NCHAN_PID" $(pgrep -P "$NCHAN_PID") | tr ' ' ',')
}

stop_nchan() {
    if [ -n "${NCHAN_PID:-}" ]; then
        kill -QUIT "$NCHAN_PID" 2>/dev/null
        wait "$NCHAN_PID" 2>/dev/null
        NCHAN_PID=
    fi
}

# fill_outbox ROWS: a fresh database whose outbox holds ROWS new_thread
# events (markers 0..ROWS-1, ids 1..ROWS) for the replay preset, written
# straight into the outbox while no server runs. The server makes the
# database first (its migrations build the schema).
fill_outbox() {
    KEEP_DB=0 start_stoa && stop_stoa || return 1
    if [ -n "${STOA_PG:-}" ]; then
        # Ids come from outbox_counter (stoa_append), so it is set to the
        # last one. VACUUM and CHECKPOINT settle the new rows (hint bits,
        # visibility map, dirty pages on disk) before the server starts, as
        # the sqlite3 shell checkpoints its WAL when it closes the file.
        pg "$STOA_DB" -c "BEGIN;
          INSERT INTO outbox (id, type, thread_id, payload)
          SELECT x + 1, 'new_thread', 'replay-thread', json_build_object(
              'id', 'replay-' || x, 'title', 'bench ' || x,
              'content', '#B' || x || ':0# ' || repeat('0', 200),
              'author', json_build_object('id', 'replay-user', 'username', 'replay'),
              'likeCount', 0, 'commentCount', 0, 'likedByMe', false)
          FROM generate_series(0, $1 - 1) AS x;
          UPDATE outbox_counter SET last = $1;
          COMMIT;" -c "VACUUM (FREEZE, ANALYZE) outbox" -c "CHECKPOINT" >/dev/null
    else
        sqlite3 "$STOA_DB" "PRAGMA journal_mode=WAL;
          WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < $1 - 1)
          INSERT INTO outbox (type, thread_id, payload)
          SELECT 'new_thread', 'replay-thread', json_object(
              'id', 'replay-' || x, 'title', 'bench ' || x,
              'content', '#B' || x || ':0# ' || substr(hex(zeroblob(100)), 1, 200),
              'author', json_object('id', 'replay-user', 'username', 'replay'),
              'likeCount', 0, 'commentCount', 0, 'likedByMe', json('false'))
          FROM s;" >/dev/null
    fi
}

# pg_postmaster: the process id of STOA_PG's server (this machine only).
pg_postmaster() {
    local data
    data=$(psql -X -At "$STOA_PG" -c "SHOW data_directory") && head -n1 "$data/postmaster.pid"
}

# pg_cpu POSTMASTER_PID: CPU seconds (user + system) of that PostgreSQL
# server so far: the postmaster, its live children, and the children it has
# reaped (cutime + cstime), so a backend that exits between two readings is
# still counted once.
pg_cpu() {
    {
        sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'
        for child in $(pgrep -P "$1"); do
            sed 's/^.*) //' "/proc/$child/stat" 2>/dev/null | awk '{ print $12 + $13 }'
        done
    } | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.3f\n", s / hz }'
}

# with_db_cpu RUN.jsonl CPU_BEFORE CPU_AFTER [JSON]: RUN's lines with the
# database's CPU over the run (db_cpu_s), per event written when the run
# had one step (db_cpu_us_per_event), and JSON's fields added.
with_db_cpu() {
    jq -c -s --argjson cpu "$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", b - a }')" \
        --argjson extra "${4:-{\}}" '
        (length == 1) as $one | .[] | . + {db_cpu_s: $cpu} + $extra
        + (if $one and (.published // 0) > 0
           then {db_cpu_us_per_event: ($cpu * 1e8 / .published | round / 100)}
           else {} end)' "$1"
}

cleanup() { stop_stoa; stop_nchan; }
trap cleanup EXIT

# bench TARGET PRESET [more stoa-bench flags]: one run against a fresh server.
# BENCH_FLAGS (e.g. "--writers 16") are added to every run.
bench() {
    local target=$1 preset=$2
    shift 2
    # shellcheck disable=SC2206 # split into flags on purpose
    local flags=(${BENCH_FLAGS:-})
    set -- "$@" "${flags[@]}"
    case $target in
    stoa)
        start_stoa
        "$BENCH_BIN" "$preset" --target stoa --base "http://127.0.0.1:$STOA_PORT" \
            --pid "$STOA_PID" --out "$OUT" --label "$LABEL" "$@" >/dev/null
        stop_stoa
        ;;
    nchan)
        start_nchan
        "$BENCH_BIN" "$preset" --target nchan --base "http://127.0.0.1:$NCHAN_PORT" \
            --pid "$NCHAN_PIDS" --out "$OUT" --label "$LABEL" "$@" >/dev/null
        stop_nchan
        ;;
    esac
}

build() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        (cd "$ROOT" && cargo build --release && cargo build --release -p stoa-bench)
    fi
}
