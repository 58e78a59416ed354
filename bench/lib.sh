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

# start_stoa [extra stoa flags]: a fresh database unless KEEP_DB=1.
start_stoa() {
    STOA_DB=$WORK/stoa.db
    if [ "${KEEP_DB:-0}" != 1 ]; then rm -f "$STOA_DB" "$STOA_DB-wal" "$STOA_DB-shm"; fi
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
