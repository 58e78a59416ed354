//! The `likes` table: one row per user and target, so liking twice is a
//! no-op and so is unliking twice (no row, no event).

use deadpool_postgres::GenericClient;

use super::{execute, one, optional};
use crate::db::{DbResult, Target};

/// Sets or clears `user_id`'s like; returns the target's like count
/// afterwards, or `None` when the target does not exist. The target is
/// share-locked first, so a removal committing meanwhile (from another
/// node) makes this `None` rather than a broken reference.
pub async fn set<C: GenericClient>(
    conn: &C,
    user_id: &str,
    target: &Target,
    liked: bool,
) -> DbResult<Option<i64>> {
    match target {
        Target::Thread(thread_id) => {
            if optional(
                conn,
                "SELECT 1 FROM threads WHERE id = $1 FOR KEY SHARE",
                &[thread_id],
            )
            .await?
            .is_none()
            {
                return Ok(None);
            }
            if liked {
                execute(
                    conn,
                    "INSERT INTO likes (user_id, thread_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&user_id, thread_id],
                )
                .await?;
            } else {
                execute(
                    conn,
                    "DELETE FROM likes WHERE user_id = $1 AND thread_id = $2 AND comment_id IS NULL",
                    &[&user_id, thread_id],
                )
                .await?;
            }
            let count = one(
                conn,
                "SELECT count(*) FROM likes WHERE thread_id = $1 AND comment_id IS NULL",
                &[thread_id],
            )
            .await?;
            Ok(Some(count.get(0)))
        }
        Target::Comment(comment_id) => {
            let Some(row) = optional(
                conn,
                "SELECT thread_id FROM comments WHERE id = $1 FOR KEY SHARE",
                &[comment_id],
            )
            .await?
            else {
                return Ok(None);
            };
            let thread_id: String = row.get(0);
            if liked {
                execute(
                    conn,
                    "INSERT INTO likes (user_id, thread_id, comment_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&user_id, &thread_id, comment_id],
                )
                .await?;
            } else {
                execute(
                    conn,
                    "DELETE FROM likes WHERE user_id = $1 AND comment_id = $2",
                    &[&user_id, comment_id],
                )
                .await?;
            }
            let count = one(
                conn,
                "SELECT count(*) FROM likes WHERE comment_id = $1",
                &[comment_id],
            )
            .await?;
            Ok(Some(count.get(0)))
        }
    }
}
