-- stoa's PostgreSQL schema, version 1: the same tables, JSON shapes and
-- change capture as the SQLite schema (schema.sql), so both backends send
-- the same events with the same payloads.
--
-- Applied once by the migration runner, inside its transaction and under
-- pg_advisory_xact_lock; it records the version in schema_migrations. No
-- BEGIN/COMMIT here.
--
-- Ids are TEXT (UUID strings made by the app) with COLLATE "C", so they sort
-- byte by byte as in SQLite whatever the database's locale (keyset paging
-- orders by (created_at, id)). Times are timestamptz(3); stoa_time() renders
-- them exactly as SQLite stores them, and is used wherever a time goes into
-- JSON.

-- ------------------------------------------------------------ functions

-- '2026-11-25T23:09:13.149Z': UTC, milliseconds, as SQLite's
-- strftime('%Y-%m-%dT%H:%M:%fZ'). IMMUTABLE is true here: the time zone is
-- fixed and the format has no locale-dependent fields.
CREATE FUNCTION stoa_time(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- ---------------------------------------------------------------- tables

CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    username      text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);
-- SQLite: UNIQUE COLLATE NOCASE. Look users up with
-- WHERE lower(username) = lower($1) so this index is used.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

-- Only a SHA-256 of the session token is stored.
CREATE TABLE sessions (
    token_hash text COLLATE "C" PRIMARY KEY,
    user_id    text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz(3) NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz(3) NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE threads (
    id         text COLLATE "C" PRIMARY KEY,
    author_id  text COLLATE "C" NOT NULL REFERENCES users(id),
    title      text NOT NULL,
    content    text NOT NULL,
    created_at timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX threads_newest ON threads (created_at DESC, id DESC);

CREATE TABLE comments (
    id         text COLLATE "C" PRIMARY KEY,
    thread_id  text COLLATE "C" NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    author_id  text COLLATE "C" NOT NULL REFERENCES users(id),
    content    text NOT NULL,
    created_at timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX comments_thread ON comments (thread_id, created_at, id);

-- One row per user and target: a thread like has comment_id NULL.
CREATE TABLE likes (
    user_id    text COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    thread_id  text COLLATE "C" NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    comment_id text COLLATE "C" REFERENCES comments(id) ON DELETE CASCADE,
    created_at timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX likes_thread_once
    ON likes (thread_id, user_id) WHERE comment_id IS NULL;
CREATE UNIQUE INDEX likes_comment_once
    ON likes (comment_id, user_id) WHERE comment_id IS NOT NULL;

-- Ids are not a sequence: a sequence hands out numbers at insert time but
-- rows become visible at commit, so a reader could see 6 before 5. Every
-- append takes the next number from outbox_counter instead (stoa_append).
-- The row lock that UPDATE takes is held until commit, so appends are
-- serialised: ids become visible in id order, and a rollback gives its
-- number back (ids are dense). `last` is also the newest id ever handed
-- out, which pruning never lowers, so an id is never reused.
CREATE TABLE outbox (
    id           bigint PRIMARY KEY,
    type         text NOT NULL,
    thread_id    text COLLATE "C",
    recipient_id text COLLATE "C",
    payload      json NOT NULL,
    created_at   timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_created ON outbox (created_at);

CREATE TABLE outbox_counter (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),  -- at most one row
    last bigint NOT NULL
);
INSERT INTO outbox_counter (last) VALUES (0);

-- ----------------------------------------------------------------- JSON
-- The JSON shapes of the API, shared by the views, the triggers and the
-- queries. json (not jsonb) keeps the key order of json_build_object.
-- `viewer` sets likedByMe; NULL gives false, as the SQLite views do.

CREATE FUNCTION stoa_thread_json(t threads, viewer text) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object(
    'id', t.id,
    'title', t.title,
    'content', t.content,
    'author', (SELECT json_build_object('id', u.id, 'username', u.username)
               FROM users u WHERE u.id = t.author_id),
    'createdAt', stoa_time(t.created_at),
    'likeCount', (SELECT count(*) FROM likes l
                  WHERE l.thread_id = t.id AND l.comment_id IS NULL),
    'commentCount', (SELECT count(*) FROM comments c WHERE c.thread_id = t.id),
    'likedByMe', EXISTS (SELECT 1 FROM likes l
                         WHERE l.thread_id = t.id AND l.comment_id IS NULL
                           AND l.user_id = viewer));

CREATE FUNCTION stoa_comment_json(c comments, viewer text) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object(
    'id', c.id,
    'threadId', c.thread_id,
    'content', c.content,
    'author', (SELECT json_build_object('id', u.id, 'username', u.username)
               FROM users u WHERE u.id = c.author_id),
    'createdAt', stoa_time(c.created_at),
    'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
    'likedByMe', EXISTS (SELECT 1 FROM likes l
                         WHERE l.comment_id = c.id AND l.user_id = viewer));

CREATE VIEW thread_json AS
SELECT t.id, t.created_at, stoa_thread_json(t, NULL) AS json
FROM threads t;

CREATE VIEW comment_json AS
SELECT c.id, c.thread_id, c.created_at, stoa_comment_json(c, NULL) AS json
FROM comments c;

-- --------------------------------------------------------------- append

-- The one way a row gets into the outbox. Returns the id it took.
-- Writers must run in READ COMMITTED (the default): under REPEATABLE READ or
-- SERIALIZABLE a second writer that waited on the counter row fails with
-- 40001 instead of taking the next number.
CREATE FUNCTION stoa_append(type text, thread_id text, recipient_id text, payload json)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_id bigint;
BEGIN
    UPDATE outbox_counter SET last = last + 1 RETURNING last INTO next_id;
    INSERT INTO outbox (id, type, thread_id, recipient_id, payload)
    VALUES (next_id, stoa_append.type, stoa_append.thread_id,
            stoa_append.recipient_id, stoa_append.payload);
    -- Delivered after commit; identical notifications of one transaction
    -- fold into one. Listeners then read by id.
    PERFORM pg_notify('stoa_outbox', '');
    RETURN next_id;
END
$$;

-- ------------------------------------------------------------- triggers
--
-- ON DELETE CASCADE runs as PostgreSQL's internal RI triggers, which are
-- AFTER ROW triggers on the parent: by the time a child row's delete
-- trigger runs, the parent row is already gone in the trigger's snapshot.
-- So the EXISTS checks below (the WHEN clauses of the SQLite triggers; a
-- PostgreSQL WHEN cannot hold a subquery) keep the children quiet during a
-- cascade, and one thread_deleted event stands for the whole removal.
-- Counts are computed here, consistent with the change. Note: AFTER ROW
-- triggers of a multi-row statement run at the end of the statement, so a
-- count there reflects the whole statement (SQLite: row by row); stoa's own
-- writes change one row per statement.

CREATE FUNCTION stoa_thread_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('new_thread', NEW.id, NULL, stoa_thread_json(NEW, NULL));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_created AFTER INSERT ON threads
    FOR EACH ROW EXECUTE FUNCTION stoa_thread_created();

CREATE FUNCTION stoa_thread_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('thread_deleted', OLD.id, NULL,
                        json_build_object('threadId', OLD.id));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_removed AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION stoa_thread_removed();

CREATE FUNCTION stoa_comment_created() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    thread_author text;
    from_user json;
BEGIN
    PERFORM stoa_append('new_comment', NEW.thread_id, NULL, json_build_object(
        'threadId', NEW.thread_id,
        'comment', stoa_comment_json(NEW, NULL),
        'commentCount', (SELECT count(*) FROM comments WHERE comments.thread_id = NEW.thread_id)));

    -- Private: tell the thread's author someone replied, unless it is them.
    SELECT t.author_id INTO thread_author FROM threads t WHERE t.id = NEW.thread_id;
    IF thread_author IS NOT NULL AND thread_author <> NEW.author_id THEN
        SELECT json_build_object('id', u.id, 'username', u.username) INTO from_user
        FROM users u WHERE u.id = NEW.author_id;
        PERFORM stoa_append('notification', NEW.thread_id, thread_author, json_build_object(
            'kind', 'reply',
            'threadId', NEW.thread_id,
            'commentId', NEW.id,
            'from', from_user));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_created AFTER INSERT ON comments
    FOR EACH ROW EXECUTE FUNCTION stoa_comment_created();

CREATE FUNCTION stoa_comment_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id) THEN
        PERFORM stoa_append('comment_deleted', OLD.thread_id, NULL, json_build_object(
            'threadId', OLD.thread_id,
            'commentId', OLD.id,
            'commentCount', (SELECT count(*) FROM comments WHERE comments.thread_id = OLD.thread_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_removed AFTER DELETE ON comments
    FOR EACH ROW EXECUTE FUNCTION stoa_comment_removed();

CREATE FUNCTION stoa_thread_like_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('thread_liked', NEW.thread_id, NULL, json_build_object(
        'threadId', NEW.thread_id,
        'userId', NEW.user_id,
        'likeCount', (SELECT count(*) FROM likes
                      WHERE likes.thread_id = NEW.thread_id AND likes.comment_id IS NULL)));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_like_added AFTER INSERT ON likes
    FOR EACH ROW WHEN (NEW.comment_id IS NULL)
    EXECUTE FUNCTION stoa_thread_like_added();

CREATE FUNCTION stoa_comment_like_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('comment_liked', NEW.thread_id, NULL, json_build_object(
        'threadId', NEW.thread_id,
        'commentId', NEW.comment_id,
        'userId', NEW.user_id,
        'likeCount', (SELECT count(*) FROM likes WHERE likes.comment_id = NEW.comment_id)));
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_like_added AFTER INSERT ON likes
    FOR EACH ROW WHEN (NEW.comment_id IS NOT NULL)
    EXECUTE FUNCTION stoa_comment_like_added();

CREATE FUNCTION stoa_thread_like_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id) THEN
        PERFORM stoa_append('thread_unliked', OLD.thread_id, NULL, json_build_object(
            'threadId', OLD.thread_id,
            'userId', OLD.user_id,
            'likeCount', (SELECT count(*) FROM likes
                          WHERE likes.thread_id = OLD.thread_id AND likes.comment_id IS NULL)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_like_removed AFTER DELETE ON likes
    FOR EACH ROW WHEN (OLD.comment_id IS NULL)
    EXECUTE FUNCTION stoa_thread_like_removed();

CREATE FUNCTION stoa_comment_like_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM comments WHERE id = OLD.comment_id)
       AND EXISTS (SELECT 1 FROM threads WHERE id = OLD.thread_id) THEN
        PERFORM stoa_append('comment_unliked', OLD.thread_id, NULL, json_build_object(
            'threadId', OLD.thread_id,
            'commentId', OLD.comment_id,
            'userId', OLD.user_id,
            'likeCount', (SELECT count(*) FROM likes WHERE likes.comment_id = OLD.comment_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_like_removed AFTER DELETE ON likes
    FOR EACH ROW WHEN (OLD.comment_id IS NOT NULL)
    EXECUTE FUNCTION stoa_comment_like_removed();
