//! The `threads` table. Rows come out as the API's JSON, built by the
//! `thread_json` view in `schema.sql`, with `likedByMe` set for the viewer.

use tokio_rusqlite::rusqlite::{named_params, params, Connection, OptionalExtension};

use super::{cached_execute, cached_row, json, log};
use crate::db::{Actor, Cursor, DbResult, Edit, Flag, Json, Removal};

const LIKED_BY_VIEWER: &str = "json_set(v.json, '$.likedByMe', json(CASE WHEN EXISTS (
    SELECT 1 FROM likes l WHERE l.thread_id = v.id AND l.comment_id IS NULL AND l.user_id = :viewer
) THEN 'true' ELSE 'false' END))";

/// When stoa edits a post: now, or just after the previous edit if that
/// was in this same millisecond, so edited_at always moves (the edit
/// triggers tell stoa's edits from outside ones by it).
pub(super) const EDIT_STAMP: &str = "max(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', edited_at, '+0.001 seconds'), ''))";

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

/// Up to `limit` threads, pinned first and then by latest activity, strictly
/// after `before`; each with the cursor that continues after it.
pub fn page(
    conn: &Connection,
    viewer: Option<&str>,
    limit: usize,
    before: Option<&Cursor>,
) -> DbResult<Vec<(Cursor, Json)>> {
    let sql = format!(
        "SELECT t.pinned, coalesce(t.last_comment_at, t.created_at), v.id, {LIKED_BY_VIEWER}
         FROM thread_json v JOIN threads t ON t.id = v.id
         WHERE :before_at IS NULL
            OR (t.pinned, coalesce(t.last_comment_at, t.created_at), t.id)
               < (:before_pinned, :before_at, :before_id)
         ORDER BY t.pinned DESC, coalesce(t.last_comment_at, t.created_at) DESC, t.id DESC
         LIMIT :limit"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(
        named_params! {
            ":viewer": viewer,
            ":before_pinned": before.map(|c| c.pinned),
            ":before_at": before.map(|c| c.active_at.as_str()),
            ":before_id": before.map(|c| c.id.as_str()),
            ":limit": limit as i64,
        },
        |row| {
            let cursor = Cursor {
                pinned: row.get(0)?,
                active_at: row.get(1)?,
                id: row.get(2)?,
            };
            Ok((cursor, json(row.get(3)?)?))
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

fn author_of(conn: &Connection, id: &str) -> DbResult<Option<String>> {
    Ok(cached_row(
        conn,
        "SELECT author_id FROM threads WHERE id = ?1",
        [id],
        |row| row.get(0),
    )
    .optional()?)
}

/// Removes a thread (its comments and likes go with it) if `actor` wrote
/// it or moderates; the removal of another's thread is logged.
pub fn delete(conn: &Connection, id: &str, actor: &Actor) -> DbResult<Removal> {
    Ok(match author_of(conn, id)? {
        None => Removal::Missing,
        Some(author) if author != actor.id && !actor.moderates => Removal::NotYours,
        Some(author) => {
            if author != actor.id {
                let title: String = cached_row(
                    conn,
                    "SELECT title FROM threads WHERE id = ?1",
                    [id],
                    |row| row.get(0),
                )?;
                log::write(
                    conn,
                    Some(&actor.id),
                    "delete",
                    "thread",
                    id,
                    Some(&title),
                    None,
                )?;
            }
            cached_execute(conn, "DELETE FROM threads WHERE id = ?1", [id])?;
            Removal::Removed
        }
    })
}

/// Changes the title and/or content if `actor` wrote the thread or
/// moderates. The `thread_edited` trigger stamps `edited_at` and sends the
/// event only when something changed.
pub fn edit(
    conn: &Connection,
    id: &str,
    actor: &Actor,
    title: Option<&str>,
    content: Option<(&str, &str)>,
) -> DbResult<Edit> {
    match author_of(conn, id)? {
        None => return Ok(Edit::Missing),
        Some(author) if author != actor.id && !actor.moderates => return Ok(Edit::NotYours),
        Some(_) => {}
    }
    cached_execute(
        conn,
        &format!(
            "UPDATE threads SET title = coalesce(?2, title), content = coalesce(?3, content),
                 content_html = coalesce(?4, content_html),
                 edited_at = CASE WHEN title IS NOT coalesce(?2, title)
                                    OR content IS NOT coalesce(?3, content)
                             THEN {EDIT_STAMP} ELSE edited_at END
             WHERE id = ?1"
        ),
        params![id, title, content.map(|c| c.0), content.map(|c| c.1)],
    )?;
    let thread = get(conn, id, Some(&actor.id))?;
    Ok(thread.map_or(Edit::Missing, Edit::Done))
}

/// Sets `flag` to `on`, logging the change; the thread afterwards as
/// `actor_id` sees it, or `None` when there is no such thread.
pub fn set_flag(
    conn: &Connection,
    id: &str,
    actor_id: &str,
    flag: Flag,
    on: bool,
) -> DbResult<Option<Json>> {
    let column = flag.column();
    let sql = if on {
        format!("UPDATE threads SET {column} = 1 WHERE id = ?1 AND NOT {column}")
    } else {
        format!("UPDATE threads SET {column} = 0 WHERE id = ?1 AND {column}")
    };
    if cached_execute(conn, &sql, [id])? == 1 {
        log::write(
            conn,
            Some(actor_id),
            flag.action(on),
            "thread",
            id,
            None,
            None,
        )?;
    }
    get(conn, id, Some(actor_id))
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
            let user = User::member(format!("id-{name}"), name.to_string());
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

    fn member(id: &str) -> Actor {
        Actor {
            id: id.into(),
            moderates: false,
        }
    }

    #[test]
    fn only_the_author_or_a_moderator_removes_a_thread() {
        let conn = with_users(&["alice", "bob", "mod"]);
        insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        insert(
            &conn,
            "t2",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        assert_eq!(
            delete(&conn, "t1", &member("id-bob")).unwrap(),
            Removal::NotYours
        );
        assert_eq!(
            delete(&conn, "nope", &member("id-alice")).unwrap(),
            Removal::Missing
        );
        assert_eq!(
            delete(&conn, "t1", &member("id-alice")).unwrap(),
            Removal::Removed
        );
        assert!(get(&conn, "t1", None).unwrap().is_none());
        let moderator = Actor {
            id: "id-mod".into(),
            moderates: true,
        };
        assert_eq!(delete(&conn, "t2", &moderator).unwrap(), Removal::Removed);
        let logged: (String, String, String) = conn
            .query_row(
                "SELECT actor_id, action, target_id FROM moderation_log",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(logged, ("id-mod".into(), "delete".into(), "t2".into()));
    }

    #[test]
    fn an_edit_that_changes_nothing_sends_nothing() {
        let conn = with_users(&["alice"]);
        insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        let events = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM outbox WHERE type = 'thread_edited'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        edit(&conn, "t1", &member("id-alice"), Some("title"), None).unwrap();
        assert_eq!(events(&conn), 0);
        let Edit::Done(thread) = edit(
            &conn,
            "t1",
            &member("id-alice"),
            None,
            Some(("new", "<p>new</p>")),
        )
        .unwrap() else {
            panic!("edited")
        };
        assert_eq!(events(&conn), 1);
        let thread: serde_json::Value = serde_json::from_str(thread.get()).unwrap();
        assert_eq!(thread["content"], "new");
        assert!(thread["editedAt"].is_string());
    }
}
