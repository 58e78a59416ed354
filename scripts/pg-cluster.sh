#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for stoa's tests and benchmarks.
#
#   scripts/pg-cluster.sh start DIR [PORT]   # prints the URL as its last line
#   scripts/pg-cluster.sh stop DIR
#
# Meant for a fresh Debian machine (CI) run as root: installs postgresql-15
# with apt if it is missing, and runs the server as the `postgres` user (the
# server refuses to run as root). Listens on 127.0.0.1 only, trusts local
# TCP connections (no password): never point it at anything that matters.
# fsync and synchronous_commit stay on, so durability costs are measured.
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin
RUN_AS=(runuser -u postgres --)

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
log() { echo "pg-cluster: $*" >&2; }

[ $# -ge 2 ] || usage
cmd=$1 dir=$2 port=${3:-55432}

url() { echo "postgres://postgres@127.0.0.1:$1/postgres"; }

# The port a cluster in $dir was set up with.
dir_port() { sed -n "s/^port = \([0-9]*\).*/\1/p" "$dir/postgresql.conf" | tail -n1; }

install_pg() {
    [ -x "$BIN/initdb" ] && return 0
    [ "$(id -u)" -eq 0 ] || { log "PostgreSQL 15 is missing and we are not root"; exit 1; }
    log "installing postgresql-15 with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends postgresql-15 >&2
    [ -x "$BIN/initdb" ] || { log "$BIN/initdb still missing after install"; exit 1; }
}

running() { [ -f "$dir/PG_VERSION" ] && "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; }

start() {
    install_pg
    id postgres >/dev/null 2>&1 || { log "no postgres user (the package creates it)"; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)

    if running; then
        port=$(dir_port)
        log "already running in $dir"
        url "$port"
        return 0
    fi

    # The postgres user must reach the folder: make sure every parent is
    # traversable (mktemp -d makes 0700 folders only for their owner).
    chown postgres:postgres "$dir"
    chmod 0700 "$dir"
    p=$(dirname "$dir")
    while [ "$p" != / ]; do
        if ! "${RUN_AS[@]}" test -x "$p"; then chmod o+x "$p"; fi
        p=$(dirname "$p")
    done

    if [ ! -f "$dir/PG_VERSION" ]; then
        [ -z "$(ls -A "$dir")" ] || { log "$dir is not empty and holds no cluster"; exit 1; }
        # C locale: byte order for text, and lower() folds ASCII only, like
        # SQLite's NOCASE.
        "${RUN_AS[@]}" "$BIN/initdb" -D "$dir" -U postgres -E UTF8 --locale=C \
            --auth-local=trust --auth-host=trust >&2
        cat >>"$dir/postgresql.conf" <<CONF

# --- stoa test cluster (scripts/pg-cluster.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
CONF
        cat >"$dir/pg_hba.conf" <<HBA
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
HBA
    else
        port=$(dir_port)
    fi

    log "starting on 127.0.0.1:$port (data in $dir)"
    "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >&2 \
        || { log "start failed; server.log:"; tail -n 30 "$dir/server.log" >&2 || true; exit 1; }
    for _ in $(seq 1 60); do
        if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            url "$port"
            return 0
        fi
        sleep 0.5
    done
    log "server did not become ready"; exit 1
}

stop() {
    if [ ! -f "$dir/PG_VERSION" ]; then log "no cluster in $dir"; return 0; fi
    if running; then
        "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$dir" -m fast -w stop >&2
    else
        log "not running in $dir"
    fi
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
