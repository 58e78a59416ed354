-- Running a community: editing, roles, moderation, bans.
--
-- Edits are captured like everything else: an UPDATE of a thread's title
-- or content (or a comment's content) that changes it stamps `edited_at`
-- and appends `thread_edited` / `comment_edited`, whoever ran it (the
-- server, the sqlite3 shell, a script). An UPDATE that changes nothing
-- appends nothing. Locking, pinning and banning are captured the same way.

ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
    CHECK (role IN ('member', 'moderator', 'admin'));
-- A ban is in force while banned_at is set and banned_until is NULL (for
-- good) or still ahead.
ALTER TABLE users ADD COLUMN banned_at TEXT;
ALTER TABLE users ADD COLUMN banned_until TEXT;
ALTER TABLE users ADD COLUMN ban_reason TEXT;

ALTER TABLE threads ADD COLUMN edited_at TEXT;
ALTER TABLE threads ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE threads ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
-- The list: pinned threads first, then newest first.
CREATE INDEX threads_listed ON threads(pinned DESC, created_at DESC, id DESC);

ALTER TABLE comments ADD COLUMN edited_at TEXT;

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

DROP VIEW thread_json;
CREATE VIEW thread_json AS
SELECT t.id, t.created_at, json_object(
    'id', t.id,
    'title', t.title,
    'content', t.content,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', t.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.thread_id = t.id AND l.comment_id IS NULL),
    'commentCount', (SELECT count(*) FROM comments c WHERE c.thread_id = t.id),
    'likedByMe', json('false'),
    'editedAt', t.edited_at,
    'locked', json(CASE WHEN t.locked THEN 'true' ELSE 'false' END),
    'pinned', json(CASE WHEN t.pinned THEN 'true' ELSE 'false' END)
) AS json
FROM threads t JOIN users u ON u.id = t.author_id;

DROP VIEW comment_json;
CREATE VIEW comment_json AS
SELECT c.id, c.thread_id, c.created_at, json_object(
    'id', c.id,
    'threadId', c.thread_id,
    'content', c.content,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', c.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
    'likedByMe', json('false'),
    'editedAt', c.edited_at
) AS json
FROM comments c JOIN users u ON u.id = c.author_id;

-- The inner UPDATE sets only edited_at, which no UPDATE OF trigger here
-- watches, so it fires nothing.
CREATE TRIGGER thread_edited AFTER UPDATE OF title, content ON threads
WHEN OLD.title IS NOT NEW.title OR OLD.content IS NOT NEW.content
BEGIN
    UPDATE threads SET edited_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
    INSERT INTO outbox (type, thread_id, payload)
    SELECT 'thread_edited', NEW.id, json_object('threadId', NEW.id, 'thread', json(json))
    FROM thread_json WHERE id = NEW.id;
END;

CREATE TRIGGER comment_edited AFTER UPDATE OF content ON comments
WHEN OLD.content IS NOT NEW.content
BEGIN
    UPDATE comments SET edited_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
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
