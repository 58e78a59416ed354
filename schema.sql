-- stoa's SQLite schema, whole: every table, index, view and trigger as the
-- migrations in src/db/sqlite/migrations/ leave them (a test keeps the two
-- equal). It is for reading; a database is built and upgraded by the
-- migrations, applied in order at start and recorded in PRAGMA user_version.
--
-- Every change a client must hear about is captured by a trigger that
-- appends one row to `outbox` in the same transaction as the change. The
-- payload is built here, in SQL, and is exactly the `data` the event stream
-- sends, so a row written by any process (the server, the sqlite3 shell, a
-- script) produces its event.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    role          TEXT NOT NULL DEFAULT 'member'
                  CHECK (role IN ('member', 'moderator', 'admin')),
    -- A ban is in force while banned_at is set and banned_until is NULL
    -- (for good) or still ahead.
    banned_at     TEXT,
    banned_until  TEXT,
    ban_reason    TEXT
);

-- Only a SHA-256 of the session token is stored: a leaked database file
-- does not hand out live sessions.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE threads (
    id         TEXT PRIMARY KEY,
    author_id  TEXT NOT NULL REFERENCES users(id),
    title      TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    edited_at  TEXT,
    locked     INTEGER NOT NULL DEFAULT 0,
    pinned     INTEGER NOT NULL DEFAULT 0,
    -- The HTML the Markdown in content renders to; NULL for a row written
    -- from outside, which is shown as text.
    content_html TEXT,
    -- The newest comment's time, NULL until the first.
    last_comment_at TEXT
);
CREATE INDEX threads_newest ON threads(created_at DESC, id DESC);
-- The list: pinned threads first, then by latest activity (lastActivityAt).
CREATE INDEX threads_listed
    ON threads(pinned DESC, coalesce(last_comment_at, created_at) DESC, id DESC);

CREATE TABLE comments (
    id         TEXT PRIMARY KEY,
    thread_id  TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    author_id  TEXT NOT NULL REFERENCES users(id),
    content    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    edited_at  TEXT,
    content_html TEXT
);
CREATE INDEX comments_thread ON comments(thread_id, created_at, id);

-- One row per user and target: a thread like has comment_id NULL.
CREATE TABLE likes (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    thread_id  TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    comment_id TEXT REFERENCES comments(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX likes_thread_once
    ON likes(thread_id, user_id) WHERE comment_id IS NULL;
CREATE UNIQUE INDEX likes_comment_once
    ON likes(comment_id, user_id) WHERE comment_id IS NOT NULL;

-- AUTOINCREMENT: ids are never reused, even after old rows are pruned, so a
-- client's Last-Event-ID can never point at a different event.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT NOT NULL,
    thread_id    TEXT,
    recipient_id TEXT,
    payload      TEXT NOT NULL CHECK (json_valid(payload)),
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX outbox_created ON outbox(created_at);

-- Who did what to whom, and why: every moderation action. actor_id is NULL
-- for the `stoa role` command (run by whoever runs the server).
CREATE TABLE moderation_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id    TEXT REFERENCES users(id) ON DELETE SET NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    detail      TEXT,
    reason      TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Positions that must resync: a restore from a backup made at outbox id
-- `after`, onto a database that had handed out ids up to `through`, moves
-- the id sequence past `through` and records the range here. A client
-- holding a position in (after, through] saw events the restore took
-- away, so it reloads its snapshot instead of resuming; no id is ever
-- handed out twice.
CREATE TABLE outbox_gaps (
    after       INTEGER NOT NULL,
    through     INTEGER NOT NULL,
    restored_at TEXT NOT NULL,
    CHECK (through > after)
);

-- ---------------------------------------------------------------- views
-- The JSON shapes of the API, shared by the triggers and the queries.

CREATE VIEW thread_json AS
SELECT t.id, t.created_at, json_object(
    'id', t.id,
    'title', t.title,
    'content', t.content,
    'contentHtml', t.content_html,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', t.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.thread_id = t.id AND l.comment_id IS NULL),
    'commentCount', (SELECT count(*) FROM comments c WHERE c.thread_id = t.id),
    'likedByMe', json('false'),
    'editedAt', t.edited_at,
    'locked', json(CASE WHEN t.locked THEN 'true' ELSE 'false' END),
    'pinned', json(CASE WHEN t.pinned THEN 'true' ELSE 'false' END),
    'lastActivityAt', coalesce(t.last_comment_at, t.created_at)
) AS json
FROM threads t JOIN users u ON u.id = t.author_id;

CREATE VIEW comment_json AS
SELECT c.id, c.thread_id, c.created_at, json_object(
    'id', c.id,
    'threadId', c.thread_id,
    'content', c.content,
    'contentHtml', c.content_html,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', c.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
    'likedByMe', json('false'),
    'editedAt', c.edited_at
) AS json
FROM comments c JOIN users u ON u.id = c.author_id;

-- ------------------------------------------------------------- triggers

CREATE TRIGGER thread_created AFTER INSERT ON threads
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    SELECT 'new_thread', NEW.id, json FROM thread_json WHERE id = NEW.id;
END;

-- A deleted thread takes its comments and likes with it (ON DELETE CASCADE);
-- the child triggers below stay quiet then, so one thread_deleted event
-- stands for the whole removal.
CREATE TRIGGER thread_removed AFTER DELETE ON threads
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('thread_deleted', OLD.id, json_object('threadId', OLD.id));
END;

CREATE TRIGGER comment_created AFTER INSERT ON comments
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    SELECT 'new_comment', NEW.thread_id, json_object(
        'threadId', NEW.thread_id,
        'comment', json(json),
        'commentCount', (SELECT count(*) FROM comments WHERE thread_id = NEW.thread_id))
    FROM comment_json WHERE id = NEW.id;

    -- Private: tell the thread's author someone replied, unless it is them.
    INSERT INTO outbox (type, thread_id, recipient_id, payload)
    SELECT 'notification', t.id, t.author_id, json_object(
        'kind', 'reply',
        'threadId', t.id,
        'commentId', NEW.id,
        'from', json_object('id', u.id, 'username', u.username))
    FROM threads t JOIN users u ON u.id = NEW.author_id
    WHERE t.id = NEW.thread_id AND t.author_id <> NEW.author_id;
END;

CREATE TRIGGER comment_bumps_thread AFTER INSERT ON comments
BEGIN
    UPDATE threads SET last_comment_at = NEW.created_at
    WHERE id = NEW.thread_id
      AND (last_comment_at IS NULL OR last_comment_at < NEW.created_at);
END;

CREATE TRIGGER comment_removed AFTER DELETE ON comments
WHEN EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id)
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('comment_deleted', OLD.thread_id, json_object(
        'threadId', OLD.thread_id,
        'commentId', OLD.id,
        'commentCount', (SELECT count(*) FROM comments WHERE thread_id = OLD.thread_id)));
END;

CREATE TRIGGER thread_like_added AFTER INSERT ON likes
WHEN NEW.comment_id IS NULL
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('thread_liked', NEW.thread_id, json_object(
        'threadId', NEW.thread_id,
        'userId', NEW.user_id,
        'likeCount', (SELECT count(*) FROM likes WHERE thread_id = NEW.thread_id AND comment_id IS NULL)));
END;

CREATE TRIGGER comment_like_added AFTER INSERT ON likes
WHEN NEW.comment_id IS NOT NULL
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('comment_liked', NEW.thread_id, json_object(
        'threadId', NEW.thread_id,
        'commentId', NEW.comment_id,
        'userId', NEW.user_id,
        'likeCount', (SELECT count(*) FROM likes WHERE comment_id = NEW.comment_id)));
END;

CREATE TRIGGER thread_like_removed AFTER DELETE ON likes
WHEN OLD.comment_id IS NULL
 AND EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id)
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('thread_unliked', OLD.thread_id, json_object(
        'threadId', OLD.thread_id,
        'userId', OLD.user_id,
        'likeCount', (SELECT count(*) FROM likes WHERE thread_id = OLD.thread_id AND comment_id IS NULL)));
END;

CREATE TRIGGER comment_like_removed AFTER DELETE ON likes
WHEN OLD.comment_id IS NOT NULL
 AND EXISTS (SELECT 1 FROM comments WHERE id = OLD.comment_id)
 AND EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id)
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('comment_unliked', OLD.thread_id, json_object(
        'threadId', OLD.thread_id,
        'commentId', OLD.comment_id,
        'userId', OLD.user_id,
        'likeCount', (SELECT count(*) FROM likes WHERE comment_id = OLD.comment_id)));
END;

-- The inner UPDATE sets only edited_at, which no UPDATE OF trigger here
-- watches, so it fires nothing.
-- stoa's own edits set edited_at and the new HTML in the same UPDATE; one
-- from outside that changes content leaves both, and the HTML it would
-- leave behind (rendered from the old content) is dropped: shown as text.
CREATE TRIGGER thread_edited AFTER UPDATE OF title, content ON threads
WHEN OLD.title IS NOT NEW.title OR OLD.content IS NOT NEW.content
BEGIN
    UPDATE threads SET
        content_html = CASE
            WHEN OLD.content IS NOT NEW.content AND OLD.content_html IS NEW.content_html
             AND OLD.edited_at IS NEW.edited_at THEN NULL
            ELSE content_html END,
        edited_at = CASE
            WHEN OLD.edited_at IS NEW.edited_at THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
            ELSE edited_at END
    WHERE id = NEW.id;
    INSERT INTO outbox (type, thread_id, payload)
    SELECT 'thread_edited', NEW.id, json_object('threadId', NEW.id, 'thread', json(json))
    FROM thread_json WHERE id = NEW.id;
END;

CREATE TRIGGER comment_edited AFTER UPDATE OF content ON comments
WHEN OLD.content IS NOT NEW.content
BEGIN
    UPDATE comments SET
        content_html = CASE
            WHEN OLD.content_html IS NEW.content_html AND OLD.edited_at IS NEW.edited_at THEN NULL
            ELSE content_html END,
        edited_at = CASE
            WHEN OLD.edited_at IS NEW.edited_at THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
            ELSE edited_at END
    WHERE id = NEW.id;
    INSERT INTO outbox (type, thread_id, payload)
    SELECT 'comment_edited', NEW.thread_id, json_object('threadId', NEW.thread_id, 'comment', json(json))
    FROM comment_json WHERE id = NEW.id;
END;

CREATE TRIGGER thread_lock_changed AFTER UPDATE OF locked ON threads
WHEN OLD.locked IS NOT NEW.locked
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('thread_locked', NEW.id, json_object(
        'threadId', NEW.id,
        'locked', json(CASE WHEN NEW.locked THEN 'true' ELSE 'false' END)));
END;

CREATE TRIGGER thread_pin_changed AFTER UPDATE OF pinned ON threads
WHEN OLD.pinned IS NOT NEW.pinned
BEGIN
    INSERT INTO outbox (type, thread_id, payload)
    VALUES ('thread_pinned', NEW.id, json_object(
        'threadId', NEW.id,
        'pinned', json(CASE WHEN NEW.pinned THEN 'true' ELSE 'false' END)));
END;

-- A ban ends the user's sessions (they stay in the table, expired, so a
-- banned token is answered "banned" rather than "sign in") and tells
-- their open streams, privately, which close on it.
CREATE TRIGGER user_banned AFTER UPDATE OF banned_at ON users
WHEN NEW.banned_at IS NOT NULL AND OLD.banned_at IS NOT NEW.banned_at
BEGIN
    UPDATE sessions SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE user_id = NEW.id AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now');
    INSERT INTO outbox (type, recipient_id, payload)
    VALUES ('banned', NEW.id, json_object(
        'userId', NEW.id,
        'reason', NEW.ban_reason,
        'until', NEW.banned_until));
END;

-- ---------------------------------------------------------------- search
-- Full-text search over thread titles and bodies and comment bodies, kept
-- by triggers (so rows written from outside are found, and deleted ones
-- never are). search_docs says what each row of the FTS5 index is: the
-- thread itself (comment_id NULL) or one of its comments.

CREATE TABLE search_docs (
    id         INTEGER PRIMARY KEY,
    thread_id  TEXT NOT NULL,
    comment_id TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE INDEX search_docs_thread ON search_docs(thread_id);

-- Words are letters and digits (unicode61, accents folded); title matches
-- weigh twice a body's (see the rank below). Prefix indexes make the last
-- word's prefix match, typed as the results appear, cheap.
CREATE VIRTUAL TABLE search_index USING fts5(
    title, body,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
INSERT INTO search_index (search_index, rank) VALUES ('rank', 'bm25(2.0, 1.0)');

CREATE TRIGGER thread_indexed AFTER INSERT ON threads
BEGIN
    INSERT INTO search_docs (thread_id, comment_id, created_at) VALUES (NEW.id, NULL, NEW.created_at);
    INSERT INTO search_index (rowid, title, body) VALUES (last_insert_rowid(), NEW.title, NEW.content);
END;

CREATE TRIGGER thread_reindexed AFTER UPDATE OF title, content ON threads
BEGIN
    UPDATE search_index SET title = NEW.title, body = NEW.content
    WHERE rowid = (SELECT id FROM search_docs WHERE thread_id = NEW.id AND comment_id IS NULL);
END;

CREATE TRIGGER thread_unindexed AFTER DELETE ON threads
BEGIN
    DELETE FROM search_index WHERE rowid IN (SELECT id FROM search_docs WHERE thread_id = OLD.id);
    DELETE FROM search_docs WHERE thread_id = OLD.id;
END;

CREATE TRIGGER comment_indexed AFTER INSERT ON comments
BEGIN
    INSERT INTO search_docs (thread_id, comment_id, created_at) VALUES (NEW.thread_id, NEW.id, NEW.created_at);
    INSERT INTO search_index (rowid, title, body) VALUES (last_insert_rowid(), '', NEW.content);
END;

CREATE TRIGGER comment_reindexed AFTER UPDATE OF content ON comments
BEGIN
    UPDATE search_index SET body = NEW.content
    WHERE rowid = (SELECT id FROM search_docs WHERE comment_id = NEW.id);
END;

CREATE TRIGGER comment_unindexed AFTER DELETE ON comments
BEGIN
    DELETE FROM search_index WHERE rowid = (SELECT id FROM search_docs WHERE comment_id = OLD.id);
    DELETE FROM search_docs WHERE comment_id = OLD.id;
END;
