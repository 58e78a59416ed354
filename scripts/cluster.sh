#!/usr/bin/env bash
# A local stoa cluster on loopback: a throwaway PostgreSQL, N stoa nodes
# (separate processes, each on its own port) and nginx in front with the
# shipped deploy/nginx-cluster.conf (only its ports substituted).
#
#   scripts/cluster.sh start DIR [NODES]   # default 3 nodes; prints the settings
#   scripts/cluster.sh stop DIR            # stops everything it started
#   scripts/cluster.sh kill DIR N          # kill -9 node N (1-based)
#   scripts/cluster.sh term DIR N          # SIGTERM node N and wait for it to exit
#   scripts/cluster.sh node DIR N [BIN]    # start node N again (with another binary)
#
# Ports: nginx on $CLUSTER_PORT (default 18280), node N on CLUSTER_PORT+N,
# PostgreSQL on CLUSTER_PORT+20, nginx's redirect to HTTPS on CLUSTER_PORT+30. The binary is $STOA_BIN (default
# target/debug/stoa); $STOA_NEXT_BIN, if set, is the build the rolling
# restart test upgrades the nodes to; $STOA_NODE_FLAGS are added to every
# node's flags (the benchmark raises the stream cap). `start` writes DIR/cluster.env
# (STOA_CLUSTER_* settings the cluster tests read) and prints it. Needs nginx (Debian's
# package; installed with apt when missing) and what scripts/pg-cluster.sh
# needs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${CLUSTER_PORT:-18280}
STOA_BIN=${STOA_BIN:-$ROOT/target/debug/stoa}

usage() { echo "usage: $0 start DIR [NODES] | stop DIR | kill DIR N | term DIR N | node DIR N [BIN]" >&2; exit 2; }
log() { echo "cluster: $*" >&2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

node_port() { echo $((BASE + $1)); }
pg_url() { echo "postgres://postgres@127.0.0.1:$((BASE + 20))/stoa"; }

wait_port() { # port
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "nothing listening on 127.0.0.1:$1"
    return 1
}

start_node() { # n [bin]
    local n=$1 bin=${2:-$(cat "$dir/stoa-bin")}
    # shellcheck disable=SC2086 # STOA_NODE_FLAGS is split into flags on purpose
    "$bin" --listen "127.0.0.1:$(node_port "$n")" --db "$(pg_url)" --behind-proxy \
        --write-rate 0 --sign-in-rate 0 --max-streams-per-ip 5000 --ping-interval 2s \
        ${STOA_NODE_FLAGS:-} >>"$dir/node-$n.log" 2>&1 &
    echo $! >"$dir/node-$n.pid"
    wait_port "$(node_port "$n")"
}

node_pid() { cat "$dir/node-$1.pid" 2>/dev/null || true; }

# Whether a process runs (a zombie left unreaped by whoever adopted it
# counts as gone).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit ($3 == "Z" ? 0 : 1) }' "/proc/$1/stat"; }

start() {
    local nodes=${1:-3}
    command -v nginx >/dev/null || {
        log "installing nginx with apt"
        apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >&2
    }
    [ -x "$STOA_BIN" ] || { log "no stoa binary at $STOA_BIN (cargo build first)"; exit 1; }
    echo "$STOA_BIN" >"$dir/stoa-bin"
    echo "$nodes" >"$dir/nodes"

    local server
    server=$(bash "$ROOT/scripts/pg-cluster.sh" start "$dir/pg" $((BASE + 20)) | tail -n1)
    psql -q "$server" -c "DROP DATABASE IF EXISTS stoa" -c "CREATE DATABASE stoa" >&2

    # The first node migrates the new database; the others find it ready.
    for n in $(seq 1 "$nodes"); do start_node "$n"; done

    # The shipped nginx config, with the test's ports: nodes 8081.. become
    # this cluster's, the HTTPS server block listens on $BASE in plain HTTP
    # (its certificate lines dropped: the cluster tests speak HTTP; the TLS
    # block itself is checked by scripts/nginx-check.sh), and the
    # redirecting port-80 block on BASE+30; IPv6 listens go.
    mkdir -p "$dir/nginx"
    local upstreams="" n
    for n in $(seq 1 "$nodes"); do
        upstreams+="    server 127.0.0.1:$(node_port "$n") max_fails=1 fail_timeout=2s;\n"
    done
    awk -v servers="$upstreams" -v listen="127.0.0.1:$BASE" -v redirect="127.0.0.1:$((BASE + 30))" '
        /^upstream / { first = 1 }
        /^ *server 127\.0\.0\.1:808[0-9]/ { if (first) printf "%s", servers; first = 0; next }
        /^ *listen \[::\]/ { next }
        /^ *ssl_/ { next }
        /^ *listen 80;/ { sub(/80;/, redirect ";") }
        /^ *listen 443 ssl;/ { sub(/443 ssl;/, listen ";") }
        { print }
    ' "$ROOT/deploy/nginx-cluster.conf" >"$dir/nginx/site.conf"
    cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    include $dir/nginx/site.conf;
}
CONF
    nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -t 2>&1 | grep -v 'successful\|is ok' >&2 || true
    nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf"
    wait_port "$BASE"

    local node_urls=""
    for n in $(seq 1 "$nodes"); do node_urls+="http://127.0.0.1:$(node_port "$n") "; done
    cat >"$dir/cluster.env" <<ENV
STOA_CLUSTER_DIR=$dir
STOA_CLUSTER_URL=http://127.0.0.1:$BASE
STOA_CLUSTER_NODES="${node_urls% }"
STOA_CLUSTER_DB=$(pg_url)
STOA_CLUSTER_NEXT_BIN=${STOA_NEXT_BIN:-}
ENV
    cat "$dir/cluster.env"
}

stop() {
    if [ -f "$dir/nginx/nginx.pid" ]; then
        nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -s quit 2>/dev/null || true
    fi
    local pidfile
    for pidfile in "$dir"/node-*.pid; do
        [ -f "$pidfile" ] || continue
        kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.5
    for pidfile in "$dir"/node-*.pid; do
        [ -f "$pidfile" ] || continue
        kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
    bash "$ROOT/scripts/pg-cluster.sh" stop "$dir/pg" >/dev/null 2>&1 || true
}

case $cmd in
    start) start "${3:-3}" ;;
    stop) stop ;;
    kill)
        [ $# -ge 3 ] || usage
        kill -KILL "$(node_pid "$3")"
        ;;
    term)
        [ $# -ge 3 ] || usage
        pid=$(node_pid "$3")
        kill -TERM "$pid"
        while alive "$pid"; do sleep 0.05; done
        ;;
    node)
        [ $# -ge 3 ] || usage
        # A new binary becomes the cluster's: a later restart uses it too
        # (an older one would refuse a database it migrated).
        if [ -n "${4:-}" ]; then echo "$4" >"$dir/stoa-bin"; fi
        start_node "$3"
        ;;
    *) usage ;;
esac
