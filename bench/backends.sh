#!/usr/bin/env bash
# One stoa binary on SQLite and on PostgreSQL, interleaved, on the same
# presets: every round runs each preset on both backends (alternating which
# goes first), each on a freshly started server and a fresh database. The
# columns of the table are stoa-sqlite and stoa-postgres.
#
#   STOA_PG=postgres://postgres@127.0.0.1:55433/postgres bench/backends.sh [PRESET...]
#   (default: writes latency replay external; ROUNDS, OUT, STOA_BIN as in lib.sh;
#   FIRST_ROUND=N starts at round N, to run or redo one round at a time)
#
# replay runs over 1,000,000 events put in the outbox first (fill_outbox);
# external inserts with sqlite3 or psql into the server's database. On
# PostgreSQL each run also gets the database server's CPU over the run
# (db_cpu_s; per event written, db_cpu_us_per_event, for one-step presets),
# read from /proc, so the server must run on this machine.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PG_URL=${STOA_PG:-}
[ -n "$PG_URL" ] || { echo "set STOA_PG to a PostgreSQL server URL" >&2; exit 2; }
PG_PID=$(pg_postmaster) || { echo "cannot reach $PG_URL" >&2; exit 1; }

PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(writes latency replay external)

run_on() { # backend preset
    local backend=$1 preset=$2 extra=() cpu0= cpu1= rc
    if [ "$backend" = postgres ]; then STOA_PG=$PG_URL; else STOA_PG=; fi
    LABEL=stoa-$backend
    # shellcheck disable=SC2206 # split into flags on purpose
    local flags=(${BENCH_FLAGS:-})
    case $preset in
    replay) fill_outbox 1000000 && KEEP_DB=1 start_stoa || return 1 ;;
    external) start_stoa && extra=(--db "$STOA_DB") || return 1 ;;
    *) start_stoa || return 1 ;;
    esac
    local run=$WORK/run.jsonl
    rm -f "$run"
    [ "$backend" = postgres ] && cpu0=$(pg_cpu "$PG_PID")
    "$BENCH_BIN" "$preset" --target stoa --base "http://127.0.0.1:$STOA_PORT" \
        --pid "$STOA_PID" --out "$run" --label "$LABEL" "${extra[@]}" "${flags[@]}" >/dev/null
    rc=$?
    [ "$backend" = postgres ] && cpu1=$(pg_cpu "$PG_PID")
    stop_stoa
    [ -f "$run" ] || return "$rc"
    if [ "$backend" = postgres ]; then
        with_db_cpu "$run" "$cpu0" "$cpu1" >>"$OUT"
    else
        cat "$run" >>"$OUT"
    fi
    return "$rc"
}

for round in $(seq "${FIRST_ROUND:-1}" "$ROUNDS"); do
    for preset in "${PRESETS[@]}"; do
        if [ $((round % 2)) -eq 1 ]; then order=(sqlite postgres); else order=(postgres sqlite); fi
        for backend in "${order[@]}"; do
            log "round $round: $preset on $backend"
            run_on "$backend" "$preset" || log "run failed: $preset on $backend"
        done
    done
done
STOA_PG=$PG_URL
"$BENCH_BIN" table "$OUT"
