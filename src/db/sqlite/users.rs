//! The `users` table: accounts, their roles and bans.

use tokio_rusqlite::rusqlite::{self, params, Connection, OptionalExtension};

use super::{cached_execute, cached_row};
use crate::db::{Ban, Banning, DbError, DbResult, Role, RoleChange, User};

/// The columns [`from_row`] reads, of `users u`: a ban counts while it is
/// in force.
pub const COLUMNS: &str = "u.id, u.username, u.role,
    u.banned_at IS NOT NULL AND (u.banned_until IS NULL
        OR u.banned_until > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    u.ban_reason, u.banned_until";

/// A user from [`COLUMNS`], starting at column `at`.
pub fn from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<User> {
    let role: String = row.get(at + 2)?;
    let banned: bool = row.get(at + 3)?;
    Ok(User {
        id: row.get(at)?,
        username: row.get(at + 1)?,
        role: role.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(at + 2, rusqlite::types::Type::Text, e.into())
        })?,
        ban: if banned {
            Some(Ban {
                reason: row.get(at + 4)?,
                until: row.get(at + 5)?,
            })
        } else {
            None
        },
    })
}

/// Adds a user; a taken username (in any letter case) is a `Conflict`.
pub fn insert(conn: &Connection, user: &User, password_hash: &str) -> DbResult<()> {
    cached_execute(
        conn,
        "INSERT INTO users (id, username, password_hash, role) VALUES (?1, ?2, ?3, ?4)",
        params![user.id, user.username, password_hash, user.role.as_str()],
    )?;
    Ok(())
}

/// The user and their password hash, for signing in.
pub fn by_username(conn: &Connection, username: &str) -> DbResult<Option<(User, String)>> {
    Ok(cached_row(
        conn,
        &format!("SELECT {COLUMNS}, u.password_hash FROM users u WHERE u.username = ?1"),
        [username],
        |row| Ok((from_row(row, 0)?, row.get(6)?)),
    )
    .optional()?)
}

fn by_id(conn: &Connection, id: &str) -> DbResult<Option<User>> {
    Ok(cached_row(
        conn,
        &format!("SELECT {COLUMNS} FROM users u WHERE u.id = ?1"),
        [id],
        |row| from_row(row, 0),
    )
    .optional()?)
}

/// Sets a user's role, logged with no actor (the `stoa role` command).
pub fn set_role(conn: &Connection, username: &str, role: Role) -> DbResult<Option<RoleChange>> {
    let Some((before, _)) = by_username(conn, username)? else {
        return Ok(None);
    };
    if before.role != role {
        cached_execute(
            conn,
            "UPDATE users SET role = ?2 WHERE id = ?1",
            params![before.id, role.as_str()],
        )?;
        super::log::write(
            conn,
            None,
            "role",
            "user",
            &before.id,
            Some(role.as_str()),
            None,
        )?;
    }
    let user = by_id(conn, &before.id)?
        .ok_or_else(|| DbError::Other("a user vanished while their role changed".into()))?;
    Ok(Some(RoleChange {
        user,
        before: before.role,
    }))
}

/// Bans a user: the `user_banned` trigger ends their sessions and tells
/// their streams.
pub fn ban(
    conn: &Connection,
    user_id: &str,
    actor_id: &str,
    reason: Option<&str>,
    until: Option<&str>,
) -> DbResult<Banning> {
    let Some(user) = by_id(conn, user_id)? else {
        return Ok(Banning::Missing);
    };
    if user.role == Role::Admin {
        return Ok(Banning::Admin);
    }
    cached_execute(
        conn,
        "UPDATE users SET banned_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
             banned_until = ?2, ban_reason = ?3
         WHERE id = ?1",
        params![user_id, until, reason],
    )?;
    super::log::write(conn, Some(actor_id), "ban", "user", user_id, until, reason)?;
    Ok(Banning::Done)
}

/// Lifts a ban; `false` when there is no such user.
pub fn unban(conn: &Connection, user_id: &str, actor_id: &str) -> DbResult<bool> {
    let found = cached_execute(
        conn,
        "UPDATE users SET banned_at = NULL, banned_until = NULL, ban_reason = NULL WHERE id = ?1",
        [user_id],
    )?;
    if found == 0 {
        return Ok(false);
    }
    super::log::write(conn, Some(actor_id), "unban", "user", user_id, None, None)?;
    Ok(true)
}

/// Of `names`, those that are users, as each registered (names match in
/// any letter case).
pub fn registered(conn: &Connection, names: &[String]) -> DbResult<Vec<String>> {
    let names =
        serde_json::to_string(names).map_err(|e| crate::db::DbError::Other(e.to_string()))?;
    let mut statement = conn.prepare_cached(
        "SELECT username FROM users WHERE username IN (SELECT value FROM json_each(?1))",
    )?;
    let found = statement.query_map([names], |row| row.get(0))?;
    Ok(found.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::test_connection;

    #[test]
    fn usernames_are_unique_whatever_their_case() {
        let conn = test_connection();
        let alice = User::member("u1".into(), "alice".into());
        insert(&conn, &alice, "hash").unwrap();
        let shouting = User::member("u2".into(), "ALICE".into());
        assert!(matches!(
            insert(&conn, &shouting, "hash"),
            Err(DbError::Conflict)
        ));
        let (found, hash) = by_username(&conn, "Alice").unwrap().unwrap();
        assert_eq!((found, hash.as_str()), (alice, "hash"));
    }

    #[test]
    fn a_ban_counts_until_it_runs_out_and_an_admin_is_not_banned() {
        let conn = test_connection();
        insert(&conn, &User::member("u1".into(), "alice".into()), "h").unwrap();
        insert(&conn, &User::member("u2".into(), "bob".into()), "h").unwrap();
        set_role(&conn, "bob", Role::Admin).unwrap().unwrap();
        assert_eq!(ban(&conn, "u2", "u2", None, None).unwrap(), Banning::Admin);
        ban(
            &conn,
            "u1",
            "u2",
            Some("spam"),
            Some("2999-01-01T00:00:00.000Z"),
        )
        .unwrap();
        let ban_of = |conn: &Connection| by_id(conn, "u1").unwrap().unwrap().ban;
        assert_eq!(
            ban_of(&conn),
            Some(Ban {
                reason: Some("spam".into()),
                until: Some("2999-01-01T00:00:00.000Z".into())
            })
        );
        conn.execute(
            "UPDATE users SET banned_until = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
        assert_eq!(ban_of(&conn), None);
    }
}
