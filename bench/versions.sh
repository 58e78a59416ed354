#!/usr/bin/env bash
# Two (or more) stoa builds, interleaved, on the same presets: the before and
# after of an optimisation from one run. Each binary is labelled with its
# file name.
#
#   bench/versions.sh "OLD_BIN NEW_BIN" [PRESET...]
set -uo pipefail
source "$(dirname "$0")/lib.sh"

read -r -a BINS <<<"$1"
shift
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(writes pubrate latency)

for round in $(seq 1 "$ROUNDS"); do
    for preset in "${PRESETS[@]}"; do
        order=("${BINS[@]}")
        if [ $((round % 2)) -eq 0 ]; then order=($(printf '%s\n' "${BINS[@]}" | tac)); fi
        for bin in "${order[@]}"; do
            STOA_BIN=$bin
            LABEL=$(basename "$bin")
            log "round $round: $preset on $LABEL"
            bench stoa "$preset" || log "run failed: $preset on $LABEL"
        done
    done
done
