//! `stoa backup` and `stoa restore` on a SQLite file.
//!
//! A backup is `VACUUM INTO` from a read transaction: a consistent copy
//! while servers run, written to a file only its owner may read (it holds
//! password hashes and session hashes) and renamed into place when
//! complete. A restore needs the servers stopped (it takes the file's
//! exclusive lock, so a server cannot start meanwhile either), puts the
//! backup in place with the replaced file's owner and mode, and keeps
//! outbox ids honest: the id sequence moves past every id the replaced
//! database had handed out, and the ids between the backup's newest and
//! that are recorded in `outbox_gaps`, so a client holding one of them
//! gets `resync` and no id ever means two events.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_rusqlite::rusqlite::{params, Connection, OpenFlags};

use super::{migrate, open_and_migrate, outbox, unopenable};
use crate::db::{timestamp, DbError, DbResult, Restored};

/// When the database being replaced is gone, the restore cannot know the
/// newest id it handed out: ids this far past the backup's newest are
/// treated as possibly seen (clients holding any of them resync).
pub const UNKNOWN_GAP: i64 = 1_000_000_000;

/// A sibling path for a file being written, renamed over `path` when done.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

/// Copies the database at `from` to `to` while servers may be running.
/// Returns the newest outbox id the copy holds.
pub fn backup(from: &Path, to: &Path, force: bool) -> DbResult<i64> {
    if to.exists() && !force {
        return Err(DbError::Schema(format!(
            "{} already exists: choose another name, or pass --force to replace it",
            to.display()
        )));
    }
    if !from.is_file() {
        return Err(DbError::Schema(format!(
            "there is no database at {} to back up (--db names it)",
            from.display()
        )));
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| unopenable(from, error))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let temporary = partial(to);
    // Created empty and private before SQLite writes a byte into it.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|error| {
            DbError::Schema(format!("cannot create {}: {error}", temporary.display()))
        })?;
    let copied = (|| {
        conn.execute("VACUUM INTO ?1", [temporary.to_string_lossy()])?;
        let copy = Connection::open(&temporary)?;
        let newest = outbox::latest(&copy)?;
        drop(copy);
        std::fs::rename(&temporary, to).map_err(|error| {
            DbError::Schema(format!("cannot move the copy to {}: {error}", to.display()))
        })?;
        Ok(newest)
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    copied
}

/// Puts the backup at `from` in place of the database at `to`, which no
/// server may have open.
pub fn restore(from: &Path, to: &Path) -> DbResult<Restored> {
    let backup = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| unopenable(from, error))?;
    migrate::refuse_newer(&backup, from)?;
    let backup_latest = outbox::latest(&backup)
        .map_err(|_| DbError::Schema(format!("{} is not a stoa database", from.display())))?;
    drop(backup);

    // The replaced database: held exclusively from here to the rename, so
    // no server has it open now or opens it meanwhile.
    let current = if to.exists() {
        let conn = Connection::open(to).map_err(|error| unopenable(to, error))?;
        let in_use = |error: tokio_rusqlite::rusqlite::Error| match DbError::from(error) {
            DbError::Busy => DbError::Schema(format!(
                "{} is in use (a stoa server, or another program, has it open): stop the \
                 servers first; a restore replaces the file under them",
                to.display()
            )),
            other => other,
        };
        // Out of WAL mode (which needs every other connection gone: a
        // running server makes this fail), so the lock below is the
        // file's own and no -wal file of the replaced database remains.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))
            .map_err(in_use)?;
        conn.execute_batch("BEGIN EXCLUSIVE").map_err(in_use)?;
        let handed_out = outbox::latest(&conn)?;
        let gaps: Option<i64> = conn
            .query_row("SELECT max(through) FROM outbox_gaps", [], |r| r.get(0))
            .unwrap_or(None);
        Some((conn, handed_out.max(gaps.unwrap_or(0))))
    } else {
        None
    };
    let replaced_latest = match &current {
        Some((_, latest)) => *latest,
        None => backup_latest + UNKNOWN_GAP,
    };

    let temporary = partial(to);
    std::fs::copy(from, &temporary).map_err(|error| {
        DbError::Schema(format!(
            "cannot copy {} next to {}: {error}",
            from.display(),
            to.display()
        ))
    })?;
    let prepared = (|| {
        let metadata = current.as_ref().and_then(|_| std::fs::metadata(to).ok());
        let mode = metadata
            .as_ref()
            .map_or(0o600, |m| m.permissions().mode() & 0o777);
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
            .map_err(|e| DbError::Other(e.to_string()))?;
        if let Some(metadata) = &metadata {
            std::os::unix::fs::chown(&temporary, Some(metadata.uid()), Some(metadata.gid()))
                .map_err(|error| {
                    DbError::Schema(format!(
                        "cannot give the restored file the owner of {} (run the restore as \
                         root or as that user): {error}",
                        to.display()
                    ))
                })?;
        }
        let mut conn = open_and_migrate(&temporary, Duration::from_secs(10))?;
        let latest = replaced_latest.max(backup_latest);
        if latest > backup_latest {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO outbox_gaps (after, through, restored_at) VALUES (?1, ?2, ?3)",
                params![backup_latest, latest, timestamp(chrono::Utc::now())],
            )?;
            // AUTOINCREMENT takes the next id from here; the backup may
            // predate the outbox's first row, when there is no row yet.
            let moved = tx.execute(
                "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'outbox'",
                [latest],
            )?;
            if moved == 0 {
                tx.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?1)",
                    [latest],
                )?;
            }
            tx.commit()?;
        }
        // One self-contained file: the WAL checkpointed into it.
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        drop(conn);
        Ok(latest)
    })();
    let latest = match prepared {
        Ok(latest) => latest,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    for suffix in ["-wal", "-shm"] {
        let mut side = to.as_os_str().to_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&temporary, to).map_err(|error| {
        DbError::Schema(format!(
            "cannot move the restored copy to {}: {error}",
            to.display()
        ))
    })?;
    let replaced = current.is_some();
    drop(current);
    Ok(Restored {
        backup_latest,
        latest,
        replaced,
    })
}
