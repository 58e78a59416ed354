//! The event stream's guarantees that need more than a scenario file:
//! concurrency at the replay/live seam, writes from another process, slow
//! readers, pruned positions, shutdown, and the wire format itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::backend::{hold_write_lock, insert_threads_from_outside};
use crate::expect::{assert_events, frame};
use crate::helpers::{paths, spawn_app, spawn_app_with, Page};
use crate::sse_client::SseStream;

#[tokio::test]
async fn the_stream_has_the_headers_browsers_and_proxies_need() {
    let app = spawn_app().await;
    let stream = app.open_events("", &[]).await;
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        stream.header("cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    assert_eq!(
        stream.header("access-control-allow-origin"),
        None,
        "no CORS unless configured"
    );
}

#[tokio::test]
async fn a_stream_on_its_own_connection_is_ended_by_closing_it() {
    let app = spawn_app().await;
    let stream = app.open_events("", &[]).await;
    // Served without hyper: no chunked framing, the body ends with the
    // connection (see src/server/streaming.rs).
    assert_eq!(stream.header("connection"), Some("close"));
    assert_eq!(stream.header("transfer-encoding"), None);
    assert!(stream.header("date").is_some());
}

#[tokio::test]
async fn a_client_that_sends_more_on_its_stream_connection_is_closed() {
    let app = spawn_app().await;
    let mut socket = app.send_events_request("", &[]).await;
    // Wait for the answer's first bytes, so the extra bytes below come
    // after the request, not with it.
    socket.readable().await.unwrap();
    socket
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", paths::HEALTHZ).as_bytes())
        .await
        .unwrap();
    let mut stream = SseStream::read_response(socket).await.expect("a stream");
    assert!(
        stream.ends_within(Duration::from_secs(5)).await,
        "the server should close a stream whose client sends more"
    );
    assert_eq!(app.stats().await["connections"], 0);
}

#[tokio::test]
async fn a_stream_on_a_connection_that_served_other_requests_works_the_same() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut reader = BufReader::new(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    reader
        .get_mut()
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", paths::HEALTHZ).as_bytes())
        .await
        .unwrap();
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut health = vec![0; length.expect("a sized health answer")];
    reader.read_exact(&mut health).await.unwrap();
    assert!(reader.buffer().is_empty());
    let mut socket = reader.into_inner();
    socket
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", paths::EVENTS).as_bytes())
        .await
        .unwrap();
    let mut stream = SseStream::read_response(socket)
        .await
        .expect("an event stream");
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.next().await.kind(), "connected");
    let thread = app.create_thread(&alice, "kept", "alive").await;
    assert_events!(
        stream.take_events(1).await,
        [frame(1, "new_thread", thread)]
    );
}

#[tokio::test]
async fn each_connection_gets_its_own_retry_and_connection_id() {
    let app = spawn_app().await;
    let mut ids = BTreeSet::new();
    let mut retries = BTreeSet::new();
    for _ in 0..8 {
        let mut stream = app.open_events("", &[]).await;
        let connected = stream.next().await.json();
        ids.insert(
            connected["data"]["connectionId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let retry = stream.retry.expect("retry: comes first");
        assert!(
            (1000..4000).contains(&retry),
            "retry {retry} ms out of range"
        );
        retries.insert(retry);
    }
    assert_eq!(ids.len(), 8, "connection ids are unique");
    assert!(
        retries.len() > 1,
        "retry is jittered per connection: {retries:?}"
    );
}

#[tokio::test]
async fn pings_arrive_on_the_configured_interval_without_an_id() {
    let app = spawn_app_with(|c| c.ping_interval = Duration::from_millis(150)).await;
    let mut stream = app.events("", &[]).await;
    let mut pings = 0;
    while pings < 2 {
        let message = stream.next().await;
        if message.kind() == "presence" {
            continue;
        }
        assert_eq!(message.kind(), "ping");
        assert_eq!(message.id, None);
        assert_eq!(message.json()["data"], serde_json::json!({}));
        pings += 1;
    }
}

/// Clients connect from snapshots while threads are being written as fast
/// as possible: each must see exactly the events after its snapshot, in
/// order, with no gap and no duplicate at the seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seam_between_replay_and_live_loses_and_repeats_nothing_under_concurrent_writes() {
    const WRITES: i64 = 150;
    let app = Arc::new(spawn_app().await);
    let alice = app.register("alice").await;
    let writer = {
        let (app, alice) = (app.clone(), alice.clone());
        tokio::spawn(async move {
            for n in 0..WRITES {
                app.create_thread(&alice, &format!("t{n}"), "c").await;
            }
        })
    };
    let mut clients = Vec::new();
    while !writer.is_finished() && clients.len() < 12 {
        let snapshot = app.threads(None, Page::default()).await["lastEventId"]
            .as_i64()
            .unwrap();
        let stream = app.events(&format!("?lastEventId={snapshot}"), &[]).await;
        clients.push((snapshot, stream));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.unwrap();
    assert!(clients.len() >= 3, "clients should join while writes go on");
    for (snapshot, mut stream) in clients {
        // Thread `t{n}` is event n + 1.
        let expected: Vec<_> = (snapshot + 1..=WRITES)
            .map(|id| {
                let title = format!("t{}", id - 1);
                frame(id, "new_thread", thread_titled(&title, &alice.id))
            })
            .collect();
        let mut received = stream.take_events(expected.len()).await;
        // And nothing after them.
        received.extend(stream.drain_events(Duration::from_millis(100)).await);
        assert_events!(received, expected, "client from {snapshot}");
    }
}

/// The data of a `new_thread` event for a thread `title` by `author`, any
/// id and time, as the tests in this file create them.
fn thread_titled(title: &str, author: &str) -> serde_json::Value {
    json!({
        "id": "$any",
        "title": title,
        "content": "$any",
        "contentHtml": "$any",
        "author": {"id": author, "username": "$any"},
        "createdAt": "$timestamp",
        "likeCount": 0,
        "commentCount": 0,
        "likedByMe": false,
        "editedAt": null,
        "locked": false,
        "pinned": false,
        "lastActivityAt": "$timestamp",
    })
}

/// A row written by another process (here, a separate SQLite connection, as
/// the sqlite3 shell would) is noticed by polling and streamed.
#[tokio::test]
async fn a_write_from_another_process_reaches_open_streams() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    let row = (
        "from-the-shell".to_string(),
        alice.id.clone(),
        "Admin post".to_string(),
        "hi".to_string(),
    );
    insert_threads_from_outside(&app.config.db, [row]).await;
    let data = json!({
        "id": "from-the-shell",
        "title": "Admin post",
        "content": "hi",
        // Written from outside, no HTML was rendered: shown as text.
        "contentHtml": null,
        "author": {"id": alice.id, "username": "alice"},
        "createdAt": "$timestamp",
        "likeCount": 0,
        "commentCount": 0,
        "likedByMe": false,
        "editedAt": null,
        "locked": false,
        "pinned": false,
        "lastActivityAt": "$timestamp",
    });
    assert_events!(stream.take_events(1).await, [frame(1, "new_thread", data)]);
}

/// One client stops reading entirely while thousands of events go out: the
/// others keep receiving everything, and when the stalled one reads again
/// it catches up, in order, from the outbox, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_reader_neither_blocks_others_nor_loses_events() {
    const EVENTS: i64 = 14_000;
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    // Sends its request, then reads nothing until the end of the test.
    let stalled = app.send_events_request("", &[]).await;
    let mut healthy = app.events("", &[]).await;
    // Many events, big enough to fill the stalled socket's buffers and push
    // it out of the in-memory window.
    let author = alice.id.clone();
    let padding = "x".repeat(4000);
    let rows = (0..EVENTS).map(move |n| {
        let id = format!("t{n:05}");
        (id, author.clone(), "t".to_string(), padding.clone())
    });
    insert_threads_from_outside(&app.config.db, rows).await;
    expect_threads_in_order(&mut healthy, EVENTS, "the healthy reader").await;
    let stats = app.stats().await;
    assert_eq!(stats["connections"], 2, "the stalled stream is still open");
    // Now the stalled reader reads: everything, in order, exactly once.
    let mut stalled = SseStream::read_response(stalled).await.unwrap();
    assert_eq!(stalled.next().await.kind(), "connected");
    expect_threads_in_order(&mut stalled, EVENTS, "the stalled reader").await;
    let extra = stalled.drain_events(Duration::from_millis(100)).await;
    assert_events!(extra, [], "the stalled reader, after all {EVENTS}");
    let catch_ups = app.metric("stoa_outbox_catch_ups_total").await;
    assert!(
        catch_ups > 0.0,
        "the stalled reader should have fallen behind the in-memory window: {catch_ups} catch-ups"
    );
}

/// Events 1 to `count`, the threads `t00000`… written above, compared a
/// batch at a time so thousands of 4 KB events need not be held at once.
async fn expect_threads_in_order(stream: &mut SseStream, count: i64, whose: &str) {
    const BATCH: i64 = 500;
    for start in (1..=count).step_by(BATCH as usize) {
        let ids = start..=(start + BATCH - 1).min(count);
        let expected: Vec<_> = ids
            .map(|id| frame(id, "new_thread", json!({"id": format!("t{:05}", id - 1), "title": "t", "content": "$any", "contentHtml": null, "author": "$any", "createdAt": "$timestamp", "likeCount": 0, "commentCount": 0, "likedByMe": false, "editedAt": null, "locked": false, "pinned": false, "lastActivityAt": "$timestamp"})))
            .collect();
        let received = stream.take_events(expected.len()).await;
        assert_events!(received, expected, "{whose}");
    }
}

#[tokio::test]
async fn after_a_restart_recent_positions_are_replayed_from_memory() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for n in 0..5 {
        app.create_thread(&alice, &format!("before {n}"), "news")
            .await;
    }
    let app = app.restart().await;
    // A client that had seen event 2 reconnects, as every open page does
    // after a restart.
    let mut stream = app.events("", &[("Last-Event-ID", "2")]).await;
    let replayed: Vec<_> = (3..=5)
        .map(|id| {
            let title = format!("before {}", id - 1);
            frame(id, "new_thread", thread_titled(&title, &alice.id))
        })
        .collect();
    assert_events!(stream.take_events(3).await, replayed);
    app.create_thread(&alice, "after", "news").await;
    assert_events!(
        stream.take_events(1).await,
        [frame(6, "new_thread", thread_titled("after", &alice.id))]
    );
    assert_eq!(
        app.metric("stoa_outbox_catch_ups_total").await,
        0.0,
        "the replay should come from the hub's window, not the table"
    );
}

#[tokio::test]
async fn a_position_whose_events_were_pruned_gets_resync() {
    let app = spawn_app_with(|c| c.retention = Duration::from_millis(500)).await;
    let alice = app.register("alice").await;
    app.create_thread(&alice, "old", "news").await;
    // Pruning runs every second at this retention.
    let mut pruned = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.stats().await["outbox"]["earliestId"].is_null() {
            pruned = true;
            break;
        }
    }
    assert!(pruned, "the old event should have been pruned");
    assert_eq!(
        app.stats().await["outbox"]["latestId"],
        1,
        "the newest id is remembered"
    );
    let mut stream = app.events("?lastEventId=0", &[]).await;
    assert_events!(
        stream.take_events(1).await,
        [frame(None, "resync", json!({"lastEventId": 1}))]
    );
    // The id is never handed out again.
    app.create_thread(&alice, "new", "news").await;
    assert_events!(
        stream.take_events(1).await,
        [frame(2, "new_thread", thread_titled("new", &alice.id))]
    );
}

#[tokio::test]
async fn shutting_down_ends_every_stream() {
    let mut app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(app.events("", &[]).await);
    }
    app.stop().await;
    for stream in &mut streams {
        assert!(
            stream.ends_within(Duration::from_secs(5)).await,
            "stream should end on shutdown"
        );
    }
}

#[tokio::test]
async fn a_connection_that_has_sent_nothing_does_not_hold_up_shutdown() {
    let mut app = spawn_app().await; // header timeout 15 s, longer than the drain
    let _silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let _stream = app.events("", &[]).await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a connection with no request",
        started.elapsed()
    );
}

#[tokio::test]
async fn stats_count_open_streams_and_notice_disconnects() {
    let app = spawn_app().await;
    let first = app.events("", &[]).await;
    let _second = app.events("", &[]).await;
    assert_eq!(app.stats().await["connections"], 2);
    drop(first);
    let mut closed = false;
    for _ in 0..100 {
        if app.stats().await["connections"] == 1 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        closed,
        "a closed connection should be noticed without waiting for a ping"
    );
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_does_not_disturb_the_stream() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n", paths::EVENTS).as_bytes())
        .await
        .unwrap();
    let mut stream = app.events("", &[]).await;
    app.create_thread(&alice, "still", "live").await;
    assert_events!(
        stream.take_events(1).await,
        [frame(1, "new_thread", thread_titled("still", &alice.id))]
    );
}

#[tokio::test]
async fn presence_announces_how_many_are_online() {
    let app = spawn_app().await;
    let mut first = app.events("", &[]).await;
    let _second = app.events("", &[]).await;
    let mut online = None;
    for _ in 0..5 {
        let message = first.next().await;
        if message.kind() == "presence" {
            assert_eq!(message.id, None);
            online = message.json()["data"]["online"].as_i64();
            if online == Some(2) {
                break;
            }
        }
    }
    assert_eq!(online, Some(2));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A stream request is read by stoa itself, not hyper: the same limit.
    let mut slow_stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow_stream
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n", paths::EVENTS).as_bytes())
        .await
        .unwrap();
    for socket in [&mut silent, &mut slow, &mut slow_stream] {
        let mut buffer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut buffer)).await;
        assert!(
            closed.is_ok(),
            "the server should close a connection that sends no full request"
        );
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let app = spawn_app().await;
    let huge = "x".repeat(40 * 1024);
    for path in [paths::THREADS, paths::EVENTS] {
        let response = reqwest::Client::new()
            .get(app.url(path))
            .header("X-Padding", &huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 431, "{path}");
    }
    assert_eq!(app.try_healthz().await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_new_stream_is_told_the_online_count_at_once() {
    let app = spawn_app().await;
    let _first = app.events("", &[]).await;
    let mut second = app.events("", &[]).await;
    let presence = second.next().await;
    assert_eq!(presence.kind(), "presence");
    assert_eq!(presence.json()["data"]["online"], 2);
}

/// Another process holds the write lock past the busy timeout: writes are
/// refused with 503 and `Retry-After` (not left hanging, not a 500), reads
/// go on (WAL), and once the lock is released writes and their events flow
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_held_locked_refuses_writes_with_503_and_recovers_once_released() {
    let app = spawn_app_with(|c| c.busy_timeout = Duration::from_millis(200)).await;
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    assert_eq!(app.metric("stoa_database_busy_total").await, 0.0);

    let lock = hold_write_lock(&app.config.db).await;
    let refused = app.try_create_thread(&alice, "blocked", "c").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    let retry_after = refused.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After should be a number of seconds, got {retry_after:?}"
    );
    assert_eq!(
        refused.body["error"]["code"], "unavailable",
        "{}",
        refused.text
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        refused.text
    );
    let listed = app.try_threads(None, Page::default()).await;
    assert_eq!(
        listed.status,
        StatusCode::OK,
        "reads go on: {}",
        listed.text
    );
    assert_eq!(listed.body["threads"], json!([]));

    lock.release().await;
    let thread = app.create_thread(&alice, "after", "c").await;
    assert_events!(
        stream.take_events(1).await,
        [frame(1, "new_thread", thread)]
    );
    // Counted by this server alone, once for the refused write.
    assert_eq!(app.metric("stoa_database_busy_total").await, 1.0);
}

#[tokio::test]
async fn no_stream_gets_a_ping_sooner_than_half_an_interval_after_it_opens() {
    let interval = Duration::from_millis(600);
    let app = spawn_app_with(|c| c.ping_interval = interval).await;
    // Streams opened at phases spread over one interval of the shared
    // ping timer: without the rule, some would get a ping at once.
    let mut opened = Vec::new();
    for _ in 0..6 {
        opened.push((tokio::time::Instant::now(), app.events("", &[]).await));
        tokio::time::sleep(interval / 6).await;
    }
    for (at, mut stream) in opened {
        loop {
            let message = stream.next().await;
            if message.kind() == "ping" {
                let after = at.elapsed();
                assert!(after >= interval / 2, "a ping {after:?} after opening");
                assert!(after <= interval * 2, "pings still come: {after:?}");
                break;
            }
        }
    }
}
