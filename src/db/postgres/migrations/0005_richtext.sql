-- Rich text: each thread and comment keeps the HTML its Markdown renders
-- to beside the source, and the JSON shapes (so every event and snapshot)
-- carry it as contentHtml, as on SQLite. NULL means none was rendered, as
-- for a row written from outside (psql): the page shows it as text. The
-- HTML of the rows already stored is rendered by the migration's Rust step
-- (src/db/postgres/migrate.rs), in the same transaction.

ALTER TABLE threads ADD COLUMN content_html text;
ALTER TABLE comments ADD COLUMN content_html text;

CREATE OR REPLACE FUNCTION stoa_thread_json(t threads, viewer text) RETURNS json
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN json_build_object(
        'id', t.id,
        'title', t.title,
        'content', t.content,
        'contentHtml', t.content_html,
        'author', (SELECT json_build_object('id', u.id, 'username', u.username)
                   FROM users u WHERE u.id = t.author_id),
        'createdAt', stoa_time(t.created_at),
        'likeCount', (SELECT count(*) FROM likes l
                      WHERE l.thread_id = t.id AND l.comment_id IS NULL),
        'commentCount', (SELECT count(*) FROM comments c WHERE c.thread_id = t.id),
        'likedByMe', EXISTS (SELECT 1 FROM likes l
                             WHERE l.thread_id = t.id AND l.comment_id IS NULL
                               AND l.user_id = viewer),
        'editedAt', stoa_time(t.edited_at),
        'locked', t.locked,
        'pinned', t.pinned);
END
$$;

CREATE OR REPLACE FUNCTION stoa_comment_json(c comments, viewer text) RETURNS json
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN json_build_object(
        'id', c.id,
        'threadId', c.thread_id,
        'content', c.content,
        'contentHtml', c.content_html,
        'author', (SELECT json_build_object('id', u.id, 'username', u.username)
                   FROM users u WHERE u.id = c.author_id),
        'createdAt', stoa_time(c.created_at),
        'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
        'likedByMe', EXISTS (SELECT 1 FROM likes l
                             WHERE l.comment_id = c.id AND l.user_id = viewer),
        'editedAt', stoa_time(c.edited_at));
END
$$;

-- ---------------------------------------------------------------- search
-- Full-text search over thread titles and bodies and comment bodies: a
-- tsvector on each row, kept by triggers (so rows written from outside are
-- found, and deleted ones never are), with a GIN index. The 'simple'
-- configuration splits words as SQLite's index does, with no stemming and
-- no stop words; a title's words weigh more (A) than a body's (B).

ALTER TABLE threads ADD COLUMN search tsvector;
ALTER TABLE comments ADD COLUMN search tsvector;

CREATE FUNCTION stoa_thread_search() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := setweight(to_tsvector('simple', NEW.title), 'A')
               || setweight(to_tsvector('simple', NEW.content), 'B');
    RETURN NEW;
END
$$;
CREATE TRIGGER thread_indexed BEFORE INSERT OR UPDATE OF title, content ON threads
    FOR EACH ROW EXECUTE FUNCTION stoa_thread_search();

CREATE FUNCTION stoa_comment_search() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := setweight(to_tsvector('simple', NEW.content), 'B');
    RETURN NEW;
END
$$;
CREATE TRIGGER comment_indexed BEFORE INSERT OR UPDATE OF content ON comments
    FOR EACH ROW EXECUTE FUNCTION stoa_comment_search();

-- The posts stored before this migration.
UPDATE threads SET search = setweight(to_tsvector('simple', title), 'A')
                         || setweight(to_tsvector('simple', content), 'B');
UPDATE comments SET search = setweight(to_tsvector('simple', content), 'B');

CREATE INDEX threads_search ON threads USING gin (search);
CREATE INDEX comments_search ON comments USING gin (search);
