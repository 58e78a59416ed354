//! The `users` table.

use tokio_rusqlite::rusqlite::{params, Connection, OptionalExtension};

use super::{cached_execute, cached_row};
use crate::db::{DbResult, User};

/// Adds a user; a taken username (in any letter case) is a `Conflict`.
pub fn insert(conn: &Connection, user: &User, password_hash: &str) -> DbResult<()> {
    cached_execute(
        conn,
        "INSERT INTO users (id, username, password_hash) VALUES (?1, ?2, ?3)",
        params![user.id, user.username, password_hash],
    )?;
    Ok(())
}

/// The user and their password hash, for signing in.
pub fn by_username(conn: &Connection, username: &str) -> DbResult<Option<(User, String)>> {
    Ok(cached_row(
        conn,
        "SELECT id, username, password_hash FROM users WHERE username = ?1",
        [username],
        |row| {
            Ok((
                User {
                    id: row.get(0)?,
                    username: row.get(1)?,
                },
                row.get(2)?,
            ))
        },
    )
    .optional()?)
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
    use crate::db::DbError;

    #[test]
    fn usernames_are_unique_whatever_their_case() {
        let conn = test_connection();
        let alice = User {
            id: "u1".into(),
            username: "alice".into(),
        };
        insert(&conn, &alice, "hash").unwrap();
        let shouting = User {
            id: "u2".into(),
            username: "ALICE".into(),
        };
        assert!(matches!(
            insert(&conn, &shouting, "hash"),
            Err(DbError::Conflict)
        ));
        let (found, hash) = by_username(&conn, "Alice").unwrap().unwrap();
        assert_eq!((found, hash.as_str()), (alice, "hash"));
    }
}
