//! The `sessions` table: one row per signed-in browser or token, keyed by the
//! SHA-256 of the token so the table itself grants nothing.

use deadpool_postgres::GenericClient;

use super::{execute, optional};
use crate::db::{DbResult, User};

pub async fn insert<C: GenericClient>(
    conn: &C,
    token_hash: &str,
    user_id: &str,
    expires_at: &str,
) -> DbResult<()> {
    execute(
        conn,
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3::text::timestamptz)",
        &[&token_hash, &user_id, &expires_at],
    )
    .await?;
    Ok(())
}

/// The user a live (unexpired) session belongs to.
pub async fn user_for<C: GenericClient>(
    conn: &C,
    token_hash: &str,
    now: &str,
) -> DbResult<Option<User>> {
    let row = optional(
        conn,
        "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2::text::timestamptz",
        &[&token_hash, &now],
    )
    .await?;
    Ok(row.map(|row| User {
        id: row.get(0),
        username: row.get(1),
    }))
}

pub async fn delete<C: GenericClient>(conn: &C, token_hash: &str) -> DbResult<()> {
    execute(
        conn,
        "DELETE FROM sessions WHERE token_hash = $1",
        &[&token_hash],
    )
    .await?;
    Ok(())
}
