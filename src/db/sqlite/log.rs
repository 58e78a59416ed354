//! The `moderation_log` table: who did what to whom, and why.

use tokio_rusqlite::rusqlite::{params, Connection};

use super::{cached_execute, json};
use crate::db::{DbResult, Json};

/// Records one moderation action (`actor_id` `None`: the `stoa role`
/// command).
pub fn write(
    conn: &Connection,
    actor_id: Option<&str>,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: Option<&str>,
    reason: Option<&str>,
) -> DbResult<()> {
    cached_execute(
        conn,
        "INSERT INTO moderation_log (actor_id, action, target_type, target_id, detail, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![actor_id, action, target_type, target_id, detail, reason],
    )?;
    Ok(())
}

/// Up to `limit` entries, newest first, with ids below `before`.
pub fn page(conn: &Connection, limit: usize, before: Option<i64>) -> DbResult<Vec<Json>> {
    let mut statement = conn.prepare_cached(
        "SELECT json_object(
             'id', m.id,
             'actor', json(CASE WHEN u.id IS NULL THEN NULL
                           ELSE json_object('id', u.id, 'username', u.username) END),
             'action', m.action,
             'targetType', m.target_type,
             'targetId', m.target_id,
             'detail', m.detail,
             'reason', m.reason,
             'createdAt', m.created_at)
         FROM moderation_log m LEFT JOIN users u ON u.id = m.actor_id
         WHERE ?1 IS NULL OR m.id < ?1
         ORDER BY m.id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![before, limit as i64], |row| json(row.get(0)?))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
