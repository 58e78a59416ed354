#!/usr/bin/env bash
# stoa on 3 nodes against stoa on 1 node, on the same PostgreSQL, from one
# run: scripts/cluster.sh starts PostgreSQL and the nodes (nginx too, which
# the benchmark does not use: streams and writes go to the nodes' own
# ports, so that each stream's node is known). Every round runs, in
# alternating order:
#
#   latency  1,000 streams on each of 3 nodes (3,000 on the single node),
#            10 events/s from 4 writers, all writes through node 1;
#   cpu      5,000 streams on each of 3 nodes (15,000 on the single node),
#            2 events/s, 60 events: CPU per delivery summed over the
#            nodes that ran.
#
# The rates keep deliveries near 30,000/s: the load tool shares the two
# cores with the nodes and PostgreSQL, and past that it is the tool and
# the scheduler that are measured, not the cost of a delivery.
#
# For the single-node runs nodes 2 and 3 are stopped (SIGTERM) and started
# again afterwards. Each run also records PostgreSQL's CPU (db_cpu_s, and
# db_cpu_us_per_event). Results go to $OUT; labels are stoa-1-node and
# stoa-3-nodes.
#
#   bench/cluster.sh [PRESET...]   (latency cpu by default; ROUNDS, OUT,
#                                  STOA_BIN as in lib.sh; CLUSTER_PORT)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

export CLUSTER_PORT=${CLUSTER_PORT:-18380}
export STOA_BIN
export STOA_NODE_FLAGS="--max-streams 25000 --log-level warn"
DIR=$WORK/cluster
node_url() { echo "http://127.0.0.1:$((CLUSTER_PORT + $1))"; }
node_pid() { cat "$DIR/node-$1.pid"; }

bash "$ROOT/scripts/cluster.sh" stop "$DIR" >/dev/null 2>&1
rm -rf "$DIR"
bash "$ROOT/scripts/cluster.sh" start "$DIR" 3 >/dev/null || exit 1
trap 'bash "$ROOT/scripts/cluster.sh" stop "$DIR" >/dev/null 2>&1' EXIT
STOA_PG="postgres://postgres@127.0.0.1:$((CLUSTER_PORT + 20))/stoa"
PG_PID=$(pg_postmaster) || exit 1

run_on() { # nodes preset
    local nodes=$1 preset=$2 urls=() pids=() args=() n cpu0 cpu1 run=$WORK/run.jsonl
    if [ "$nodes" = 1 ]; then
        bash "$ROOT/scripts/cluster.sh" term "$DIR" 2
        bash "$ROOT/scripts/cluster.sh" term "$DIR" 3
    fi
    for n in $(seq 1 "$nodes"); do
        urls+=(--stream-url "$(node_url "$n")/api/community/events")
        pids+=("$(node_pid "$n")")
    done
    case $preset in
    latency) args=(latency --streams 3000 --steps 10:300) ;;
    cpu) args=(custom --name cpu --streams 15000 --steps 2:60 --writers 4) ;;
    esac
    rm -f "$run"
    cpu0=$(pg_cpu "$PG_PID")
    "$BENCH_BIN" "${args[@]}" --target stoa --base "$(node_url 1)" "${urls[@]}" \
        --pid "$(IFS=,; echo "${pids[*]}")" --out "$run" --label "stoa-$nodes-node$([ "$nodes" = 1 ] || echo s)" >/dev/null
    cpu1=$(pg_cpu "$PG_PID")
    if [ "$nodes" = 1 ]; then
        bash "$ROOT/scripts/cluster.sh" node "$DIR" 2
        bash "$ROOT/scripts/cluster.sh" node "$DIR" 3
    fi
    [ -f "$run" ] || return 1
    with_db_cpu "$run" "$cpu0" "$cpu1" "{\"nodes\": $nodes}" >>"$OUT"
}

PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(latency cpu)
for round in $(seq 1 "$ROUNDS"); do
    for preset in "${PRESETS[@]}"; do
        if [ $((round % 2)) -eq 1 ]; then order=(3 1); else order=(1 3); fi
        for nodes in "${order[@]}"; do
            log "round $round: $preset on $nodes node(s)"
            run_on "$nodes" "$preset" || log "run failed: $preset on $nodes node(s)"
        done
    done
done
"$BENCH_BIN" table "$OUT"
