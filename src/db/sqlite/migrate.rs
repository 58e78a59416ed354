//! The SQLite schema's history: numbered migrations, each applied once, in
//! order, in its own transaction, and recorded in `PRAGMA user_version`.
//!
//! `schema.sql` at the top of the repository is the readable whole that
//! these add up to (a test below keeps the two equal); the migrations are
//! what carries an existing database from its version to this binary's.

use std::path::Path;

use tokio_rusqlite::rusqlite::Connection;

use super::super::{DbError, DbResult};

/// Every migration, in order: version `n` is `MIGRATIONS[n - 1]`.
/// Version 1 is the schema stoa shipped before it had migrations, kept
/// word for word: databases made by that release are at version 1.
const MIGRATIONS: &[(&str, &str)] = &[
    ("initial", include_str!("migrations/0001_initial.sql")),
    ("moderation", include_str!("migrations/0002_moderation.sql")),
    ("richtext", include_str!("migrations/0003_richtext.sql")),
    ("self-hosting", include_str!("migrations/0004_selfhost.sql")),
    ("activity", include_str!("migrations/0005_activity.sql")),
];

/// Rows rendered between two progress lines in the log.
const PROGRESS_EVERY: usize = 10_000;

/// Renders the HTML of every stored thread and comment (the rich-text
/// migration). Only `content_html` changes, which no trigger watches, so
/// no event is written and no outbox id moves.
fn render_stored_posts(conn: &Connection) -> DbResult<()> {
    let mut users = std::collections::HashMap::new();
    {
        let mut statement = conn.prepare("SELECT username FROM users")?;
        let names = statement.query_map([], |row| row.get::<_, String>(0))?;
        for name in names {
            let name = name?;
            users.insert(name.to_ascii_lowercase(), name);
        }
    }
    let user = |name: &str| users.get(&name.to_ascii_lowercase()).cloned();
    let total: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM threads) + (SELECT count(*) FROM comments)",
        [],
        |row| row.get(0),
    )?;
    let mut rendered = 0usize;
    for table in ["threads", "comments"] {
        let mut read = conn.prepare(&format!(
            "SELECT rowid, content FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT 1000"
        ))?;
        let mut write = conn.prepare(&format!(
            "UPDATE {table} SET content_html = ?2 WHERE rowid = ?1"
        ))?;
        let mut after = 0i64;
        loop {
            let batch: Vec<(i64, String)> = read
                .query_map([after], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for (rowid, content) in &batch {
                write.execute(tokio_rusqlite::rusqlite::params![
                    rowid,
                    crate::markdown::render(content, &user)
                ])?;
                rendered += 1;
                if rendered.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(rendered, total, "rendering the HTML of stored posts");
                }
            }
            after = last;
        }
    }
    tracing::info!(rendered, "rendered the HTML of every stored post");
    Ok(())
}

/// The schema version this binary brings a database to.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection) -> DbResult<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Refuses a database made by a newer stoa, before anything is written
/// to it: this binary would not know its tables or its triggers.
pub fn refuse_newer(conn: &Connection, path: &Path) -> DbResult<()> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(DbError::Schema(format!(
            "{} has schema version {found}, but this stoa knows versions up to {LATEST}: \
             run a stoa at least as new as the one that wrote it (nothing was changed)",
            path.display()
        )));
    }
    Ok(())
}

/// Applies every migration the database lacks; returns the versions
/// applied. Each runs in an immediate transaction that reads the version
/// first, so of two processes starting on one new file, the second waits
/// for the first and then finds nothing to do.
pub fn apply(conn: &mut Connection) -> DbResult<Vec<i64>> {
    let mut applied = Vec::new();
    loop {
        let tx = conn
            .transaction_with_behavior(tokio_rusqlite::rusqlite::TransactionBehavior::Immediate)?;
        let current = version(&tx)?;
        if current > LATEST {
            return Err(DbError::Schema(format!(
                "the database was moved to schema version {current} while this stoa \
                 (versions up to {LATEST}) was starting"
            )));
        }
        let Some((name, sql)) = MIGRATIONS.get(current as usize) else {
            return Ok(applied);
        };
        let next = current + 1;
        tx.execute_batch(sql)?;
        // Work beyond the SQL, in the same transaction, by the migration's
        // name (which stays when migrations are renumbered).
        if *name == "richtext" {
            render_stored_posts(&tx)?;
        }
        tx.pragma_update(None, "user_version", next)?;
        tx.commit()?;
        tracing::info!(version = next, name, "applied database migration");
        applied.push(next);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The schema as a comparable description: each table's columns and
    /// foreign keys, and the SQL of every index, trigger and view with
    /// comments and spacing taken out.
    fn describe(conn: &Connection) -> BTreeMap<(String, String), String> {
        let mut statement = conn
            .prepare(
                "SELECT type, name, coalesce(sql, '') FROM sqlite_master
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap();
        let objects: Vec<(String, String, String)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        objects
            .into_iter()
            .map(|(kind, name, sql)| {
                let description = if kind == "table" {
                    let columns = rows(conn, &format!("PRAGMA table_xinfo({name})"));
                    let keys = rows(conn, &format!("PRAGMA foreign_key_list({name})"));
                    format!("columns {columns:?} keys {keys:?}")
                } else {
                    normalised(&sql)
                };
                ((kind, name), description)
            })
            .collect()
    }

    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<String>> {
        let mut statement = conn.prepare(sql).unwrap();
        let width = statement.column_count();
        statement
            .query_map([], |row| {
                (0..width)
                    .map(|i| {
                        row.get::<_, tokio_rusqlite::rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn normalised(sql: &str) -> String {
        let without_comments: Vec<&str> = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect();
        without_comments
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_migrations_add_up_to_schema_sql() {
        let mut migrated = Connection::open_in_memory().unwrap();
        apply(&mut migrated).unwrap();
        let whole = Connection::open_in_memory().unwrap();
        whole
            .execute_batch(include_str!("../../../schema.sql"))
            .unwrap();
        let (migrated, whole) = (describe(&migrated), describe(&whole));
        assert!(
            migrated.len() >= 10,
            "the schema has its objects: {migrated:?}"
        );
        for key in migrated.keys().chain(whole.keys()) {
            assert_eq!(
                migrated.get(key),
                whole.get(key),
                "{key:?} differs between the migrations and schema.sql"
            );
        }
    }

    #[test]
    fn a_database_is_migrated_once_and_then_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        let all: Vec<i64> = (1..=LATEST).collect();
        assert_eq!(apply(&mut conn).unwrap(), all);
        assert_eq!(version(&conn).unwrap(), LATEST);
        assert_eq!(apply(&mut conn).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn two_connections_starting_on_one_new_file_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let starts: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut conn = Connection::open(&path).unwrap();
                    conn.busy_timeout(std::time::Duration::from_secs(10))
                        .unwrap();
                    barrier.wait();
                    apply(&mut conn).unwrap()
                })
            })
            .collect();
        let mut applied: Vec<i64> = starts
            .into_iter()
            .flat_map(|start| start.join().unwrap())
            .collect();
        applied.sort();
        assert_eq!(applied, (1..=LATEST).collect::<Vec<_>>());
    }

    #[test]
    fn a_database_from_a_newer_stoa_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let refusal = super::super::open_and_migrate(&path, std::time::Duration::from_secs(1))
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            refusal.contains(&format!("version {}", LATEST + 1))
                && refusal.contains(&format!("up to {LATEST}")),
            "{refusal}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
