#!/usr/bin/env bash
# Checks the PostgreSQL schema (src/db/postgres/migrations/*.sql, in order)
# against the SQLite one (schema.sql): the same operations, with the same
# ids and texts, must leave the same outbox (type, thread_id, recipient_id,
# payload; ids too) and the same JSON shapes. Then forces the interleaving
# of two writers on PostgreSQL: ids must become visible in id order and be
# dense (a rollback gives its number back), and NOTIFY folds into one per
# transaction.
#
#   scripts/pg-schema-check.sh            # needs root (or a PostgreSQL 15
#                                         # install), sqlite3, psql, python3
# PG_CHECK_PORT picks the port of the throwaway cluster (default 55439).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIGRATIONS=$ROOT/src/db/postgres/migrations
SQLITE_SCHEMA=$ROOT/schema.sql
PORT=${PG_CHECK_PORT:-55439}

for tool in sqlite3 python3; do
    command -v "$tool" >/dev/null || { echo "pg-schema-check: $tool is missing" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/stoa-pg-check.XXXXXX)
CLUSTER=$WORK/cluster
cleanup() {
    local rc=$?
    # End our session A (if still open) before stopping the server.
    if [ -n "${A_PID:-}" ]; then kill "$A_PID" 2>/dev/null || true; fi
    if [ -n "${B_PID:-}" ]; then kill "$B_PID" 2>/dev/null || true; fi
    "$ROOT/scripts/pg-cluster.sh" stop "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

BASE_URL=$("$ROOT/scripts/pg-cluster.sh" start "$CLUSTER" "$PORT" | tail -n1)
command -v psql >/dev/null || fail "psql is missing"
psql "$BASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE stoa_check"
URL=${BASE_URL%/postgres}/stoa_check
PSQL=(psql "$URL" -qAtX -v ON_ERROR_STOP=1)

# --------------------------------------------------------------- schemas
for migration in "$MIGRATIONS"/*.sql; do
    "${PSQL[@]}" --single-transaction -f "$migration"
    ok "$(basename "$migration") applied in one transaction"
done

DB=$WORK/stoa.sqlite
sqlite3 -bail "$DB" < "$SQLITE_SCHEMA"
SQLITE=(sqlite3 -bail -cmd "PRAGMA foreign_keys = ON" "$DB")
ok "schema.sql applied to a fresh SQLite file"

# Runs the same SQL on both.
both() { printf '%s\n' "$1" | "${PSQL[@]}" >/dev/null; printf '%s\n' "$1" | "${SQLITE[@]}" >/dev/null; }

# ------------------------------------------------------------ operations
A=u-alice B=u-bob T=t-0001 C1=c-0001 C2=c-0002 T2=t-0002 C3=c-0003
both "
INSERT INTO users (id, username, password_hash) VALUES ('$A', 'Alice', 'h1');
INSERT INTO users (id, username, password_hash) VALUES ('$B', 'bob', 'h2');
INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ('tok1', '$A', '2030-01-01T00:00:00.000Z');
INSERT INTO threads (id, author_id, title, content)
    VALUES ('$T', '$A', 'First \"thread\"', 'Hello, wörld — ünïcode ☃ and a \\ backslash');
INSERT INTO comments (id, thread_id, author_id, content) VALUES ('$C1', '$T', '$A', 'my own reply');
INSERT INTO comments (id, thread_id, author_id, content) VALUES ('$C2', '$T', '$B', 'bob replies');
INSERT INTO likes (user_id, thread_id) VALUES ('$B', '$T');
INSERT INTO likes (user_id, thread_id) VALUES ('$A', '$T');
INSERT INTO likes (user_id, thread_id) VALUES ('$B', '$T') ON CONFLICT DO NOTHING;
INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('$A', '$T', '$C2');
INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('$B', '$T', '$C2');
INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('$B', '$T', '$C1');
INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('$B', '$T', '$C1') ON CONFLICT DO NOTHING;
DELETE FROM likes WHERE user_id = '$B' AND thread_id = '$T' AND comment_id IS NULL;
DELETE FROM likes WHERE user_id = '$A' AND comment_id = '$C2';
INSERT INTO threads (id, author_id, title, content) VALUES ('$T2', '$B', 'Second', 'by bob');
INSERT INTO comments (id, thread_id, author_id, content) VALUES ('$C3', '$T2', '$A', 'alice on bob''s');
INSERT INTO likes (user_id, thread_id) VALUES ('$A', '$T2');
"
ok "phase 1 (users, threads, comments, likes, unlikes) on both"

# Edits, locks, pins and a ban from outside; the no-op UPDATEs send nothing.
both "
UPDATE threads SET title = 'First, edited' WHERE id = '$T';
UPDATE threads SET content = content WHERE id = '$T';
UPDATE comments SET content = 'bob edits' WHERE id = '$C2';
UPDATE comments SET content = 'bob edits' WHERE id = '$C2';
UPDATE threads SET locked = TRUE WHERE id = '$T2';
UPDATE threads SET pinned = TRUE WHERE id = '$T2';
UPDATE threads SET pinned = TRUE WHERE id = '$T2';
UPDATE users SET banned_at = '2026-01-01T00:00:00.000Z', ban_reason = 'spam' WHERE id = '$B';
"
ok "phase 1b (edits, no-op edits, lock, pin, ban) on both"

# A taken username, in another letter case, is refused by both.
if printf "INSERT INTO users (id, username, password_hash) VALUES ('u-x', 'ALICE', 'h');" \
    | "${PSQL[@]}" 2>/dev/null; then fail "PostgreSQL accepted username ALICE next to Alice"; fi
if printf "INSERT INTO users (id, username, password_hash) VALUES ('u-x', 'ALICE', 'h');" \
    | "${SQLITE[@]}" 2>/dev/null; then fail "SQLite accepted username ALICE next to Alice"; fi
ok "usernames unique whatever their case (both)"

# JSON shapes as the API reads them, for each viewer: SQLite's json_set
# queries (src/db/sqlite/threads.rs, comments.rs) against the PostgreSQL
# functions.
snapshot() {  # $1 = output prefix
    for viewer in "$A" "$B" ""; do
        if [ -n "$viewer" ]; then pv="'$viewer'"; else pv=NULL; fi
        "${SQLITE[@]}" "SELECT json_set(v.json, '\$.likedByMe', json(CASE WHEN EXISTS (
              SELECT 1 FROM likes l WHERE l.thread_id = v.id AND l.comment_id IS NULL AND l.user_id = $pv
            ) THEN 'true' ELSE 'false' END)) FROM thread_json v ORDER BY v.created_at DESC, v.id DESC;
            SELECT json_set(v.json, '\$.likedByMe', json(CASE WHEN EXISTS (
              SELECT 1 FROM likes l WHERE l.comment_id = v.id AND l.user_id = $pv
            ) THEN 'true' ELSE 'false' END)) FROM comment_json v ORDER BY v.thread_id, v.created_at, v.id;
            SELECT json FROM thread_json ORDER BY id; SELECT json FROM comment_json ORDER BY id;" \
            >>"$1.sqlite.jsonl"
        "${PSQL[@]}" -c "SELECT stoa_thread_json(t, $pv) FROM threads t ORDER BY t.created_at DESC, t.id DESC" \
            -c "SELECT stoa_comment_json(c, $pv) FROM comments c ORDER BY c.thread_id, c.created_at, c.id" \
            -c "SELECT json FROM thread_json ORDER BY id" -c "SELECT json FROM comment_json ORDER BY id" \
            >>"$1.pg.jsonl"
    done
}
snapshot "$WORK/views"

both "
DELETE FROM comments WHERE id = '$C1';
DELETE FROM threads WHERE id = '$T';
"
ok "phase 2 (delete a liked comment, delete a thread with comments and likes) on both"

# ---------------------------------------------------------- the outboxes
"${SQLITE[@]}" "SELECT json_object('id', id, 'type', type, 'thread_id', thread_id,
        'recipient_id', recipient_id, 'payload', json(payload), 'created_at', created_at)
    FROM outbox ORDER BY id" >"$WORK/outbox.sqlite.jsonl"
"${PSQL[@]}" -c "SELECT json_build_object('id', id, 'type', type, 'thread_id', thread_id,
        'recipient_id', recipient_id, 'payload', payload, 'created_at', stoa_time(created_at))
    FROM outbox ORDER BY id" >"$WORK/outbox.pg.jsonl"

python3 - "$WORK" <<'PY'
import json, re, sys
work = sys.argv[1]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
problems = []

def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

def blank(v, where):
    """Blank every time (createdAt, created_at, lastActivityAt) after checking its format;
    return the value as nested (key, value) lists so key order counts."""
    if isinstance(v, dict):
        out = []
        for k, x in v.items():
            if k in ("createdAt", "created_at", "lastActivityAt") or (k == "editedAt" and x is not None):
                if not (isinstance(x, str) and TIME.match(x)):
                    problems.append(f"{where}: {k} {x!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ")
                x = "<time>"
            out.append((k, blank(x, where)))
        return ("{}", out)
    if isinstance(v, list):
        return ("[]", [blank(x, where) for x in v])
    # bool is an int in Python: keep the JSON type apart.
    return (type(v).__name__, v)

def compare(name):
    s = load(f"{work}/{name}.sqlite.jsonl")
    p = load(f"{work}/{name}.pg.jsonl")
    if len(s) != len(p):
        problems.append(f"{name}: SQLite has {len(s)} rows, PostgreSQL {len(p)}")
    for i, (a, b) in enumerate(zip(s, p)):
        if blank(a, f"{name} sqlite row {i}") != blank(b, f"{name} pg row {i}"):
            problems.append(f"{name} row {i} differs:\n  sqlite: {json.dumps(a, ensure_ascii=False)}\n  pg:     {json.dumps(b, ensure_ascii=False)}")
    return s, p

s, p = compare("outbox")
for label, rows in (("SQLite", s), ("PostgreSQL", p)):
    print(f"--- {label} outbox (id, type, thread_id, recipient_id, payload)")
    for r in rows:
        print(f"{r['id']}\t{r['type']}\t{r['thread_id']}\t{r['recipient_id']}\t"
              f"{json.dumps(r['payload'], ensure_ascii=False, separators=(',', ':'))}")
compare("views")
types = [r["type"] for r in p]
if types.count("thread_deleted") != 1 or types[-1] != "thread_deleted":
    problems.append("the thread delete must give exactly one event, thread_deleted, last")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ok: outboxes equal ({len(p)} events, key order and JSON types included); views equal")
PY

# ------------------------------------------------------- the interleaving
# Session A is a psql in the background, fed through a FIFO, that keeps its
# transaction open between our commands; `\echo` markers tell us when a
# command has finished.
mkfifo "$WORK/a.in" "$WORK/a.out"
PGAPPNAME=stoa_check_a psql "$URL" -qAtX -v ON_ERROR_STOP=0 <"$WORK/a.in" >"$WORK/a.out" 2>&1 &
A_PID=$!
exec 7>"$WORK/a.in" 8<"$WORK/a.out"
a() {  # run SQL in session A, print its output
    printf '%s\n\\echo __done__\n' "$1" >&7
    local line
    while IFS= read -r -t 30 line <&8; do
        [ "$line" = __done__ ] && return 0
        printf '%s\n' "$line"
    done
    fail "session A did not answer"
}
q() { "${PSQL[@]}" -c "$1"; }

# B: a thread insert in its own session, in the background.
start_b() {  # $1 = thread id
    PGAPPNAME=stoa_check_b "${PSQL[@]}" \
        -c "INSERT INTO threads (id, author_id, title, content) VALUES ('$1', '$B', 'B', 'b')" &
    B_PID=$!
}
wait_blocked() {  # until session B waits on a lock held by session A
    local blockers
    for _ in $(seq 1 100); do
        blockers=$(q "SELECT count(*) FROM pg_stat_activity b, pg_stat_activity a
                      WHERE b.application_name = 'stoa_check_b' AND a.application_name = 'stoa_check_a'
                        AND a.pid = ANY (pg_blocking_pids(b.pid))")
        [ "$blockers" = 1 ] && return 0
        kill -0 "$B_PID" 2>/dev/null || fail "session B finished instead of blocking"
        sleep 0.1
    done
    fail "session B never blocked on session A"
}
id_of() { q "SELECT id FROM outbox WHERE type = 'new_thread' AND thread_id = '$1'"; }

last=$(q "SELECT last FROM outbox_counter")
[ "$last" = "$(q 'SELECT max(id) FROM outbox')" ] || fail "outbox_counter.last is not the newest id"

# Commit: A takes n, B waits, then takes n + 1.
a "BEGIN; INSERT INTO threads (id, author_id, title, content) VALUES ('t-a1', '$A', 'A', 'a');" >/dev/null
start_b t-b1
wait_blocked
seen=$(q "SELECT count(*) FROM outbox WHERE id > $last")
[ "$seen" = 0 ] || fail "a reader saw $seen uncommitted outbox rows"
ok "B blocks on A (pg_blocking_pids), a reader sees neither"
a "COMMIT;" >/dev/null
wait "$B_PID" || fail "session B failed"; B_PID=
ida=$(id_of t-a1) idb=$(id_of t-b1)
[ "$ida" = $((last + 1)) ] && [ "$idb" = $((last + 2)) ] \
    || fail "after A commits: A=$ida B=$idb, want $((last + 1)) and $((last + 2))"
ok "A commits first: A=$ida, B=$idb"

# Rollback: A takes n, B waits, A rolls back, B takes n (dense).
last=$(q "SELECT last FROM outbox_counter")
inside=$(a "BEGIN; INSERT INTO threads (id, author_id, title, content) VALUES ('t-a2', '$A', 'A', 'a'); SELECT last FROM outbox_counter;")
[ "$inside" = $((last + 1)) ] || fail "inside A the counter is $inside, want $((last + 1))"
start_b t-b2
wait_blocked
a "ROLLBACK;" >/dev/null
wait "$B_PID" || fail "session B failed"; B_PID=
idb=$(id_of t-b2)
[ "$idb" = $((last + 1)) ] || fail "after A rolls back: B=$idb, want $((last + 1))"
[ -z "$(id_of t-a2)" ] || fail "A's rolled back event is visible"
ok "A rolls back: B takes A's number, $idb"
[ "$(q 'SELECT count(*) = max(id) AND min(id) = 1 FROM outbox')" = t ] || fail "outbox ids have a gap"
[ "$(q 'SELECT last FROM outbox_counter')" = "$(q 'SELECT max(id) FROM outbox')" ] \
    || fail "outbox_counter.last is not the newest id"
ok "outbox ids dense: 1..$(q 'SELECT max(id) FROM outbox')"

# NOTIFY: A listens; one transaction with several appends (a reply makes
# new_comment and notification; two likes) must wake it once, after commit.
a "LISTEN stoa_outbox;" >/dev/null
"${PSQL[@]}" -c "BEGIN" \
    -c "INSERT INTO comments (id, thread_id, author_id, content) VALUES ('c-n1', 't-a1', '$B', 'x')" \
    -c "INSERT INTO likes (user_id, thread_id) VALUES ('$B', 't-a1')" \
    -c "INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('$A', 't-a1', 'c-n1')" \
    -c "COMMIT"
sleep 0.2
got=$(a "SELECT 1;" | grep -c 'notification "stoa_outbox"' || true)
[ "$got" = 1 ] || fail "one transaction of 4 appends gave $got notifications, want 1"
"${PSQL[@]}" -c "BEGIN" -c "INSERT INTO likes (user_id, thread_id) VALUES ('$A', 't-b1')" -c "ROLLBACK"
sleep 0.2
got=$(a "SELECT 1;" | grep -c 'notification "stoa_outbox"' || true)
[ "$got" = 0 ] || fail "a rolled back append notified ($got)"
ok "NOTIFY: one per committed transaction (4 appends), none on rollback"

echo "PASS: PostgreSQL schema matches SQLite; appends serialised, ids dense"
