//! The `sessions` table: one row per signed-in browser or token, keyed by the
//! SHA-256 of the token so the table itself grants nothing.

use deadpool_postgres::GenericClient;

use super::{execute, optional, users};
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

/// The user a live (unexpired) session belongs to; also the user of an
/// ended one while a ban is in force on them (a ban ends every session),
/// so they can be told they are banned.
pub async fn user_for<C: GenericClient>(
    conn: &C,
    token_hash: &str,
    now: &str,
) -> DbResult<Option<User>> {
    let row = optional(
        conn,
        &format!(
            "SELECT {}, s.expires_at > $2::text::timestamptz
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1",
            users::COLUMNS
        ),
        &[&token_hash, &now],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let user = users::from_row(&row, 0)?;
    let live: bool = row.get(6);
    Ok((live || user.ban.is_some()).then_some(user))
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
