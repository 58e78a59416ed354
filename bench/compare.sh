#!/usr/bin/env bash
# stoa vs Nchan, interleaved: every round runs each preset against both
# servers (alternating which goes first), each on a freshly started server.
#
#   bench/compare.sh [PRESET...]     (default: latency fanout idle pubrate writes stalled)
#   ROUNDS=3 OUT=/tmp/stoa-bench/results.jsonl STOA_BIN=... bench/compare.sh
#
# Appends JSON lines to $OUT and prints the markdown table at the end.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(latency fanout idle pubrate writes stalled)

need_nchan
build
for round in $(seq 1 "$ROUNDS"); do
    LABEL=round$round${STOA_PG:+-postgres}
    for preset in "${PRESETS[@]}"; do
        if [ $((round % 2)) -eq 1 ]; then order=(stoa nchan); else order=(nchan stoa); fi
        for target in "${order[@]}"; do
            log "round $round: $preset on $target"
            bench "$target" "$preset" || log "run failed: $preset on $target"
        done
    done
done
"$BENCH_BIN" table "$OUT"
