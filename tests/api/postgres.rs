//! What only PostgreSQL needs proving (the rest of the suite runs on it as
//! it runs on SQLite): outbox ids become visible in id order however
//! transactions interleave, many writers at once, the LISTEN connection
//! lost, a database from a newer stoa refused, and the database stopped
//! and started under load.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use stoa::config::Database;

use crate::backend::{connect, execute_outside, fresh_database, query_outside};
use crate::helpers::{paths, spawn_app_with, start_binary_with, Session, TestApp};
use crate::sse_client::SseStream;

fn url(db: &Database) -> &str {
    match db {
        Database::Postgres(url) => url,
        Database::Sqlite(_) => panic!("the PostgreSQL suite runs on PostgreSQL"),
    }
}

/// Waits until the session `pid` waits for a lock another one holds.
async fn wait_until_blocked(url: &str, pid: i32) {
    let watcher = connect(url).await;
    for _ in 0..1000 {
        let blocked: bool = watcher
            .query_one("SELECT cardinality(pg_blocking_pids($1)) > 0", &[&pid])
            .await
            .unwrap()
            .get(0);
        if blocked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {pid} never blocked");
}

/// Waits until `count` sessions of this database wait for a lock.
async fn wait_for_waiters(url: &str, count: i64) {
    let watcher = connect(url).await;
    for _ in 0..1000 {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} sessions never waited for a lock");
}

/// The outbox's ids, in id order.
async fn outbox_ids(db: &Database) -> Vec<i64> {
    query_outside(db, "SELECT id FROM outbox ORDER BY id")
        .await
        .iter()
        .map(|row| row[0].as_deref().unwrap().parse().unwrap())
        .collect()
}

/// Fails if an event (a message with an id) arrives within `wait`.
async fn assert_no_event_within(stream: &mut SseStream, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(message) = stream
        .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert_eq!(
            message.id, None,
            "no event may go out while an earlier id is uncommitted: {message:?}"
        );
    }
}

fn insert_thread(id: &str, author: &str, title: &str) -> String {
    format!(
        "INSERT INTO threads (id, author_id, title, content) VALUES ('{id}', '{author}', '{title}', 'c')"
    )
}

/// A transaction left open after its append holds back every later one:
/// another session's append (psql) and the node's own (HTTP) wait, nothing
/// is delivered meanwhile, and when it ends every stream gets what
/// committed, in id order, once; after a rollback its id is taken by the
/// next, so ids stay dense and nobody waits for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_back_later_ids_until_it_ends() {
    let app = spawn_app_with(|c| c.busy_timeout = Duration::from_secs(30)).await;
    let db = app.config.db.clone();
    let url = url(&db);
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    for ending in ["COMMIT", "ROLLBACK"] {
        let first = outbox_ids(&db).await.last().copied().unwrap_or(0) + 1;
        let a = connect(url).await;
        a.batch_execute(&format!(
            "BEGIN; {}",
            insert_thread(&format!("a-{ending}"), &alice.id, "A")
        ))
        .await
        .unwrap();
        let b = connect(url).await;
        let b_pid: i32 = b
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let b_sql = insert_thread(&format!("b-{ending}"), &alice.id, "B");
        let b_write = tokio::spawn(async move { b.batch_execute(&b_sql).await });
        let (through_http, ()) = tokio::join!(app.try_create_thread(&alice, "C", "c"), async {
            wait_until_blocked(url, b_pid).await;
            wait_for_waiters(url, 2).await;
            assert_no_event_within(&mut stream, Duration::from_millis(300)).await;
            a.batch_execute(ending).await.unwrap();
        });
        assert_eq!(
            through_http.status,
            StatusCode::CREATED,
            "{}",
            through_http.text
        );
        b_write.await.unwrap().expect("B commits once A is done");

        let committed: usize = if ending == "COMMIT" { 3 } else { 2 };
        let events = stream.take_events(committed).await;
        let ids: Vec<i64> = events.iter().map(|e| e.id_number().unwrap()).collect();
        let expected: Vec<i64> = (first..first + committed as i64).collect();
        assert_eq!(ids, expected, "{ending}: dense, in id order, once");
        let titles: BTreeSet<String> = events
            .iter()
            .map(|e| e.json()["data"]["title"].as_str().unwrap().to_string())
            .collect();
        let wanted: &[&str] = if ending == "COMMIT" {
            &["A", "B", "C"]
        } else {
            &["B", "C"]
        };
        assert_eq!(titles, wanted.iter().map(|t| t.to_string()).collect());
        assert_no_event_within(&mut stream, Duration::from_millis(200)).await;
        assert_eq!(outbox_ids(&db).await.last(), expected.last());
    }
}

/// Posts `count` threads through the server, one after another; returns
/// their titles (each must be acknowledged with a 201).
async fn http_writer(app: &TestApp, who: &Session, name: String, count: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for n in 0..count {
        let title = format!("{name}-{n}");
        let answer = app.try_create_thread(who, &title, "c").await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        acknowledged.push(title);
    }
    acknowledged
}

/// Inserts threads from its own connection, one transaction each, as a
/// script with `psql` would.
async fn psql_writer(db: &Database, author: &str, name: String, count: usize) -> Vec<String> {
    let client = connect(url(db)).await;
    let insert = client
        .prepare("INSERT INTO threads (id, author_id, title, content) VALUES ($1, $2, $3, 'c')")
        .await
        .unwrap();
    let mut written = Vec::new();
    for n in 0..count {
        let title = format!("{name}-{n}");
        let id = format!("id-{title}");
        client
            .execute(&insert, &[&id, &author, &title])
            .await
            .unwrap();
        written.push(title);
    }
    written
}

/// Eight writers at once, four through the server and four with their own
/// connections: every stream gets exactly the outbox, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_leave_no_gap_duplicate_or_reorder_on_any_stream() {
    const EACH: usize = 400;
    let app = spawn_app_with(|_| {}).await;
    let db = app.config.db.clone();
    let alice = app.register("alice").await;
    let mut live = vec![app.events("", &[]).await, app.events("", &[]).await];
    let http = futures_util::future::join_all(
        (0..4).map(|w| http_writer(&app, &alice, format!("http{w}"), EACH)),
    );
    let psql = futures_util::future::join_all(
        (0..4).map(|w| psql_writer(&db, &alice.id, format!("psql{w}"), EACH)),
    );
    let (http, psql) = tokio::join!(http, psql);
    let written: BTreeSet<String> = http.into_iter().chain(psql).flatten().collect();
    assert_eq!(written.len(), 8 * EACH);

    let ids = outbox_ids(&db).await;
    assert_eq!(ids.len(), 8 * EACH);
    live.push(app.events("?lastEventId=0", &[]).await);
    for stream in &mut live {
        let events = stream.take_events(ids.len()).await;
        let got: Vec<i64> = events.iter().map(|e| e.id_number().unwrap()).collect();
        assert_eq!(got, ids, "a stream differs from the outbox");
        let titles: BTreeSet<String> = events
            .iter()
            .map(|e| e.json()["data"]["title"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(titles, written);
    }
}

/// The LISTEN connection ended from the server's side while rows keep
/// coming from outside: with polling all but off, the node still delivers
/// every row (it reconnects and catches up by id), and says so once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_is_reopened_and_nothing_is_missed() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (_node, addr, log) = start_binary_with(&db, &["--poll-interval", "1h"]).await;
    let client = reqwest::Client::new();
    crate::helpers::register_at(&client, addr, "alice").await;
    let author = query_outside(&db, "SELECT id FROM users")
        .await
        .remove(0)
        .remove(0)
        .unwrap();
    let mut stream = SseStream::connect(addr, paths::EVENTS, &[]).await;
    assert_eq!(stream.next().await.kind(), "connected");
    execute_outside(&db, &insert_thread("before", &author, "before")).await;
    let first = stream.next_event().await;
    assert_eq!(first.id_number(), Some(1), "NOTIFY wakes the node");

    let killer = connect(url(&db)).await;
    let killed: i64 = killer
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the node's LISTEN connection");
    for n in 0..3 {
        execute_outside(&db, &insert_thread(&format!("after-{n}"), &author, "after")).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let after: Vec<i64> = stream
        .take_events(3)
        .await
        .iter()
        .map(|e| e.id_number().unwrap())
        .collect();
    assert_eq!(after, [2, 3, 4]);

    let log = log.lock().unwrap().clone();
    let count = |text: &str| log.iter().filter(|line| line.contains(text)).count();
    assert_eq!(count("lost the LISTEN connection"), 1, "{log:#?}");
    assert_eq!(count("LISTEN connection is back"), 1, "{log:#?}");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_stoa_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    execute_outside(
        &db,
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')",
    )
    .await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
        .args(["--listen", "127.0.0.1:0", "--db", url(&db)])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("schema version 999") && stderr.contains("versions up to"),
        "{stderr}"
    );
    let tables = query_outside(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await;
    assert_eq!(tables, [[Some("schema_migrations".to_string())]]);
}

/// A PostgreSQL server of the test's own, so it can be stopped.
struct PrivateCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateCluster {
    fn script() -> String {
        format!("{}/scripts/pg-cluster.sh", env!("CARGO_MANIFEST_DIR"))
    }

    async fn start() -> PrivateCluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PrivateCluster {
            dir: tempfile::tempdir().unwrap(),
            port,
        };
        cluster.run("start").await;
        cluster
    }

    async fn run(&self, command: &str) {
        let status = tokio::process::Command::new("bash")
            .arg(Self::script())
            .arg(command)
            .arg(self.dir.path().join("data"))
            .arg(self.port.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "pg-cluster.sh {command}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path().join("data"))
            .status();
    }
}

/// What the writers of the outage test saw.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<String>,
    unavailable: usize,
}

/// PostgreSQL stopped for 10 s while 4 writers post and 100 streams are
/// open, then started again: writes meanwhile get 503 with Retry-After,
/// never a 500 or a hang; `/healthz` says 503; afterwards every
/// acknowledged write is stored with one event, and every stream (resuming
/// by its last id if it was closed) has every event once, in order. The
/// node is not restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_stopped_under_load_loses_nothing_acknowledged() {
    let cluster = PrivateCluster::start().await;
    let db = Database::Postgres(cluster.url());
    let app = Arc::new(
        spawn_app_with(|c| {
            c.db = db.clone();
            c.busy_timeout = Duration::from_secs(1);
            c.ping_interval = Duration::from_millis(500);
        })
        .await,
    );
    let writer = app.register("writer").await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(app.events("", &[]).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (app, writer, stop, outcomes) =
                (app.clone(), writer.clone(), stop.clone(), outcomes.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let title = format!("w{w}-{n}");
                    let answer = tokio::time::timeout(
                        Duration::from_secs(10),
                        app.try_create_thread(&writer, &title, "c"),
                    )
                    .await
                    .expect("every write is answered within 10 s");
                    match answer.status {
                        StatusCode::CREATED => outcomes.lock().unwrap().acknowledged.push(title),
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert!(answer.header("retry-after").is_some(), "{}", answer.text);
                            outcomes.lock().unwrap().unavailable += 1;
                        }
                        other => panic!("{title}: {other} {}", answer.text),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.run("stop").await;
    let stopped_at = tokio::time::Instant::now();
    let health = app.try_healthz().await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.text
    );
    // Open streams are kept alive meanwhile: each gets pings (after the
    // events it had not read yet, which count below).
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); streams.len()];
    for (stream, seen) in streams.iter_mut().zip(&mut seen).take(5) {
        loop {
            let message = stream
                .next_within(Duration::from_secs(3))
                .await
                .expect("a stream stays open while the database is away");
            if message.kind() == "ping" {
                break;
            }
            seen.extend(message.id_number());
        }
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped_at.elapsed())).await;
    cluster.run("start").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(app.try_healthz().await.status, StatusCode::OK);

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.unavailable > 0, "writes were refused meanwhile");
    let stored = query_outside(
        &db,
        "SELECT payload::json->>'title' FROM outbox WHERE type = 'new_thread' ORDER BY id",
    )
    .await;
    let stored: Vec<String> = stored
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "one event per stored thread");
    for title in &outcomes.acknowledged {
        assert!(unique.contains(title), "acknowledged {title} was lost");
    }

    let ids = outbox_ids(&db).await;
    for (stream, mut got) in streams.iter_mut().zip(seen) {
        while got.len() < ids.len() {
            match stream.next_within(Duration::from_secs(10)).await {
                Some(message) => got.extend(message.id_number()),
                None => {
                    // Closed (or quiet): resume by the last id, as a browser does.
                    let last = stream.last_event_id.clone();
                    *stream =
                        SseStream::connect(app.addr, paths::EVENTS, &[("Last-Event-ID", &last)])
                            .await;
                }
            }
        }
        assert_eq!(got, ids, "a stream differs from the outbox");
    }
}

/// A second node on the same database as `app`, in this process.
async fn second_node(app: &TestApp, adjust: impl FnOnce(&mut stoa::Config)) -> TestApp {
    let db = app.config.db.clone();
    spawn_app_with(|config| {
        config.db = db;
        adjust(config);
    })
    .await
}

/// Sessions live in the database: a sign-in on one node works on another
/// at once, and signing out on one ends the session on every node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_begun_or_ended_on_one_node_is_so_on_every_node() {
    let a = spawn_app_with(|_| {}).await;
    let b = second_node(&a, |_| {}).await;
    a.register("alice").await;
    let session = a.login("alice").await;
    assert_eq!(b.me(&session).await["username"], "alice");
    b.create_thread(&session, "from b", "c").await;
    a.logout(&session).await;
    let after = b.try_me(Some(&session)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text);
    let write = b.try_create_thread(&session, "too late", "c").await;
    assert_eq!(write.status, StatusCode::UNAUTHORIZED, "{}", write.text);
}

/// The write limit holds across nodes: a user who used their burst on one
/// node is refused on the other, and so is an address's sign-in burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_nodes() {
    let limited = |config: &mut stoa::Config| {
        config.write_rate = 1.0;
        config.write_burst = 3;
        config.sign_in_rate = 1.0;
        config.sign_in_burst = 4;
    };
    let a = spawn_app_with(limited).await;
    let b = second_node(&a, limited).await;
    let alice = a.register("alice").await;
    for n in 0..3 {
        a.create_thread(&alice, &format!("t{n}"), "c").await;
    }
    let refused = b.try_create_thread(&alice, "one more", "c").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert!(refused.header("retry-after").is_some());
    // Sign-ins: alice's registration took one of the address's four.
    a.login("alice").await;
    b.login("alice").await;
    b.login("alice").await;
    let refused = a.try_login("alice", crate::helpers::PASSWORD).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
}

/// `online` counts the streams of every node, and a node that dies stops
/// counting within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_counts_every_node_and_forgets_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (_a, a, _) = start_binary_with(&db, &[]).await;
    let (mut b_node, b, _) = start_binary_with(&db, &[]).await;
    let mut streams = Vec::new();
    for (addr, count) in [(a, 2), (b, 3)] {
        for _ in 0..count {
            streams.push(SseStream::connect(addr, paths::EVENTS, &[]).await);
        }
    }
    let client = reqwest::Client::new();
    let online = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let stats: serde_json::Value = client
                .get(format!("http://{addr}{}", paths::STATS))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                stats["online"].as_u64().unwrap(),
                stats["connections"].as_u64().unwrap(),
            )
        }
    };
    let until = |addr, wanted: u64| {
        let online = &online;
        async move {
            for _ in 0..100 {
                if online(addr).await.0 == wanted {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "online never became {wanted} at {addr}: {:?}",
                online(addr).await
            );
        }
    };
    until(a, 5).await;
    until(b, 5).await;
    assert_eq!(online(a).await.1, 2, "connections stay per node");
    // A stream on A hears the cluster's count too.
    let mut watcher = SseStream::connect(a, paths::EVENTS, &[]).await;
    until(a, 6).await;
    b_node.start_kill().unwrap();
    b_node.wait().await.unwrap();
    until(a, 3).await;
    let mut last = None;
    while let Some(message) = watcher.next_within(Duration::from_secs(2)).await {
        if message.kind() == "presence" {
            last = Some(message.json()["data"]["online"].clone());
        }
    }
    assert_eq!(last, Some(serde_json::json!(3)));
}
