-- Running a community: editing, roles, moderation, bans. The same columns,
-- JSON shapes and events as SQLite's 0002_moderation.sql.
--
-- An UPDATE of a thread's title or content (or a comment's content) that
-- changes it stamps edited_at (BEFORE trigger) and appends thread_edited /
-- comment_edited (AFTER trigger), whoever ran it; an UPDATE that changes
-- nothing appends nothing. Locking, pinning and banning likewise.

ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'member'
    CHECK (role IN ('member', 'moderator', 'admin'));
-- A ban is in force while banned_at is set and banned_until is NULL (for
-- good) or still ahead.
ALTER TABLE users ADD COLUMN banned_at timestamptz(3);
ALTER TABLE users ADD COLUMN banned_until timestamptz(3);
ALTER TABLE users ADD COLUMN ban_reason text;

ALTER TABLE threads ADD COLUMN edited_at timestamptz(3);
ALTER TABLE threads ADD COLUMN locked boolean NOT NULL DEFAULT false;
ALTER TABLE threads ADD COLUMN pinned boolean NOT NULL DEFAULT false;
-- The list: pinned threads first, then newest first.
CREATE INDEX threads_listed ON threads (pinned DESC, created_at DESC, id DESC);

ALTER TABLE comments ADD COLUMN edited_at timestamptz(3);

-- Who did what to whom, and why. actor_id is NULL for the `stoa role`
-- command.
CREATE TABLE moderation_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    text COLLATE "C" REFERENCES users(id) ON DELETE SET NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text COLLATE "C" NOT NULL,
    detail      text,
    reason      text,
    created_at  timestamptz(3) NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION stoa_thread_json(t threads, viewer text) RETURNS json
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
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
        'author', (SELECT json_build_object('id', u.id, 'username', u.username)
                   FROM users u WHERE u.id = c.author_id),
        'createdAt', stoa_time(c.created_at),
        'likeCount', (SELECT count(*) FROM likes l WHERE l.comment_id = c.id),
        'likedByMe', EXISTS (SELECT 1 FROM likes l
                             WHERE l.comment_id = c.id AND l.user_id = viewer),
        'editedAt', stoa_time(c.edited_at));
END
$$;

CREATE FUNCTION stoa_stamp_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.edited_at := clock_timestamp();
    RETURN NEW;
END
$$;
CREATE TRIGGER thread_edit_stamped BEFORE UPDATE OF title, content ON threads
    FOR EACH ROW
    WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION stoa_stamp_edit();
CREATE TRIGGER comment_edit_stamped BEFORE UPDATE OF content ON comments
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION stoa_stamp_edit();

CREATE FUNCTION stoa_thread_edited() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('thread_edited', NEW.id, NULL, json_build_object(
        'threadId', NEW.id,
        'thread', stoa_thread_json(NEW, NULL)));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_edited AFTER UPDATE OF title, content ON threads
    FOR EACH ROW
    WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION stoa_thread_edited();

CREATE FUNCTION stoa_comment_edited() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('comment_edited', NEW.thread_id, NULL, json_build_object(
        'threadId', NEW.thread_id,
        'comment', stoa_comment_json(NEW, NULL)));
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_edited AFTER UPDATE OF content ON comments
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION stoa_comment_edited();

CREATE FUNCTION stoa_thread_lock_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('thread_locked', NEW.id, NULL, json_build_object(
        'threadId', NEW.id,
        'locked', NEW.locked));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_lock_changed AFTER UPDATE OF locked ON threads
    FOR EACH ROW WHEN (OLD.locked IS DISTINCT FROM NEW.locked)
    EXECUTE FUNCTION stoa_thread_lock_changed();

CREATE FUNCTION stoa_thread_pin_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stoa_append('thread_pinned', NEW.id, NULL, json_build_object(
        'threadId', NEW.id,
        'pinned', NEW.pinned));
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_pin_changed AFTER UPDATE OF pinned ON threads
    FOR EACH ROW WHEN (OLD.pinned IS DISTINCT FROM NEW.pinned)
    EXECUTE FUNCTION stoa_thread_pin_changed();

-- A ban ends the user's sessions (kept, expired, so a banned token is
-- answered "banned" rather than "sign in") and tells their open streams,
-- privately, which close on it: on every node, through the outbox.
CREATE FUNCTION stoa_user_banned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions SET expires_at = clock_timestamp()
    WHERE user_id = NEW.id AND expires_at > clock_timestamp();
    PERFORM stoa_append('banned', NULL, NEW.id, json_build_object(
        'userId', NEW.id,
        'reason', NEW.ban_reason,
        'until', stoa_time(NEW.banned_until)));
    RETURN NULL;
END
$$;
CREATE TRIGGER user_banned AFTER UPDATE OF banned_at ON users
    FOR EACH ROW
    WHEN (NEW.banned_at IS NOT NULL AND OLD.banned_at IS DISTINCT FROM NEW.banned_at)
    EXECUTE FUNCTION stoa_user_banned();
