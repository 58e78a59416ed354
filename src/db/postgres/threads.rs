//! The `threads` table. Rows come out as the API's JSON, built by
//! `stoa_thread_json` (the first migration) with `likedByMe` for the viewer.

use deadpool_postgres::GenericClient;

use super::{execute, json, log, one, optional, rows};
use crate::db::{Actor, Cursor, DbResult, Edit, Flag, Json, Removal};

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

/// Up to `limit` threads, pinned first and then by latest activity, strictly
/// after `before`; each with the cursor that continues after it.
pub async fn page<C: GenericClient>(
    conn: &C,
    viewer: Option<&str>,
    limit: usize,
    before: Option<&Cursor>,
) -> DbResult<Vec<(Cursor, Json)>> {
    let (before_pinned, before_at, before_id) = (
        before.map(|c| c.pinned),
        before.map(|c| c.active_at.as_str()),
        before.map(|c| c.id.as_str()),
    );
    let found = rows(
        conn,
        "SELECT t.pinned, stoa_time(coalesce(t.last_comment_at, t.created_at)), t.id,
                stoa_thread_json(t, $1)::text
         FROM threads t
         WHERE $3::text IS NULL
            OR (t.pinned, coalesce(t.last_comment_at, t.created_at), t.id)
               < ($2::bool, $3::text::timestamptz, $4::text)
         ORDER BY t.pinned DESC, coalesce(t.last_comment_at, t.created_at) DESC, t.id DESC
         LIMIT $5",
        &[
            &viewer,
            &before_pinned,
            &before_at,
            &before_id,
            &(limit as i64),
        ],
    )
    .await?;
    found
        .into_iter()
        .map(|row| {
            let cursor = Cursor {
                pinned: row.get(0),
                active_at: row.get(1),
                id: row.get(2),
            };
            Ok((cursor, json(row.get(3))?))
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

/// The author and title of a thread, locked against concurrent change.
async fn locked_row<C: GenericClient>(conn: &C, id: &str) -> DbResult<Option<(String, String)>> {
    let row = optional(
        conn,
        "SELECT author_id, title FROM threads WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// Removes a thread (its comments and likes go with it) if `actor` wrote
/// it or moderates; the removal of another's thread is logged.
pub async fn delete<C: GenericClient>(conn: &C, id: &str, actor: &Actor) -> DbResult<Removal> {
    Ok(match locked_row(conn, id).await? {
        None => Removal::Missing,
        Some((author, _)) if author != actor.id && !actor.moderates => Removal::NotYours,
        Some((author, title)) => {
            if author != actor.id {
                log::write(
                    conn,
                    Some(&actor.id),
                    "delete",
                    "thread",
                    id,
                    Some(&title),
                    None,
                )
                .await?;
            }
            execute(conn, "DELETE FROM threads WHERE id = $1", &[&id]).await?;
            Removal::Removed
        }
    })
}

/// Changes the title and/or content if `actor` wrote the thread or
/// moderates. The triggers stamp `edited_at` and send `thread_edited`
/// only when something changed.
pub async fn edit<C: GenericClient>(
    conn: &C,
    id: &str,
    actor: &Actor,
    title: Option<&str>,
    content: Option<(&str, &str)>,
) -> DbResult<Edit> {
    match locked_row(conn, id).await? {
        None => return Ok(Edit::Missing),
        Some((author, _)) if author != actor.id && !actor.moderates => return Ok(Edit::NotYours),
        Some(_) => {}
    }
    execute(
        conn,
        "UPDATE threads SET title = coalesce($2, title), content = coalesce($3, content),
             content_html = coalesce($4, content_html),
             edited_at = CASE WHEN title IS DISTINCT FROM coalesce($2, title)
                                OR content IS DISTINCT FROM coalesce($3, content)
                         THEN greatest(clock_timestamp(), edited_at + interval '1 millisecond')
                         ELSE edited_at END
         WHERE id = $1",
        &[&id, &title, &content.map(|c| c.0), &content.map(|c| c.1)],
    )
    .await?;
    let thread = get(conn, id, Some(&actor.id)).await?;
    Ok(thread.map_or(Edit::Missing, Edit::Done))
}

/// Sets `flag` to `on`, logging the change; the thread afterwards as
/// `actor_id` sees it, or `None` when there is no such thread.
pub async fn set_flag<C: GenericClient>(
    conn: &C,
    id: &str,
    actor_id: &str,
    flag: Flag,
    on: bool,
) -> DbResult<Option<Json>> {
    let column = flag.column();
    let sql = if on {
        format!("UPDATE threads SET {column} = true WHERE id = $1 AND NOT {column}")
    } else {
        format!("UPDATE threads SET {column} = false WHERE id = $1 AND {column}")
    };
    if execute(conn, &sql, &[&id]).await? == 1 {
        log::write(
            conn,
            Some(actor_id),
            flag.action(on),
            "thread",
            id,
            None,
            None,
        )
        .await?;
    }
    get(conn, id, Some(actor_id)).await
}
