-- The JSON builders become PL/pgSQL. As SQL functions that cannot be
-- inlined (a trigger calls them with its row), PostgreSQL plans their four
-- subqueries again on every call; PL/pgSQL keeps the plans for the life of
-- the connection. Every write calls them twice (the trigger's payload and
-- the API's answer): this halves the time a write holds the outbox
-- counter. Same arguments, same JSON.

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
                               AND l.user_id = viewer));
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
                             WHERE l.comment_id = c.id AND l.user_id = viewer));
END
$$;
