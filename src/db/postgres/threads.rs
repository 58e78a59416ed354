//! The `threads` table. Rows come out as the API's JSON, built by
//! `stoa_thread_json` (the first migration) with `likedByMe` for the viewer.

use deadpool_postgres::GenericClient;

use super::{execute, json, one, optional, rows};
use crate::db::{Cursor, DbResult, Json, Removal};

pub async fn insert<C: GenericClient>(
    conn: &C,
    id: &str,
    author_id: &str,
    title: &str,
    content: &str,
    content_html: &str,
) -> DbResult<Json> {
    let row = one(
        conn,
        "INSERT INTO threads (id, author_id, title, content, content_html)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING stoa_thread_json(threads, NULL)::text",
        &[&id, &author_id, &title, &content, &content_html],
    )
    .await?;
    json(row.get(0))
}

/// Up to `limit` threads, newest first, strictly after `before`; each with
/// the cursor that continues after it.
pub async fn page<C: GenericClient>(
    conn: &C,
    viewer: Option<&str>,
    limit: usize,
    before: Option<&Cursor>,
) -> DbResult<Vec<(Cursor, Json)>> {
    let (before_at, before_id) = (
        before.map(|c| c.created_at.as_str()),
        before.map(|c| c.id.as_str()),
    );
    let found = rows(
        conn,
        "SELECT stoa_time(t.created_at), t.id, stoa_thread_json(t, $1)::text FROM threads t
         WHERE $2::text IS NULL OR (t.created_at, t.id) < ($2::text::timestamptz, $3::text)
         ORDER BY t.created_at DESC, t.id DESC LIMIT $4",
        &[&viewer, &before_at, &before_id, &(limit as i64)],
    )
    .await?;
    found
        .into_iter()
        .map(|row| {
            let cursor = Cursor {
                created_at: row.get(0),
                id: row.get(1),
            };
            Ok((cursor, json(row.get(2))?))
        })
        .collect()
}

pub async fn count<C: GenericClient>(conn: &C) -> DbResult<i64> {
    Ok(one(conn, "SELECT count(*) FROM threads", &[]).await?.get(0))
}

/// One thread as `viewer` sees it.
pub async fn get<C: GenericClient>(
    conn: &C,
    id: &str,
    viewer: Option<&str>,
) -> DbResult<Option<Json>> {
    let row = optional(
        conn,
        "SELECT stoa_thread_json(t, $2)::text FROM threads t WHERE t.id = $1",
        &[&id, &viewer],
    )
    .await?;
    row.map(|row| json(row.get(0))).transpose()
}

/// Removes a thread (its comments and likes go with it) if `user_id` wrote it.
pub async fn delete<C: GenericClient>(conn: &C, id: &str, user_id: &str) -> DbResult<Removal> {
    let author = optional(
        conn,
        "SELECT author_id FROM threads WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    Ok(match author.map(|row| row.get::<_, String>(0)) {
        None => Removal::Missing,
        Some(author) if author != user_id => Removal::NotYours,
        Some(_) => {
            execute(conn, "DELETE FROM threads WHERE id = $1", &[&id]).await?;
            Removal::Removed
        }
    })
}
