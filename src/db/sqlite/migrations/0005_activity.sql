-- Threads are listed by latest activity, as in every forum: a new comment
-- moves its thread up. last_comment_at is the newest comment's time (NULL
-- until the first); lastActivityAt in the JSON is it or the creation time.
-- Removing a comment does not move its thread back down.
--
-- And HTML that no longer matches its source is dropped: an UPDATE from
-- outside (the sqlite3 shell) that changes content leaves content_html and
-- edited_at as they were; the edit triggers then set content_html to NULL,
-- so the page shows the new text rather than the old HTML. stoa's own
-- edits set edited_at and the new HTML in the same UPDATE.

ALTER TABLE threads ADD COLUMN last_comment_at TEXT;
UPDATE threads SET last_comment_at =
    (SELECT max(c.created_at) FROM comments c WHERE c.thread_id = threads.id);

DROP INDEX threads_listed;
CREATE INDEX threads_listed
    ON threads(pinned DESC, coalesce(last_comment_at, created_at) DESC, id DESC);

CREATE TRIGGER comment_bumps_thread AFTER INSERT ON comments
BEGIN
    UPDATE threads SET last_comment_at = NEW.created_at
    WHERE id = NEW.thread_id
      AND (last_comment_at IS NULL OR last_comment_at < NEW.created_at);
END;

DROP VIEW thread_json;
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

DROP TRIGGER thread_edited;
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

DROP TRIGGER comment_edited;
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
