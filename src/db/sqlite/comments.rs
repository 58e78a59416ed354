//! The `comments` table, as the API's JSON (the `comment_json` view).

use tokio_rusqlite::rusqlite::{named_params, params, Connection, OptionalExtension};

use super::threads::EDIT_STAMP;
use super::{cached_execute, cached_row, json, log};
use crate::db::{Actor, DbResult, Edit, Json, Posted, Removal};

const LIKED_BY_VIEWER: &str = "json_set(v.json, '$.likedByMe', json(CASE WHEN EXISTS (
    SELECT 1 FROM likes l WHERE l.comment_id = v.id AND l.user_id = :viewer
) THEN 'true' ELSE 'false' END))";

/// Adds a comment, unless the thread is missing, or locked and the author
/// does not moderate.
pub fn insert(
    conn: &Connection,
    id: &str,
    thread_id: &str,
    author: &Actor,
    content: &str,
    content_html: &str,
) -> DbResult<Posted> {
    let locked: Option<bool> = cached_row(
        conn,
        "SELECT locked FROM threads WHERE id = ?1",
        [thread_id],
        |row| row.get(0),
    )
    .optional()?;
    match locked {
        None => return Ok(Posted::Missing),
        Some(true) if !author.moderates => return Ok(Posted::Locked),
        Some(_) => {}
    }
    cached_execute(
        conn,
        "INSERT INTO comments (id, thread_id, author_id, content, content_html)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, thread_id, author.id, content, content_html],
    )?;
    Ok(Posted::Added(cached_row(
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

fn author_of(conn: &Connection, id: &str) -> DbResult<Option<String>> {
    Ok(cached_row(
        conn,
        "SELECT author_id FROM comments WHERE id = ?1",
        [id],
        |row| row.get(0),
    )
    .optional()?)
}

/// Removes a comment if `actor` wrote it or moderates; the removal of
/// another's comment is logged.
pub fn delete(conn: &Connection, id: &str, actor: &Actor) -> DbResult<Removal> {
    Ok(match author_of(conn, id)? {
        None => Removal::Missing,
        Some(author) if author != actor.id && !actor.moderates => Removal::NotYours,
        Some(author) => {
            if author != actor.id {
                let content: String = cached_row(
                    conn,
                    "SELECT content FROM comments WHERE id = ?1",
                    [id],
                    |row| row.get(0),
                )?;
                log::write(
                    conn,
                    Some(&actor.id),
                    "delete",
                    "comment",
                    id,
                    Some(&content),
                    None,
                )?;
            }
            cached_execute(conn, "DELETE FROM comments WHERE id = ?1", [id])?;
            Removal::Removed
        }
    })
}

/// Changes the content if `actor` wrote the comment or moderates; the
/// `comment_edited` trigger sends the event only when it changed.
pub fn edit(
    conn: &Connection,
    id: &str,
    actor: &Actor,
    content: &str,
    content_html: &str,
) -> DbResult<Edit> {
    match author_of(conn, id)? {
        None => return Ok(Edit::Missing),
        Some(author) if author != actor.id && !actor.moderates => return Ok(Edit::NotYours),
        Some(_) => {}
    }
    cached_execute(
        conn,
        &format!(
            "UPDATE comments SET content = ?2, content_html = ?3,
                 edited_at = CASE WHEN content IS NOT ?2 THEN {EDIT_STAMP} ELSE edited_at END
             WHERE id = ?1"
        ),
        params![id, content, content_html],
    )?;
    let sql = format!("SELECT {LIKED_BY_VIEWER} FROM comment_json v WHERE v.id = :id");
    let comment = cached_row(
        conn,
        &sql,
        named_params! {":id": id, ":viewer": actor.id},
        |row| json(row.get(0)?),
    )
    .optional()?;
    Ok(comment.map_or(Edit::Missing, Edit::Done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::threads::{self, tests::with_users};

    #[test]
    fn a_comment_on_a_missing_thread_is_not_stored() {
        let conn = with_users(&["alice"]);
        let alice = Actor {
            id: "id-alice".into(),
            moderates: false,
        };
        assert!(matches!(
            insert(&conn, "c1", "nope", &alice, "hi", "<p>hi</p>").unwrap(),
            Posted::Missing
        ));
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
