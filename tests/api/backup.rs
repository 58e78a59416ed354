//! Backups and restores: a restore never lets an outbox id mean two
//! events, so a client that saw events the restore took away is told to
//! resync, and one from before the backup resumes exactly; `stoa backup`
//! and `stoa restore` as an operator uses them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::backend::{back_up, restore};
use crate::helpers::{spawn_app, Page};
use stoa::config::Database;

#[tokio::test]
async fn after_a_restore_a_position_it_took_away_gets_resync_and_an_older_one_resumes_exactly() {
    let mut app = spawn_app().await;
    let alice = app.register("alice").await;
    app.create_thread(&alice, "kept", "made before the backup")
        .await;
    let at_backup = app.threads(None, Page::default()).await["lastEventId"]
        .as_i64()
        .unwrap();

    let file = app.dir.path().join("backup.db");
    back_up(&app.config.db, &file).await;
    // A client watching live sees a thread the restore will take away.
    let mut watching = app.events(&format!("?lastEventId={at_backup}"), &[]).await;
    app.create_thread(&alice, "lost", "made after the backup")
        .await;
    let lost = watching.next_event().await;
    assert_eq!(lost.json()["data"]["title"], "lost");
    let seen = lost.id_number().unwrap();
    drop(watching);

    app.stop().await;
    restore(&app.config.db, &file).await;
    let app = app.restart().await;
    let after = app
        .create_thread(&alice, "new", "made after the restore")
        .await;

    // The client that saw "lost" is told to reload, never resumed past
    // the new thread (which would take its id on a naive restore).
    let mut returning = app
        .open_events("", &[("Last-Event-ID", &seen.to_string())])
        .await;
    let kinds: Vec<String> = [
        returning.next().await,
        returning.next().await,
        returning.next().await,
    ]
    .iter()
    .map(|m| m.kind())
    .collect();
    assert_eq!(kinds, ["connected", "presence", "resync"]);

    // A client from before the backup resumes: the new thread, nothing else.
    let mut older = app.events(&format!("?lastEventId={at_backup}"), &[]).await;
    let next = older.next_event().await;
    assert_eq!(next.json()["type"], "new_thread");
    assert_eq!(next.json()["data"]["id"], after["id"]);
    assert!(
        next.id_number().unwrap() > seen,
        "no id is handed out twice"
    );

    let titles: Vec<String> = app.threads(None, Page::default()).await["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(titles, ["new", "kept"]);
}

/// Runs `stoa --db DB ARGS…`; returns whether it succeeded and what it said.
async fn stoa(db: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[tokio::test]
async fn a_backup_is_private_never_overwrites_unasked_and_a_restore_waits_for_stopped_servers() {
    let mut app = spawn_app().await;
    let db = match app.config.db.clone() {
        Database::Sqlite(path) => path,
        Database::Postgres(url) => {
            // On PostgreSQL the commands point to the server's own tools.
            for command in ["backup", "restore"] {
                let (ok, said) = stoa(&url, &[command, "x.db"]).await;
                assert!(
                    !ok && said.contains("pg_dump") && said.contains("stoa_restored"),
                    "{said}"
                );
            }
            return;
        }
    };
    app.register("alice").await;
    let file = app.dir.path().join("copy.db");
    let name = file.to_str().unwrap();
    let (ok, said) = stoa(&db, &["backup", name]).await;
    assert!(ok, "{said}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner may read a backup");

    let (ok, said) = stoa(&db, &["backup", name]).await;
    assert!(
        !ok && said.contains("already exists") && said.contains("--force"),
        "{said}"
    );
    let (ok, said) = stoa(&db, &["backup", "--force", name]).await;
    assert!(ok, "{said}");

    let (ok, said) = stoa(&db, &["restore", name]).await;
    assert!(
        !ok && said.contains("in use") && said.contains("stop the servers"),
        "{said}"
    );

    app.stop().await;
    // The database belongs to the user the service runs as; a restore run
    // by root keeps it theirs.
    std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, said) = stoa(&db, &["restore", name]).await;
    assert!(ok, "{said}");
    let restored = std::fs::metadata(&db).unwrap();
    assert_eq!((restored.uid(), restored.gid()), (65534, 65534));
    assert_eq!(restored.permissions().mode() & 0o777, 0o640);
    let app = app.restart().await;
    app.login("alice").await;
}
