#!/usr/bin/env bash
# The standard set: the stoa-vs-Nchan presets (compare.sh), then the
# stoa-only ones (replay, external), ROUNDS times each; writes the markdown
# table to stdout and to $WORK/results.md. With STOA_PG set (lib.sh), stoa
# runs on PostgreSQL.
#
#   bench/run-all.sh                  (about 40 minutes on a 2-core box)
#   ROUNDS=1 bench/run-all.sh latency  (the named comparison presets only)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

rm -f "$OUT"
need_nchan
build
export SKIP_BUILD=1
bash "$BENCH_DIR/compare.sh" "$@" >/dev/null

# replay: 1,000,000 events written straight into the outbox before the
# server starts (fill_outbox, lib.sh); one client resumes from 0.
for round in $(seq 1 "$ROUNDS"); do
    LABEL=round$round${STOA_PG:+-postgres}
    log "round $round: replay on stoa ($(backend))"
    fill_outbox 1000000
    KEEP_DB=1 start_stoa
    "$BENCH_BIN" replay --target stoa --base "http://127.0.0.1:$STOA_PORT" --pid "$STOA_PID" \
        --out "$OUT" --label "$LABEL" >/dev/null || log "replay failed"
    stop_stoa

    # the clients of a restarted server coming back: 1,000 events stored,
    # 2,000 streams resume from 0 at once.
    log "round $round: 2,000 clients resume after a restart"
    fill_outbox 1000
    KEEP_DB=1 start_stoa
    "$BENCH_BIN" replay --name replay-2000-clients --streams 2000 --resume-from 0 --expect 1000 \
        --target stoa --base "http://127.0.0.1:$STOA_PORT" --pid "$STOA_PID" \
        --out "$OUT" --label "$LABEL" >/dev/null || log "replay-2000-clients failed"
    stop_stoa

    for poll in default 10ms; do
        log "round $round: external (poll $poll) on stoa"
        if [ "$poll" = default ]; then start_stoa; name=external; else start_stoa --poll-interval "$poll"; name=external-poll$poll; fi
        "$BENCH_BIN" external --target stoa --base "http://127.0.0.1:$STOA_PORT" --pid "$STOA_PID" \
            --db "$STOA_DB" --name "$name" --out "$OUT" --label "$LABEL" >/dev/null || log "external failed"
        stop_stoa
    done
done

"$BENCH_BIN" table "$OUT" | tee "$WORK/results.md"
