//! The `threads` table. Rows come out as the API's JSON, built by the
//! `thread_json` view in `schema.sql`, with `likedByMe` set for the viewer.

use tokio_rusqlite::rusqlite::{named_params, params, Connection, OptionalExtension};

use super::{cached_execute, cached_row, json};
use crate::db::{Cursor, DbResult, Json, Removal};

const LIKED_BY_VIEWER: &str = "json_set(v.json, '$.likedByMe', json(CASE WHEN EXISTS (
    SELECT 1 FROM likes l WHERE l.thread_id = v.id AND l.comment_id IS NULL AND l.user_id = :viewer
) THEN 'true' ELSE 'false' END))";

pub fn insert(
    conn: &Connection,
    id: &str,
    author_id: &str,
    title: &str,
    content: &str,
    content_html: &str,
) -> DbResult<Json> {
    cached_execute(
        conn,
        "INSERT INTO threads (id, author_id, title, content, content_html)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, author_id, title, content, content_html],
    )?;
    Ok(cached_row(
        conn,
        "SELECT json FROM thread_json WHERE id = ?1",
        [id],
        |row| json(row.get(0)?),
    )?)
}

/// Up to `limit` threads, newest first, strictly after `before`; each with
/// the cursor that continues after it.
pub fn page(
    conn: &Connection,
    viewer: Option<&str>,
    limit: usize,
    before: Option<&Cursor>,
) -> DbResult<Vec<(Cursor, Json)>> {
    let sql = format!(
        "SELECT v.created_at, v.id, {LIKED_BY_VIEWER} FROM thread_json v
         WHERE :before_at IS NULL OR (v.created_at, v.id) < (:before_at, :before_id)
         ORDER BY v.created_at DESC, v.id DESC LIMIT :limit"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        named_params! {
            ":viewer": viewer,
            ":before_at": before.map(|c| c.created_at.as_str()),
            ":before_id": before.map(|c| c.id.as_str()),
            ":limit": limit as i64,
        },
        |row| {
            let cursor = Cursor {
                created_at: row.get(0)?,
                id: row.get(1)?,
            };
            Ok((cursor, json(row.get(2)?)?))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count(conn: &Connection) -> DbResult<i64> {
    Ok(cached_row(
        conn,
        "SELECT count(*) FROM threads",
        [],
        |row| row.get(0),
    )?)
}

/// One thread as `viewer` sees it.
pub fn get(conn: &Connection, id: &str, viewer: Option<&str>) -> DbResult<Option<Json>> {
    let sql = format!("SELECT {LIKED_BY_VIEWER} FROM thread_json v WHERE v.id = :id");
    Ok(cached_row(
        conn,
        &sql,
        named_params! {":id": id, ":viewer": viewer},
        |row| json(row.get(0)?),
    )
    .optional()?)
}

/// Removes a thread (its comments and likes go with it) if `user_id` wrote it.
pub fn delete(conn: &Connection, id: &str, user_id: &str) -> DbResult<Removal> {
    let author: Option<String> = cached_row(
        conn,
        "SELECT author_id FROM threads WHERE id = ?1",
        [id],
        |row| row.get(0),
    )
    .optional()?;
    Ok(match author {
        None => Removal::Missing,
        Some(author) if author != user_id => Removal::NotYours,
        Some(_) => {
            cached_execute(conn, "DELETE FROM threads WHERE id = ?1", [id])?;
            Removal::Removed
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::db::sqlite::test_connection;
    use crate::db::sqlite::users;
    use crate::db::User;

    pub fn with_users(names: &[&str]) -> Connection {
        let conn = test_connection();
        for name in names {
            let user = User {
                id: format!("id-{name}"),
                username: name.to_string(),
            };
            users::insert(&conn, &user, "hash").unwrap();
        }
        conn
    }

    #[test]
    fn pages_run_newest_first_and_continue_where_they_stopped() {
        let conn = with_users(&["alice"]);
        for n in 0..5 {
            conn.execute(
                "INSERT INTO threads (id, author_id, title, content, created_at) VALUES (?1, 'id-alice', 't', 'c', ?2)",
                params![format!("t{n}"), format!("2026-01-01T00:00:0{n}Z")],
            )
            .unwrap();
        }
        let first = page(&conn, None, 2, None).unwrap();
        let ids: Vec<_> = first.iter().map(|(c, _)| c.id.clone()).collect();
        assert_eq!(ids, ["t4", "t3"]);
        let rest = page(&conn, None, 10, Some(&first[1].0)).unwrap();
        let ids: Vec<_> = rest.iter().map(|(c, _)| c.id.clone()).collect();
        assert_eq!(ids, ["t2", "t1", "t0"]);
    }

    #[test]
    fn only_the_author_removes_a_thread() {
        let conn = with_users(&["alice", "bob"]);
        insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        assert_eq!(delete(&conn, "t1", "id-bob").unwrap(), Removal::NotYours);
        assert_eq!(delete(&conn, "nope", "id-alice").unwrap(), Removal::Missing);
        assert_eq!(delete(&conn, "t1", "id-alice").unwrap(), Removal::Removed);
        assert!(get(&conn, "t1", None).unwrap().is_none());
    }
}
