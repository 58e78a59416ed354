-- Threads are listed by latest activity, and HTML that no longer matches
-- its source is dropped; the same as SQLite's 0005_activity.sql.
--
-- last_comment_at is the newest comment's time (NULL until the first);
-- lastActivityAt in the JSON is it or the creation time. Removing a
-- comment does not move its thread back down.

ALTER TABLE threads ADD COLUMN last_comment_at timestamptz(3);
UPDATE threads t SET last_comment_at =
    (SELECT max(c.created_at) FROM comments c WHERE c.thread_id = t.id);

DROP INDEX threads_listed;
CREATE INDEX threads_listed
    ON threads (pinned DESC, (coalesce(last_comment_at, created_at)) DESC, id DESC);

CREATE FUNCTION stoa_comment_bumps_thread() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE threads SET last_comment_at = NEW.created_at
    WHERE id = NEW.thread_id
      AND (last_comment_at IS NULL OR last_comment_at < NEW.created_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER comment_bumps_thread AFTER INSERT ON comments
    FOR EACH ROW EXECUTE FUNCTION stoa_comment_bumps_thread();

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
        'pinned', t.pinned,
        'lastActivityAt', stoa_time(coalesce(t.last_comment_at, t.created_at)));
END
$$;

-- stoa's own edits set edited_at and the new HTML in the same UPDATE; one
-- from outside (psql) that changes content leaves both, and the HTML it
-- would leave behind (rendered from the old content) is dropped: the page
-- shows the new text. Either way edited_at is stamped.
CREATE OR REPLACE FUNCTION stoa_stamp_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.edited_at IS NOT DISTINCT FROM OLD.edited_at THEN
        IF NEW.content IS DISTINCT FROM OLD.content
           AND NEW.content_html IS NOT DISTINCT FROM OLD.content_html THEN
            NEW.content_html := NULL;
        END IF;
        NEW.edited_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
