-- Rich text: each thread and comment keeps the HTML its Markdown renders
-- to beside the source, and the JSON shapes (so every event and snapshot)
-- carry it as contentHtml. NULL means none was rendered, as for a row
-- written from outside (the sqlite3 shell): the page shows it as text.
-- The HTML of the rows already stored is rendered by the migration's Rust
-- step (src/db/sqlite/migrate.rs), in the same transaction.

ALTER TABLE threads ADD COLUMN content_html TEXT;
ALTER TABLE comments ADD COLUMN content_html TEXT;

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
    'likedByMe', json('false')
) AS json
FROM threads t JOIN users u ON u.id = t.author_id;

DROP VIEW comment_json;
CREATE VIEW comment_json AS
SELECT c.id, c.thread_id, c.created_at, json_object(
    'id', c.id,
    'threadId', c.thread_id,
    'content', c.content,
    'contentHtml', c.content_html,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', c.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
    'likedByMe', json('false')
) AS json
FROM comments c JOIN users u ON u.id = c.author_id;
