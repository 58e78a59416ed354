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
    'contentHtml', c.content_html,
    'author', json_object('id', u.id, 'username', u.username),
    'createdAt', c.created_at,
    'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
    'likedByMe', json('false'),
    'editedAt', c.edited_at
) AS json
FROM comments c JOIN users u ON u.id = c.author_id;

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

-- The posts stored before this migration, numbered oldest first (the
-- search takes the higher number of two equal matches as the newer).
INSERT INTO search_docs (thread_id, comment_id, created_at)
SELECT thread_id, comment_id, created_at FROM (
    SELECT id AS thread_id, NULL AS comment_id, created_at FROM threads
    UNION ALL
    SELECT thread_id, id, created_at FROM comments)
ORDER BY created_at, thread_id, comment_id;
INSERT INTO search_index (rowid, title, body)
SELECT d.id, t.title, t.content FROM search_docs d JOIN threads t ON t.id = d.thread_id
WHERE d.comment_id IS NULL;
INSERT INTO search_index (rowid, title, body)
SELECT d.id, '', c.content FROM search_docs d JOIN comments c ON c.id = d.comment_id;
