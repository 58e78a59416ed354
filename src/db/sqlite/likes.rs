//! The `likes` table: one row per user and target, so liking twice is a
//! no-op and so is unliking twice (no row, no event).

use tokio_rusqlite::rusqlite::{params, Connection, OptionalExtension};

use super::{cached_execute, cached_row};
use crate::db::{DbResult, Target};

/// Sets or clears `user_id`'s like; returns the target's like count
/// afterwards, or `None` when the target does not exist.
pub fn set(
    conn: &Connection,
    user_id: &str,
    target: &Target,
    liked: bool,
) -> DbResult<Option<i64>> {
    match target {
        Target::Thread(thread_id) => {
            let exists: Option<i64> = cached_row(
                conn,
                "SELECT 1 FROM threads WHERE id = ?1",
                [thread_id],
                |r| r.get(0),
            )
            .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            if liked {
                cached_execute(
                    conn,
                    "INSERT OR IGNORE INTO likes (user_id, thread_id) VALUES (?1, ?2)",
                    params![user_id, thread_id],
                )?;
            } else {
                cached_execute(conn,
                    "DELETE FROM likes WHERE user_id = ?1 AND thread_id = ?2 AND comment_id IS NULL",
                    params![user_id, thread_id],
                )?;
            }
            Ok(Some(cached_row(
                conn,
                "SELECT count(*) FROM likes WHERE thread_id = ?1 AND comment_id IS NULL",
                [thread_id],
                |r| r.get(0),
            )?))
        }
        Target::Comment(comment_id) => {
            let thread_id: Option<String> = cached_row(
                conn,
                "SELECT thread_id FROM comments WHERE id = ?1",
                [comment_id],
                |r| r.get(0),
            )
            .optional()?;
            let Some(thread_id) = thread_id else {
                return Ok(None);
            };
            if liked {
                cached_execute(conn,
                    "INSERT OR IGNORE INTO likes (user_id, thread_id, comment_id) VALUES (?1, ?2, ?3)",
                    params![user_id, thread_id, comment_id],
                )?;
            } else {
                cached_execute(
                    conn,
                    "DELETE FROM likes WHERE user_id = ?1 AND comment_id = ?2",
                    params![user_id, comment_id],
                )?;
            }
            Ok(Some(cached_row(
                conn,
                "SELECT count(*) FROM likes WHERE comment_id = ?1",
                [comment_id],
                |r| r.get(0),
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::threads::{self, tests::with_users};

    fn outbox_types(conn: &Connection) -> Vec<String> {
        let mut s = conn.prepare("SELECT type FROM outbox ORDER BY id").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn liking_twice_counts_once_and_emits_one_event() {
        let conn = with_users(&["alice", "bob"]);
        threads::insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        let target = Target::Thread("t1".into());
        assert_eq!(set(&conn, "id-bob", &target, true).unwrap(), Some(1));
        assert_eq!(set(&conn, "id-bob", &target, true).unwrap(), Some(1));
        assert_eq!(set(&conn, "id-bob", &target, false).unwrap(), Some(0));
        assert_eq!(set(&conn, "id-bob", &target, false).unwrap(), Some(0));
        assert_eq!(
            outbox_types(&conn),
            ["new_thread", "thread_liked", "thread_unliked"]
        );
    }

    #[test]
    fn liking_a_missing_target_changes_nothing() {
        let conn = with_users(&["alice"]);
        assert_eq!(
            set(&conn, "id-alice", &Target::Comment("nope".into()), true).unwrap(),
            None
        );
        assert!(outbox_types(&conn).is_empty());
    }
}
