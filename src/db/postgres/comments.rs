//! The `comments` table, as the API's JSON (`stoa_comment_json`).

use deadpool_postgres::GenericClient;

use super::{execute, json, optional, rows};
use crate::db::{DbResult, Json, Removal};

/// Adds a comment; `None` when the thread does not exist (or is removed
/// by another node meanwhile: the thread is share-locked first).
pub async fn insert<C: GenericClient>(
    conn: &C,
    id: &str,
    thread_id: &str,
    author_id: &str,
    content: &str,
    content_html: &str,
) -> DbResult<Option<Json>> {
    let row = optional(
        conn,
        "INSERT INTO comments (id, thread_id, author_id, content, content_html)
         SELECT $1, id, $3, $4, $5 FROM threads WHERE id = $2 FOR KEY SHARE
         RETURNING stoa_comment_json(comments, NULL)::text",
        &[&id, &thread_id, &author_id, &content, &content_html],
    )
    .await?;
    row.map(|row| json(row.get(0))).transpose()
}

/// A thread's comments, oldest first, as `viewer` sees them.
pub async fn for_thread<C: GenericClient>(
    conn: &C,
    thread_id: &str,
    viewer: Option<&str>,
) -> DbResult<Vec<Json>> {
    let found = rows(
        conn,
        "SELECT stoa_comment_json(c, $2)::text FROM comments c WHERE c.thread_id = $1
         ORDER BY c.created_at, c.id",
        &[&thread_id, &viewer],
    )
    .await?;
    found.into_iter().map(|row| json(row.get(0))).collect()
}

/// Removes a comment if `user_id` wrote it.
pub async fn delete<C: GenericClient>(conn: &C, id: &str, user_id: &str) -> DbResult<Removal> {
    let author = optional(
        conn,
        "SELECT author_id FROM comments WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    Ok(match author.map(|row| row.get::<_, String>(0)) {
        None => Removal::Missing,
        Some(author) if author != user_id => Removal::NotYours,
        Some(_) => {
            execute(conn, "DELETE FROM comments WHERE id = $1", &[&id]).await?;
            Removal::Removed
        }
    })
}
