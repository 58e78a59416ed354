//! The `users` table: accounts, their roles and bans.

use deadpool_postgres::GenericClient;

use super::{execute, log, optional, rows};
use crate::db::{Ban, Banning, DbError, DbResult, Role, RoleChange, User};

/// The columns [`from_row`] reads, of `users u`: a ban counts while it is
/// in force.
pub const COLUMNS: &str = "u.id, u.username, u.role,
    u.banned_at IS NOT NULL AND (u.banned_until IS NULL OR u.banned_until > clock_timestamp()),
    u.ban_reason, stoa_time(u.banned_until)";

/// A user from [`COLUMNS`], starting at column `at`.
pub fn from_row(row: &tokio_postgres::Row, at: usize) -> DbResult<User> {
    let role: String = row.get(at + 2);
    let banned: bool = row.get(at + 3);
    Ok(User {
        id: row.get(at),
        username: row.get(at + 1),
        role: role.parse().map_err(DbError::Other)?,
        ban: banned.then(|| Ban {
            reason: row.get(at + 4),
            until: row.get(at + 5),
        }),
    })
}

/// Adds a user; a taken username (in any letter case) is a `Conflict`.
pub async fn insert<C: GenericClient>(conn: &C, user: &User, password_hash: &str) -> DbResult<()> {
    execute(
        conn,
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4)",
        &[
            &user.id,
            &user.username,
            &password_hash,
            &user.role.as_str(),
        ],
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
        &format!(
            "SELECT {COLUMNS}, u.password_hash FROM users u WHERE lower(u.username) = lower($1)"
        ),
        &[&username],
    )
    .await?;
    row.map(|row| Ok((from_row(&row, 0)?, row.get(6))))
        .transpose()
}

async fn by_id<C: GenericClient>(conn: &C, id: &str) -> DbResult<Option<User>> {
    let row = optional(
        conn,
        &format!("SELECT {COLUMNS} FROM users u WHERE u.id = $1"),
        &[&id],
    )
    .await?;
    row.map(|row| from_row(&row, 0)).transpose()
}

/// Sets a user's role, logged with no actor (the `stoa role` command).
pub async fn set_role<C: GenericClient>(
    conn: &C,
    username: &str,
    role: Role,
) -> DbResult<Option<RoleChange>> {
    let Some((before, _)) = by_username(conn, username).await? else {
        return Ok(None);
    };
    if before.role != role {
        execute(
            conn,
            "UPDATE users SET role = $2 WHERE id = $1",
            &[&before.id, &role.as_str()],
        )
        .await?;
        log::write(
            conn,
            None,
            "role",
            "user",
            &before.id,
            Some(role.as_str()),
            None,
        )
        .await?;
    }
    let user = by_id(conn, &before.id)
        .await?
        .ok_or_else(|| DbError::Other("a user vanished while their role changed".into()))?;
    Ok(Some(RoleChange {
        user,
        before: before.role,
    }))
}

/// Bans a user: the `user_banned` trigger ends their sessions and tells
/// their streams, on every node.
pub async fn ban<C: GenericClient>(
    conn: &C,
    user_id: &str,
    actor_id: &str,
    reason: Option<&str>,
    until: Option<&str>,
) -> DbResult<Banning> {
    let role = optional(
        conn,
        "SELECT role FROM users WHERE id = $1 FOR UPDATE",
        &[&user_id],
    )
    .await?;
    match role.map(|row| row.get::<_, String>(0)) {
        None => return Ok(Banning::Missing),
        Some(role) if role == Role::Admin.as_str() => return Ok(Banning::Admin),
        Some(_) => {}
    }
    execute(
        conn,
        "UPDATE users SET banned_at = clock_timestamp(),
             banned_until = $2::text::timestamptz, ban_reason = $3
         WHERE id = $1",
        &[&user_id, &until, &reason],
    )
    .await?;
    log::write(conn, Some(actor_id), "ban", "user", user_id, until, reason).await?;
    Ok(Banning::Done)
}

/// Lifts a ban; `false` when there is no such user.
pub async fn unban<C: GenericClient>(conn: &C, user_id: &str, actor_id: &str) -> DbResult<bool> {
    let found = execute(
        conn,
        "UPDATE users SET banned_at = NULL, banned_until = NULL, ban_reason = NULL WHERE id = $1",
        &[&user_id],
    )
    .await?;
    if found == 0 {
        return Ok(false);
    }
    log::write(conn, Some(actor_id), "unban", "user", user_id, None, None).await?;
    Ok(true)
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
