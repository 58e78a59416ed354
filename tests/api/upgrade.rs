//! Databases made by earlier releases: one made by the schema stoa shipped
//! before it had migrations is carried forward in place, every row and
//! every outbox id kept, and replays as before; one made by a newer stoa
//! is refused, untouched.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_rusqlite::rusqlite::Connection;

use crate::backend::{execute_outside, sqlite_connection};
use crate::helpers::{spawn_app_with, test_config, Page};
use stoa::config::Database;

/// The whole schema of the release before migrations, word for word.
const FIRST_RELEASE_SCHEMA: &str = include_str!("../../src/db/sqlite/migrations/0001_initial.sql");

/// A forum as the first release left it: two users, threads, comments,
/// likes, a removed comment and a removed thread, and its oldest events
/// pruned. Returns the public events it holds (everything but the reply
/// notification to ada), as the first release sent them.
fn first_release_forum(path: &std::path::Path) -> Vec<(i64, Value)> {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.execute_batch(FIRST_RELEASE_SCHEMA).unwrap();
    conn.execute_batch(
        "INSERT INTO users (id, username, password_hash) VALUES ('u-ada', 'ada', 'x'), ('u-bob', 'bob', 'x');
         INSERT INTO threads (id, author_id, title, content) VALUES ('t-1', 'u-ada', 'Kept', '**first**, @bob');
         INSERT INTO threads (id, author_id, title, content) VALUES ('t-2', 'u-bob', 'Removed', 'second');
         INSERT INTO comments (id, thread_id, author_id, content, created_at) VALUES ('c-1', 't-1', 'u-bob', 'a <script>reply</script>', '2030-01-01T00:00:00.000Z');
         INSERT INTO comments (id, thread_id, author_id, content) VALUES ('c-2', 't-1', 'u-ada', 'mine');
         INSERT INTO likes (user_id, thread_id) VALUES ('u-bob', 't-1');
         INSERT INTO likes (user_id, thread_id, comment_id) VALUES ('u-ada', 't-1', 'c-1');
         DELETE FROM comments WHERE id = 'c-2';
         DELETE FROM threads WHERE id = 't-2';
         DELETE FROM outbox WHERE id <= 1;",
    )
    .unwrap();
    assert_eq!(
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .unwrap(),
        1
    );
    // How the first release framed each event's `data:` line.
    let mut statement = conn
        .prepare(
            "SELECT id, json_object('type', type, 'data', json(payload), 'timestamp', created_at)
             FROM outbox WHERE recipient_id IS NULL ORDER BY id",
        )
        .unwrap();
    let events = statement
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (id, message) = row.unwrap();
            (id, serde_json::from_str(&message).unwrap())
        })
        .collect();
    events
}

#[tokio::test]
async fn a_database_from_the_release_before_migrations_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let before = first_release_forum(&path);
    let ids: Vec<i64> = before.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        [2, 3, 5, 6, 7, 8, 9],
        "the public events the old forum holds"
    );

    let app = spawn_app_with(|config| *config = test_config(Database::Sqlite(path.clone()))).await;

    // Every row is there, as the API shows it.
    let page = app.threads(None, Page::default()).await;
    let threads = page["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0]["id"], "t-1");
    assert_eq!(threads[0]["likeCount"], 1);
    assert_eq!(threads[0]["commentCount"], 1);
    // Its latest activity is its newest comment, filled in by the migration.
    assert_eq!(threads[0]["lastActivityAt"], "2030-01-01T00:00:00.000Z");
    assert_eq!(page["lastEventId"], 9);
    // The migration rendered every stored post's HTML, mentions included.
    assert_eq!(
        threads[0]["contentHtml"],
        "<p><strong>first</strong>, <a class=\"mention\" href=\"/?q=%40bob\" \
         rel=\"nofollow ugc noopener\">@bob</a></p>\n"
    );
    let thread = app.thread(None, "t-1").await;
    assert_eq!(
        thread["comments"][0]["contentHtml"],
        "<p>a &lt;script&gt;reply&lt;/script&gt;</p>\n"
    );
    let stats = app.stats().await;
    assert_eq!(stats["outbox"]["earliestId"], 2);
    assert_eq!(stats["outbox"]["latestId"], 9);

    // A client that was at the oldest kept position is replayed exactly
    // what the old release would have sent it, ids included.
    let mut stream = app.events("?lastEventId=1", &[]).await;
    let mut replayed = Vec::new();
    for _ in &before {
        let event = stream.next_event().await;
        replayed.push((event.id_number().unwrap(), event.json()));
    }
    assert_eq!(replayed, before);

    // And the forum goes on from there, with the next id.
    let alice = app.register("alice").await;
    app.create_thread(&alice, "After the upgrade", "hello")
        .await;
    let next = stream
        .next_within(Duration::from_secs(5))
        .await
        .expect("the new thread's event");
    let next = if next.kind() == "presence" {
        stream.next_event().await
    } else {
        next
    };
    assert_eq!(next.id_number(), Some(10));
    assert_eq!(next.kind(), "new_thread");

    // The old release's rows take part in what the migrations added: an
    // edit made from outside is captured and stamped, and the thread is
    // neither locked nor pinned.
    execute_outside(
        &Database::Sqlite(path.clone()),
        "UPDATE threads SET title = 'Renamed after the upgrade' WHERE id = 't-1'",
    )
    .await;
    let edit = stream.next_event().await;
    assert_eq!(
        (edit.id_number(), edit.kind().as_str()),
        (Some(11), "thread_edited")
    );
    let thread = &edit.json()["data"]["thread"];
    assert_eq!(thread["title"], "Renamed after the upgrade");
    assert!(thread["editedAt"].is_string(), "{thread}");
    assert_eq!(
        (&thread["locked"], &thread["pinned"]),
        (&json!(false), &json!(false))
    );

    let conn = sqlite_connection(&path);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version >= 1);
}

#[tokio::test]
async fn the_binary_refuses_a_database_from_a_newer_stoa_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(FIRST_RELEASE_SCHEMA).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let bytes = std::fs::read(&path).unwrap();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("schema version 999") && stderr.contains("versions up to"),
        "the refusal names both versions: {stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was written");
}

/// A PostgreSQL database from before rich text (migrations 1 and 2) gets
/// the HTML of every stored post rendered, its outbox left as it was.
#[cfg(stoa_test_postgres)]
#[tokio::test]
async fn a_postgres_database_from_before_rich_text_gets_its_posts_rendered() {
    use crate::backend::{execute_outside, fresh_database, query_outside};

    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    execute_outside(
        &db,
        &format!(
            "{}; {};
             CREATE TABLE schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version, name)
                 VALUES (1, 'initial'), (2, 'shared rate limits');
             INSERT INTO users (id, username, password_hash) VALUES ('u-ada', 'ada', 'x'), ('u-bob', 'bob', 'x');
             INSERT INTO threads (id, author_id, title, content) VALUES ('t-1', 'u-ada', 'Kept', '**first**, @bob');
             INSERT INTO comments (id, thread_id, author_id, content, created_at) VALUES ('c-1', 't-1', 'u-bob', 'a <script>reply</script>', '2030-01-01T00:00:00Z')",
            include_str!("../../src/db/postgres/migrations/0001_initial.sql"),
            include_str!("../../src/db/postgres/migrations/0002_shared_rate_limits.sql"),
        ),
    )
    .await;
    let outbox = "SELECT id::text, type, payload::text FROM outbox ORDER BY id";
    let before = query_outside(&db, outbox).await;
    assert_eq!(
        before.len(),
        3,
        "the thread, the comment and its notification"
    );

    let app = spawn_app_with(|config| *config = test_config(db.clone())).await;
    let thread = app.thread(None, "t-1").await;
    assert_eq!(
        thread["thread"]["contentHtml"],
        "<p><strong>first</strong>, <a class=\"mention\" href=\"/?q=%40bob\" \
         rel=\"nofollow ugc noopener\">@bob</a></p>\n"
    );
    assert_eq!(
        thread["comments"][0]["contentHtml"],
        "<p>a &lt;script&gt;reply&lt;/script&gt;</p>\n"
    );
    // Its latest activity is its comment's, filled in by the migration.
    assert_eq!(
        thread["thread"]["lastActivityAt"],
        "2030-01-01T00:00:00.000Z"
    );
    assert_eq!(
        query_outside(&db, outbox).await,
        before,
        "no event was added or changed"
    );
}
