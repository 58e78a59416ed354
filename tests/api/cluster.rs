//! Several nodes behind nginx, on one PostgreSQL database: the cluster
//! `scripts/cluster.sh start DIR` runs (3 nodes, nginx with the shipped
//! deploy/nginx-cluster.conf), named by `STOA_TEST_CLUSTER=DIR`. The tests
//! kill and restart its nodes, so they run one at a time
//! (`--test-threads=1`), and each leaves every node running.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use stoa::config::Database;
use tokio::time::Instant;

use crate::backend::query_outside;
use crate::helpers::{paths, Session, TestApp};
use crate::sse_client::{Next, SseStream};

/// The running cluster, as `scripts/cluster.sh` described it.
struct Cluster {
    dir: String,
    /// nginx.
    front: SocketAddr,
    nodes: Vec<SocketAddr>,
    db: Database,
}

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

impl Cluster {
    fn from_env() -> Cluster {
        let dir = std::env::var("STOA_TEST_CLUSTER").expect("STOA_TEST_CLUSTER names the cluster");
        let text = std::fs::read_to_string(format!("{dir}/cluster.env")).expect("cluster.env");
        let settings: BTreeMap<&str, String> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key, value.trim_matches('"').to_string()))
            .collect();
        Cluster {
            dir,
            front: address(&settings["STOA_CLUSTER_URL"]),
            nodes: settings["STOA_CLUSTER_NODES"]
                .split_whitespace()
                .map(address)
                .collect(),
            db: Database::Postgres(settings["STOA_CLUSTER_DB"].clone()),
        }
    }

    fn front(&self) -> TestApp {
        TestApp::remote(self.front, self.db.clone())
    }

    fn node(&self, n: usize) -> TestApp {
        TestApp::remote(self.nodes[n - 1], self.db.clone())
    }

    async fn script(&self, args: &[&str]) {
        let script = format!("{}/scripts/cluster.sh", env!("CARGO_MANIFEST_DIR"));
        let status = tokio::process::Command::new("bash")
            .arg(script)
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "cluster.sh {args:?}");
    }

    async fn kill(&self, n: usize) {
        self.script(&["kill", &n.to_string()]).await;
    }

    async fn term(&self, n: usize) {
        self.script(&["term", &n.to_string()]).await;
    }

    /// Starts node `n` again, with `binary` if given, and waits until it
    /// answers.
    async fn start(&self, n: usize, binary: Option<&str>) {
        let mut args = vec!["node".to_string(), n.to_string()];
        args.extend(binary.map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.script(&args).await;
        assert_eq!(self.node(n).try_healthz().await.status, StatusCode::OK);
    }

    async fn outbox(&self) -> Vec<(i64, Option<String>)> {
        query_outside(&self.db, "SELECT id, recipient_id FROM outbox ORDER BY id")
            .await
            .into_iter()
            .map(|row| (row[0].as_deref().unwrap().parse().unwrap(), row[1].clone()))
            .collect()
    }
}

/// A name no earlier test run used.
fn unique(name: &str) -> String {
    format!(
        "{name}{}",
        rand::thread_rng().gen_range(0..1_000_000_000u32)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_any_node_reaches_every_node_in_the_same_order() {
    let cluster = Cluster::from_env();
    let front = cluster.front();
    let alice = front.register(&unique("alice")).await;
    let start = cluster.outbox().await.last().map_or(0, |(id, _)| *id);
    let query = format!("?lastEventId={start}");
    let mut streams = vec![front.events(&query, &[]).await];
    for n in 1..=cluster.nodes.len() {
        streams.push(cluster.node(n).events(&query, &[]).await);
    }
    for round in 0..5 {
        front
            .create_thread(&alice, &format!("through nginx {round}"), "c")
            .await;
        for n in 1..=cluster.nodes.len() {
            let thread = cluster
                .node(n)
                .create_thread(&alice, &format!("node {n}, {round}"), "c")
                .await;
            front
                .comment(&alice, thread["id"].as_str().unwrap(), "a reply")
                .await;
        }
    }
    let ids: Vec<i64> = cluster
        .outbox()
        .await
        .into_iter()
        .filter(|(id, recipient)| *id > start && recipient.is_none())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 5 * (1 + 2 * cluster.nodes.len()));
    let mut seen = Vec::new();
    for stream in &mut streams {
        let events = stream.take_events(ids.len()).await;
        let got: Vec<i64> = events.iter().map(|e| e.id_number().unwrap()).collect();
        assert_eq!(got, ids, "every node sends the outbox, in order");
        seen.push(events.iter().map(|e| e.data.clone()).collect::<Vec<_>>());
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the same bytes from every node"
    );
}

/// What one reader received, and how long its reconnections took.
#[derive(Default)]
struct History {
    ids: Vec<i64>,
    reconnects: usize,
    longest_away: Duration,
}

/// A reader through nginx, as a browser tab: it starts from `from`, drops
/// its stream now and then and resumes by its last id, and reconnects
/// after 250–750 ms when the stream ends (its node died), until `stop`.
async fn reader(
    front: SocketAddr,
    who: Option<Session>,
    from: i64,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let auth = who.map(|s| format!("Bearer {}", s.token));
    let mut last = from.to_string();
    let mut gone = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut headers = vec![("Last-Event-ID", last.as_str())];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let Ok(mut stream) = SseStream::try_connect(front, paths::EVENTS, &headers).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        {
            let mut history = history.lock().unwrap();
            history.reconnects += 1;
            history.longest_away = history.longest_away.max(gone.elapsed());
        }
        let lifetime = Duration::from_millis(rand::thread_rng().gen_range(1000..4000));
        let drop_at = Instant::now() + lifetime;
        while !stop.load(Ordering::Relaxed) {
            let left = drop_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match stream
                .next_or_quiet(left.min(Duration::from_millis(500)))
                .await
            {
                Next::Message(message) => {
                    if let Some(id) = message.id_number() {
                        history.lock().unwrap().ids.push(id);
                    }
                }
                Next::Quiet => {}
                Next::Ended => break,
            }
        }
        if !stream.last_event_id.is_empty() {
            last = stream.last_event_id.clone();
        }
        drop(stream);
        gone = Instant::now();
        let delay = Duration::from_millis(rand::thread_rng().gen_range(250..750));
        tokio::time::sleep(delay).await;
    }
}

/// Posts threads and comments through nginx at about 10 writes/s until
/// `stop`; returns what was acknowledged: (thread id, title) of threads
/// and comment ids.
async fn writer(
    front: TestApp,
    who: Session,
    name: String,
    others: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, Vec<String>, usize) {
    let (mut threads, mut comments, mut failed) = (Vec::new(), Vec::new(), 0);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let answer = if n % 2 == 1 || others.is_empty() {
            front
                .try_create_thread(&who, &format!("{name} {n}"), "c")
                .await
        } else {
            let target = &others[n % others.len()];
            front
                .try_comment(&who, target, &format!("{name} reply {n}"))
                .await
        };
        match answer.status {
            StatusCode::CREATED if answer.body["thread"].is_object() => {
                threads.push(answer.body["thread"]["id"].as_str().unwrap().to_string())
            }
            StatusCode::CREATED => {
                comments.push(answer.body["comment"]["id"].as_str().unwrap().to_string())
            }
            // The node behind nginx died mid-request, or the database was
            // briefly unreachable: not acknowledged, so no promise made.
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::NOT_FOUND => failed += 1,
            other => panic!("{name}: {other} {}", answer.text),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (threads, comments, failed)
}

/// Every reader's history against the outbox: each public event after its
/// start and each of its own private ones, once, in order, and nobody
/// else's private ones.
fn check_histories(
    outbox: &[(i64, Option<String>)],
    from: i64,
    readers: &[(Option<String>, Arc<Mutex<History>>)],
) {
    for (user, history) in readers {
        let history = history.lock().unwrap();
        let expected: Vec<i64> = outbox
            .iter()
            .filter(|(id, recipient)| {
                *id > from && (recipient.is_none() || recipient.as_ref() == user.as_ref())
            })
            .map(|(id, _)| *id)
            .collect();
        let got = &history.ids;
        let duplicates = got.len() - got.iter().collect::<BTreeSet<_>>().len();
        let reorders = got.windows(2).filter(|w| w[0] >= w[1]).count();
        let private_of_others = got
            .iter()
            .filter(|id| {
                outbox
                    .iter()
                    .any(|(i, r)| i == *id && r.is_some() && r.as_ref() != user.as_ref())
            })
            .count();
        let missing = expected.iter().filter(|id| !got.contains(id)).count();
        assert_eq!(
            (missing, duplicates, reorders, private_of_others),
            (0, 0, 0, 0),
            "reader of {user:?}: gaps, duplicates, reorders, others' private events"
        );
    }
}

/// 3 nodes, 6 writers and 150 readers through nginx, readers dropping and
/// resuming by Last-Event-ID; one node is killed with SIGKILL, then
/// another, each started again after a while. Every reader ends up with
/// exactly the outbox, and every acknowledged write has exactly one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_nodes_loses_repeats_and_reorders_nothing() {
    let cluster = Cluster::from_env();
    let front = cluster.front();
    let mut sessions = Vec::new();
    let mut first_threads = Vec::new();
    for w in 0..6 {
        let session = front.register(&unique(&format!("writer{w}"))).await;
        let thread = front.create_thread(&session, "first", "c").await;
        first_threads.push(thread["id"].as_str().unwrap().to_string());
        sessions.push(session);
    }
    let from = cluster.outbox().await.last().map_or(0, |(id, _)| *id);

    let stop_readers = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut reading = Vec::new();
    for r in 0..150 {
        // A third of them signed in, as the writers, so each gets the
        // private replies to its own threads (and must get nobody else's).
        let who = (r % 3 == 0).then(|| sessions[r % 6].clone());
        let history = Arc::new(Mutex::new(History::default()));
        readers.push((who.as_ref().map(|s| s.id.clone()), history.clone()));
        reading.push(tokio::spawn(reader(
            cluster.front,
            who,
            from,
            stop_readers.clone(),
            history,
        )));
    }
    let stop_writers = Arc::new(AtomicBool::new(false));
    let writing: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(w, session)| {
            let others: Vec<String> = first_threads
                .iter()
                .enumerate()
                .filter(|(t, _)| *t != w)
                .map(|(_, id)| id.clone())
                .collect();
            tokio::spawn(writer(
                cluster.front(),
                session.clone(),
                format!("w{w}"),
                others,
                stop_writers.clone(),
            ))
        })
        .collect();

    let pause = |seconds| tokio::time::sleep(Duration::from_secs(seconds));
    pause(3).await;
    cluster.kill(1).await;
    pause(4).await;
    cluster.start(1, None).await;
    pause(3).await;
    cluster.kill(2).await;
    pause(4).await;
    cluster.start(2, None).await;
    pause(3).await;
    stop_writers.store(true, Ordering::Relaxed);
    let (mut threads, mut comments, mut failed) = (Vec::new(), Vec::new(), 0);
    for task in writing {
        let (t, c, f) = task.await.unwrap();
        threads.extend(t);
        comments.extend(c);
        failed += f;
    }

    // Let every reader reach the end of what it may see, then stop them.
    let outbox = cluster.outbox().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (user, history) in &readers {
        let last_for_it = outbox
            .iter()
            .filter(|(_, r)| r.is_none() || r.as_ref() == user.as_ref())
            .map(|(id, _)| *id)
            .max()
            .unwrap();
        while history.lock().unwrap().ids.last() < Some(&last_for_it) {
            assert!(Instant::now() < deadline, "a reader never caught up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop_readers.store(true, Ordering::Relaxed);
    for task in reading {
        task.await.unwrap();
    }
    check_histories(&outbox, from, &readers);

    // Every acknowledged write is stored with exactly one event.
    let events = query_outside(
        &cluster.db,
        &format!(
            "SELECT type, payload::json->>'id', payload::json->'comment'->>'id' FROM outbox
             WHERE id > {from} AND type IN ('new_thread', 'new_comment')"
        ),
    )
    .await;
    let count = |kind: &str, column: usize, id: &str| {
        events
            .iter()
            .filter(|row| row[0].as_deref() == Some(kind) && row[column].as_deref() == Some(id))
            .count()
    };
    for id in &threads {
        assert_eq!(count("new_thread", 1, id), 1, "thread {id}");
    }
    for id in &comments {
        assert_eq!(count("new_comment", 2, id), 1, "comment {id}");
    }
    let longest_away = readers
        .iter()
        .map(|(_, h)| h.lock().unwrap().longest_away)
        .max()
        .unwrap();
    println!(
        "{} threads and {} comments acknowledged, {failed} writes refused while nodes died; \
         {} events; a reader was away at most {longest_away:?} at a time",
        threads.len(),
        comments.len(),
        outbox.len()
    );
    assert!(threads.len() > 100, "the writers kept writing");
    // A reader's reconnect (250–750 ms, then connecting) lands on a live
    // node at once: nginx skips the dead one.
    assert!(
        longest_away < Duration::from_secs(5),
        "readers of a dead node are back within their reconnect time: {longest_away:?}"
    );
}

/// Every node, one at a time, stopped with SIGTERM under load and started
/// again as the next build, which brings one more (no-op) migration: the
/// first node up migrates once, the others find it done, no request fails
/// but those in flight on the stopping node (each succeeds when the client
/// retries it), and readers resume without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_with_a_migration_fails_only_what_was_in_flight() {
    let cluster = Cluster::from_env();
    let next = std::fs::read_to_string(format!("{}/cluster.env", cluster.dir))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("STOA_CLUSTER_NEXT_BIN="))
        .map(str::to_string)
        .filter(|bin| !bin.is_empty())
        .expect("STOA_NEXT_BIN: a build with --features test-migration, given to cluster.sh start");
    let version = || async {
        query_outside(&cluster.db, "SELECT max(version) FROM schema_migrations").await[0][0]
            .clone()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let before = version().await;
    let front = cluster.front();
    let mut sessions = Vec::new();
    for w in 0..4 {
        sessions.push(front.register(&unique(&format!("roller{w}"))).await);
    }
    let from = cluster.outbox().await.last().map_or(0, |(id, _)| *id);
    let (stop_readers, stop_writers) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut readers = Vec::new();
    let mut reading = Vec::new();
    for _ in 0..30 {
        let history = Arc::new(Mutex::new(History::default()));
        readers.push((None, history.clone()));
        reading.push(tokio::spawn(reader(
            cluster.front,
            None,
            from,
            stop_readers.clone(),
            history,
        )));
    }
    let writing: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(w, session)| {
            let (front, stop) = (cluster.front(), stop_writers.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut retried) = (Vec::new(), 0);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let title = format!("roller{w} {n}");
                    let mut answer = front.try_create_thread(&session, &title, "c").await;
                    if answer.status != StatusCode::CREATED {
                        retried += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        answer = front.try_create_thread(&session, &title, "c").await;
                    }
                    assert_eq!(
                        answer.status,
                        StatusCode::CREATED,
                        "{title}, retried: {}",
                        answer.text
                    );
                    acknowledged.push(answer.body["thread"]["id"].as_str().unwrap().to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (acknowledged, retried)
            })
        })
        .collect();

    // A node at a time, the next once nginx counts the last one as up
    // again (its fail_timeout).
    for n in 1..=cluster.nodes.len() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.term(n).await;
        cluster.start(n, Some(&next)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut acknowledged, mut retried) = (Vec::new(), 0);
    stop_writers.store(true, Ordering::Relaxed);
    for task in writing {
        let (a, r) = task.await.unwrap();
        acknowledged.extend(a);
        retried += r;
    }
    assert_eq!(
        version().await,
        before + 1,
        "the new migration, applied once"
    );
    // At most the requests in flight on each stopping node: one per writer.
    assert!(
        retried <= 4 * cluster.nodes.len(),
        "{retried} writes needed a retry"
    );

    let outbox = cluster.outbox().await;
    let last = outbox.last().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, history) in &readers {
        while history.lock().unwrap().ids.last() < Some(&last) {
            if Instant::now() > deadline {
                let history = history.lock().unwrap();
                panic!(
                    "a reader never caught up to {last}: at {:?} after {} connections",
                    history.ids.last(),
                    history.reconnects
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop_readers.store(true, Ordering::Relaxed);
    for task in reading {
        task.await.unwrap();
    }
    check_histories(&outbox, from, &readers);
    let stored: BTreeSet<String> = query_outside(
        &cluster.db,
        &format!(
            "SELECT payload::json->>'id' FROM outbox WHERE id > {from} AND type = 'new_thread'"
        ),
    )
    .await
    .into_iter()
    .map(|row| row[0].clone().unwrap())
    .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "acknowledged thread {id} has its event"
        );
    }
    println!(
        "{} writes acknowledged, {retried} retried during the restarts",
        acknowledged.len()
    );
}

#[tokio::test]
async fn a_ban_through_one_node_closes_the_users_streams_on_every_node() {
    let cluster = Cluster::from_env();
    let front = cluster.front();
    let admin_name = unique("admin");
    let admin = front.register(&admin_name).await;
    let banned = front.register(&unique("banned")).await;
    crate::backend::execute_outside(
        &cluster.db,
        &format!("UPDATE users SET role = 'admin' WHERE id = '{}'", admin.id),
    )
    .await;
    let bearer = format!("Bearer {}", banned.token);
    let mut streams = Vec::new();
    for n in 1..=cluster.nodes.len() {
        streams.push(
            cluster
                .node(n)
                .events("", &[("Authorization", bearer.as_str())])
                .await,
        );
    }
    let answer = cluster
        .node(1)
        .try_ban(
            &admin,
            &banned.id,
            serde_json::json!({"reason": "cluster test"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
    for (n, stream) in streams.iter_mut().enumerate() {
        let event = stream.next_event().await;
        assert_eq!(event.kind(), "banned", "node {}", n + 1);
        assert!(
            stream.ends_within(Duration::from_secs(5)).await,
            "node {} closes the banned user's stream",
            n + 1
        );
    }
    let refused = cluster
        .node(cluster.nodes.len())
        .try_create_thread(&banned, "after the ban", "x")
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "banned");
}
