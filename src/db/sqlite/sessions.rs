//! The `sessions` table: one row per signed-in browser or token, keyed by the
//! SHA-256 of the token so the table itself grants nothing.

use tokio_rusqlite::rusqlite::{params, Connection, OptionalExtension};

use super::{cached_execute, cached_row, users};
use crate::db::{DbResult, User};

pub fn insert(
    conn: &Connection,
    token_hash: &str,
    user_id: &str,
    expires_at: &str,
) -> DbResult<()> {
    cached_execute(
        conn,
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        params![token_hash, user_id, expires_at],
    )?;
    Ok(())
}

/// The user a live (unexpired) session belongs to; also the user of an
/// ended one while a ban is in force on them (a ban ends every session),
/// so they can be told they are banned.
pub fn user_for(conn: &Connection, token_hash: &str, now: &str) -> DbResult<Option<User>> {
    let user = cached_row(
        conn,
        &format!(
            "SELECT {}, s.expires_at > ?2 FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1",
            users::COLUMNS
        ),
        params![token_hash, now],
        |row| Ok((users::from_row(row, 0)?, row.get::<_, bool>(6)?)),
    )
    .optional()?;
    Ok(user.and_then(|(user, live)| (live || user.ban.is_some()).then_some(user)))
}

pub fn delete(conn: &Connection, token_hash: &str) -> DbResult<()> {
    cached_execute(
        conn,
        "DELETE FROM sessions WHERE token_hash = ?1",
        [token_hash],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::{test_connection, users};
    use crate::db::User;

    #[test]
    fn an_expired_or_deleted_session_signs_nobody_in() {
        let conn = test_connection();
        let user = User::member("u1".into(), "alice".into());
        users::insert(&conn, &user, "hash").unwrap();
        insert(&conn, "live", "u1", "2030-01-01T00:00:00Z").unwrap();
        insert(&conn, "old", "u1", "2020-01-01T00:00:00Z").unwrap();
        let now = "2026-01-01T00:00:00Z";
        assert_eq!(user_for(&conn, "live", now).unwrap(), Some(user));
        assert_eq!(user_for(&conn, "old", now).unwrap(), None);
        delete(&conn, "live").unwrap();
        assert_eq!(user_for(&conn, "live", now).unwrap(), None);
    }
}
