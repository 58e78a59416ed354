#!/usr/bin/env bash
# Search latency over a large forum of generated text: THREADS threads and
# COMMENTS comments (default 100,000 and 1,000,000) loaded from outside the
# server, the way an import or an admin's script would write them, so the
# triggers index every row; then QUERIES searches (one-word, two-word, and
# a second word being typed), one at a time per connection (CONNECTIONS,
# default 1). SQLite by default; set STOA_PG for PostgreSQL (see lib.sh).
#
#   bench/search.sh                 # results appended to $OUT
#   THREADS=10000 COMMENTS=100000 bench/search.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

THREADS=${THREADS:-100000}
COMMENTS=${COMMENTS:-1000000}
QUERIES=${QUERIES:-3000}
CONNECTIONS=${CONNECTIONS:-1}
DATA=$WORK/search-data

build
log "generating $THREADS threads and $COMMENTS comments in $DATA"
"$BENCH_BIN" search-data --threads "$THREADS" --comments "$COMMENTS" --data-dir "$DATA"

# The server makes the schema; the rows are then written from outside.
KEEP_DB=0 start_stoa && stop_stoa
started=$(date +%s)
if [ -n "${STOA_PG:-}" ]; then
    log "loading into PostgreSQL ($STOA_DB)"
    pg "$STOA_DB" <<SQL
BEGIN;
CREATE TEMP TABLE u (id text, username text);
\copy u FROM '$DATA/users.tsv'
INSERT INTO users (id, username, password_hash) SELECT id, username, 'x' FROM u;
CREATE TEMP TABLE t (id text, author_id text, title text, content text, at bigint);
\copy t FROM '$DATA/threads.tsv'
INSERT INTO threads (id, author_id, title, content, created_at)
SELECT id, author_id, title, content, to_timestamp(1700000000 + at) FROM t ORDER BY at;
CREATE TEMP TABLE c (id text, thread_id text, author_id text, content text, at bigint);
\copy c FROM '$DATA/comments.tsv'
INSERT INTO comments (id, thread_id, author_id, content, created_at)
SELECT id, thread_id, author_id, content, to_timestamp(1700000000 + at) FROM c ORDER BY at;
COMMIT;
VACUUM ANALYZE;
CHECKPOINT;
SQL
else
    log "loading into SQLite ($STOA_DB)"
    sqlite3 -bail "$STOA_DB" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
.mode tabs
CREATE TEMP TABLE u (id, username);
.import '$DATA/users.tsv' u
CREATE TEMP TABLE t (id, author_id, title, content, at INTEGER);
.import '$DATA/threads.tsv' t
CREATE TEMP TABLE c (id, thread_id, author_id, content, at INTEGER);
.import '$DATA/comments.tsv' c
BEGIN;
INSERT INTO users (id, username, password_hash) SELECT id, username, 'x' FROM u;
INSERT INTO threads (id, author_id, title, content, created_at)
SELECT id, author_id, title, content, strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + at, 'unixepoch')
FROM t ORDER BY at;
INSERT INTO comments (id, thread_id, author_id, content, created_at)
SELECT id, thread_id, author_id, content, strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + at, 'unixepoch')
FROM c ORDER BY at;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
fi
log "loaded in $(($(date +%s) - started)) s"

KEEP_DB=1 start_stoa
log "$QUERIES searches over $CONNECTIONS connection(s)"
"$BENCH_BIN" search --base "http://127.0.0.1:$STOA_PORT" --pid "$STOA_PID" \
    --queries "$QUERIES" --writers "$CONNECTIONS" --out "$OUT" --label "${LABEL:-$(backend)}"
stop_stoa
