//! The `comments` table, as the API's JSON (`stoa_comment_json`).

use deadpool_postgres::GenericClient;

use super::{execute, json, log, optional, rows};
use crate::db::{Actor, DbResult, Edit, Json, Posted, Removal};

/// Adds a comment, unless the thread is missing, or locked and the author
/// does not moderate. The thread is share-locked first, so it is neither
/// removed nor locked by another node meanwhile.
pub async fn insert<C: GenericClient>(
    conn: &C,
    id: &str,
    thread_id: &str,
    author: &Actor,
    content: &str,
    content_html: &str,
) -> DbResult<Posted> {
    let locked = optional(
        conn,
        "SELECT locked FROM threads WHERE id = $1 FOR SHARE",
        &[&thread_id],
    )
    .await?;
    match locked.map(|row| row.get::<_, bool>(0)) {
        None => return Ok(Posted::Missing),
        Some(true) if !author.moderates => return Ok(Posted::Locked),
        Some(_) => {}
    }
    let row = optional(
        conn,
        "INSERT INTO comments (id, thread_id, author_id, content, content_html)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING stoa_comment_json(comments, NULL)::text",
        &[&id, &thread_id, &author.id, &content, &content_html],
    )
    .await?;
    match row {
        Some(row) => Ok(Posted::Added(json(row.get(0))?)),
        None => Ok(Posted::Missing),
    }
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

/// The author and content of a comment, locked against concurrent change.
async fn locked_row<C: GenericClient>(conn: &C, id: &str) -> DbResult<Option<(String, String)>> {
    let row = optional(
        conn,
        "SELECT author_id, content FROM comments WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// Removes a comment if `actor` wrote it or moderates; the removal of
/// another's comment is logged.
pub async fn delete<C: GenericClient>(conn: &C, id: &str, actor: &Actor) -> DbResult<Removal> {
    Ok(match locked_row(conn, id).await? {
        None => Removal::Missing,
        Some((author, _)) if author != actor.id && !actor.moderates => Removal::NotYours,
        Some((author, content)) => {
            if author != actor.id {
                log::write(
                    conn,
                    Some(&actor.id),
                    "delete",
                    "comment",
                    id,
                    Some(&content),
                    None,
                )
                .await?;
            }
            execute(conn, "DELETE FROM comments WHERE id = $1", &[&id]).await?;
            Removal::Removed
        }
    })
}

/// Changes the content if `actor` wrote the comment or moderates; the
/// triggers send `comment_edited` only when it changed.
pub async fn edit<C: GenericClient>(
    conn: &C,
    id: &str,
    actor: &Actor,
    content: &str,
    content_html: &str,
) -> DbResult<Edit> {
    match locked_row(conn, id).await? {
        None => return Ok(Edit::Missing),
        Some((author, _)) if author != actor.id && !actor.moderates => return Ok(Edit::NotYours),
        Some(_) => {}
    }
    let row = optional(
        conn,
        "UPDATE comments SET content = $2, content_html = $4,
             edited_at = CASE WHEN content IS DISTINCT FROM $2
                         THEN greatest(clock_timestamp(), edited_at + interval '1 millisecond')
                         ELSE edited_at END
         WHERE id = $1
         RETURNING stoa_comment_json(comments, $3)::text",
        &[&id, &content, &actor.id, &content_html],
    )
    .await?;
    match row {
        Some(row) => Ok(Edit::Done(json(row.get(0))?)),
        None => Ok(Edit::Missing),
    }
}
