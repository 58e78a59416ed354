//! The `moderation_log` table: who did what to whom, and why.

use deadpool_postgres::GenericClient;

use super::{execute, json, rows};
use crate::db::{DbResult, Json};

/// Records one moderation action (`actor_id` `None`: the `stoa role`
/// command).
pub async fn write<C: GenericClient>(
    conn: &C,
    actor_id: Option<&str>,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: Option<&str>,
    reason: Option<&str>,
) -> DbResult<()> {
    execute(
        conn,
        "INSERT INTO moderation_log (actor_id, action, target_type, target_id, detail, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &actor_id,
            &action,
            &target_type,
            &target_id,
            &detail,
            &reason,
        ],
    )
    .await?;
    Ok(())
}

/// Up to `limit` entries, newest first, with ids below `before`.
pub async fn page<C: GenericClient>(
    conn: &C,
    limit: usize,
    before: Option<i64>,
) -> DbResult<Vec<Json>> {
    let found = rows(
        conn,
        "SELECT json_build_object(
             'id', m.id,
             'actor', CASE WHEN u.id IS NULL THEN NULL
                      ELSE json_build_object('id', u.id, 'username', u.username) END,
             'action', m.action,
             'targetType', m.target_type,
             'targetId', m.target_id,
             'detail', m.detail,
             'reason', m.reason,
             'createdAt', stoa_time(m.created_at))::text
         FROM moderation_log m LEFT JOIN users u ON u.id = m.actor_id
         WHERE $1::bigint IS NULL OR m.id < $1
         ORDER BY m.id DESC LIMIT $2",
        &[&before, &(limit as i64)],
    )
    .await?;
    found.into_iter().map(|row| json(row.get(0))).collect()
}
