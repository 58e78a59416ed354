//! The `comments` table, as the API's JSON (the `comment_json` view).

use tokio_rusqlite::rusqlite::{named_params, params, Connection, OptionalExtension};

use super::{cached_execute, cached_row, json};
use crate::db::{DbResult, Json, Removal};

const LIKED_BY_VIEWER: &str = "json_set(v.json, '$.likedByMe', json(CASE WHEN EXISTS (
    SELECT 1 FROM likes l WHERE l.comment_id = v.id AND l.user_id = :viewer
) THEN 'true' ELSE 'false' END))";

/// Adds a comment; `None` when the thread does not exist.
pub fn insert(
    conn: &Connection,
    id: &str,
    thread_id: &str,
    author_id: &str,
    content: &str,
    content_html: &str,
) -> DbResult<Option<Json>> {
    let inserted = cached_execute(
        conn,
        "INSERT INTO comments (id, thread_id, author_id, content, content_html)
         SELECT ?1, id, ?3, ?4, ?5 FROM threads WHERE id = ?2",
        params![id, thread_id, author_id, content, content_html],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(cached_row(
        conn,
        "SELECT json FROM comment_json WHERE id = ?1",
        [id],
        |row| json(row.get(0)?),
    )?))
}

/// A thread's comments, oldest first, as `viewer` sees them.
pub fn for_thread(conn: &Connection, thread_id: &str, viewer: Option<&str>) -> DbResult<Vec<Json>> {
    let sql = format!(
        "SELECT {LIKED_BY_VIEWER} FROM comment_json v WHERE v.thread_id = :thread
         ORDER BY v.created_at, v.id"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        named_params! {":thread": thread_id, ":viewer": viewer},
        |row| json(row.get(0)?),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One comment as `viewer` sees it.
pub fn get(conn: &Connection, id: &str, viewer: Option<&str>) -> DbResult<Option<Json>> {
    let sql = format!("SELECT {LIKED_BY_VIEWER} FROM comment_json v WHERE v.id = :id");
    Ok(cached_row(
        conn,
        &sql,
        named_params! {":id": id, ":viewer": viewer},
        |row| json(row.get(0)?),
    )
    .optional()?)
}

/// Removes a comment if `user_id` wrote it.
pub fn delete(conn: &Connection, id: &str, user_id: &str) -> DbResult<Removal> {
    let author: Option<String> = cached_row(
        conn,
        "SELECT author_id FROM comments WHERE id = ?1",
        [id],
        |row| row.get(0),
    )
    .optional()?;
    Ok(match author {
        None => Removal::Missing,
        Some(author) if author != user_id => Removal::NotYours,
        Some(_) => {
            cached_execute(conn, "DELETE FROM comments WHERE id = ?1", [id])?;
            Removal::Removed
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::threads::{self, tests::with_users};

    #[test]
    fn a_comment_on_a_missing_thread_is_not_stored() {
        let conn = with_users(&["alice"]);
        assert!(insert(&conn, "c1", "nope", "id-alice", "hi", "<p>hi</p>")
            .unwrap()
            .is_none());
        let count: i64 = conn
            .query_row("SELECT count(*) FROM comments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn comments_list_oldest_first() {
        let conn = with_users(&["alice"]);
        threads::insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        for (id, at) in [
            ("c2", "2026-01-01T00:00:02Z"),
            ("c1", "2026-01-01T00:00:01Z"),
        ] {
            conn.execute(
                "INSERT INTO comments (id, thread_id, author_id, content, created_at) VALUES (?1, 't1', 'id-alice', 'x', ?2)",
                params![id, at],
            )
            .unwrap();
        }
        let listed = for_thread(&conn, "t1", None).unwrap();
        assert!(listed[0].get().contains("\"c1\""));
        assert!(listed[1].get().contains("\"c2\""));
    }
}
