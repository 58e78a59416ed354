//! The `users` table.

use deadpool_postgres::GenericClient;

use super::{execute, optional, rows};
use crate::db::{DbResult, User};

/// Adds a user; a taken username (in any letter case) is a `Conflict`.
pub async fn insert<C: GenericClient>(conn: &C, user: &User, password_hash: &str) -> DbResult<()> {
    execute(
        conn,
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)",
        &[&user.id, &user.username, &password_hash],
    )
    .await?;
    Ok(())
}

/// The user and their password hash, for signing in.
pub async fn by_username<C: GenericClient>(
    conn: &C,
    username: &str,
) -> DbResult<Option<(User, String)>> {
    let row = optional(
        conn,
        "SELECT id, username, password_hash FROM users WHERE lower(username) = lower($1)",
        &[&username],
    )
    .await?;
    Ok(row.map(|row| {
        (
            User {
                id: row.get(0),
                username: row.get(1),
            },
            row.get(2),
        )
    }))
}

/// Of `names`, those that are users, as each registered (names match in
/// any letter case).
pub async fn registered<C: GenericClient>(conn: &C, names: &[String]) -> DbResult<Vec<String>> {
    let lowered: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let found = rows(
        conn,
        "SELECT username FROM users WHERE lower(username) = ANY($1)",
        &[&lowered],
    )
    .await?;
    Ok(found.into_iter().map(|row| row.get(0)).collect())
}
