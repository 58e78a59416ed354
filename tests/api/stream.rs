//! The event stream's guarantees that need more than a scenario file:
//! concurrency at the replay/live seam, writes from another process, slow
//! readers, pruned positions, shutdown, and the wire format itself.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::helpers::{spawn_app, spawn_app_with};
use crate::sse_client::SseStream;

#[tokio::test]
async fn the_stream_has_the_headers_browsers_and_proxies_need() {
    let app = spawn_app().await;
    let stream = SseStream::connect(app.addr, "/api/community/events", &[]).await;
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
    let stream = SseStream::connect(app.addr, "/api/community/events", &[]).await;
    // Served without hyper: no chunked framing, the body ends with the
    // connection (see src/server/streaming.rs).
    assert_eq!(stream.header("connection"), Some("close"));
    assert_eq!(stream.header("transfer-encoding"), None);
    assert!(stream.header("date").is_some());
}

#[tokio::test]
async fn a_client_that_sends_more_on_its_stream_connection_is_closed() {
    let app = spawn_app().await;
    let mut socket = SseStream::send_request(app.addr, "/api/community/events", &[]).await;
    // Wait for the answer's first bytes, so the extra bytes below come
    // after the request, not with it.
    socket.readable().await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
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
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
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
        .write_all(b"GET /api/community/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut stream = SseStream::read_response(socket)
        .await
        .expect("an event stream");
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.next().await.kind(), "connected");
    let thread = app.create_thread(&alice, "kept", "alive").await;
    let event = stream.next_event().await;
    assert_eq!(event.kind(), "new_thread");
    assert_eq!(event.json()["data"]["id"], thread["id"]);
}

#[tokio::test]
async fn each_connection_gets_its_own_retry_and_connection_id() {
    let app = spawn_app().await;
    let mut ids = BTreeSet::new();
    let mut retries = BTreeSet::new();
    for _ in 0..8 {
        let mut stream = SseStream::connect(app.addr, "/api/community/events", &[]).await;
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
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let writer = {
        let app_addr = app.addr;
        let token = alice.token.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..WRITES {
                let response = client
                    .post(format!("http://{app_addr}/api/community/threads"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"title": format!("t{n}"), "content": "c"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    let mut clients = Vec::new();
    while !writer.is_finished() && clients.len() < 12 {
        let snapshot = app.threads(None).await["lastEventId"].as_i64().unwrap();
        let stream = app.events(&format!("?lastEventId={snapshot}"), &[]).await;
        clients.push((snapshot, stream));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.unwrap();
    assert!(clients.len() >= 3, "clients should join while writes go on");
    for (snapshot, mut stream) in clients {
        let mut expected = snapshot + 1;
        while expected <= WRITES {
            let message = stream.next_event().await;
            assert_eq!(
                message.id_number(),
                Some(expected),
                "client from {snapshot}: {message:?}"
            );
            expected += 1;
        }
        let extra = stream.drain_events(Duration::from_millis(100)).await;
        assert!(
            extra.is_empty(),
            "client from {snapshot} got extra events: {extra:?}"
        );
    }
}

/// A row written by another process (here, a separate SQLite connection, as
/// the sqlite3 shell would) is noticed by polling and streamed.
#[tokio::test]
async fn a_write_from_another_process_reaches_open_streams() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    let db_path = app.config.db.clone();
    let user_id = alice.id.clone();
    tokio::task::spawn_blocking(move || {
        let conn = crate::helpers::outside_connection(&db_path);
        conn.execute(
            "INSERT INTO threads (id, author_id, title, content) VALUES ('from-the-shell', ?1, 'Admin post', 'hi')",
            [user_id],
        )
        .unwrap();
    })
    .await
    .unwrap();
    let event = stream.next_event().await;
    assert_eq!(event.id_number(), Some(1));
    let data = &event.json()["data"];
    assert_eq!(data["id"], "from-the-shell");
    assert_eq!(data["title"], "Admin post");
    assert_eq!(data["author"]["username"], "alice");
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
    let stalled = SseStream::send_request(app.addr, "/api/community/events", &[]).await;
    let mut healthy = app.events("", &[]).await;
    // Many events, big enough to fill the stalled socket's buffers and push
    // it out of the in-memory window.
    let db_path = app.config.db.clone();
    let author = alice.id.clone();
    let writing = tokio::task::spawn_blocking(move || {
        let mut conn = crate::helpers::outside_connection(&db_path);
        let tx = conn.transaction().unwrap();
        let padding = "x".repeat(4000);
        for n in 0..EVENTS {
            tx.execute(
                "INSERT INTO threads (id, author_id, title, content) VALUES (?1, ?2, 't', ?3)",
                (format!("t{n:05}"), &author, &padding),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    });
    writing.await.unwrap();
    for expected in 1..=EVENTS {
        let message = healthy.next_event().await;
        assert_eq!(message.id_number(), Some(expected));
    }
    let stats = app.stats().await;
    assert_eq!(stats["connections"], 2, "the stalled stream is still open");
    // Now the stalled reader reads: everything, in order, exactly once.
    let mut stalled = SseStream::read_response(stalled).await.unwrap();
    assert_eq!(stalled.next().await.kind(), "connected");
    for expected in 1..=EVENTS {
        let message = stalled.next_event().await;
        assert_eq!(message.id_number(), Some(expected));
    }
    let extra = stalled.drain_events(Duration::from_millis(100)).await;
    assert!(extra.is_empty());
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("stoa_outbox_catch_ups_total 0"),
        "the stalled reader should have fallen behind the in-memory window: {metrics}"
    );
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
    for expected in 3..=5 {
        assert_eq!(stream.next_event().await.id_number(), Some(expected));
    }
    app.create_thread(&alice, "after", "news").await;
    assert_eq!(stream.next_event().await.id_number(), Some(6));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("stoa_outbox_catch_ups_total 0"),
        "the replay should come from the hub's window, not the table: {metrics}"
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
    let resync = stream.next_event().await;
    assert_eq!(resync.kind(), "resync");
    assert_eq!(resync.id, None);
    assert_eq!(resync.json()["data"]["lastEventId"], 1);
    // The id is never handed out again.
    app.create_thread(&alice, "new", "news").await;
    assert_eq!(stream.next_event().await.id_number(), Some(2));
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
        .write_all(b"GET /api/community/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut stream = app.events("", &[]).await;
    app.create_thread(&alice, "still", "live").await;
    assert_eq!(stream.next_event().await.kind(), "new_thread");
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
        .write_all(b"GET /api/community/events HTTP/1.1\r\nHost: x\r\n")
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
    for path in ["/api/community/threads", "/api/community/events"] {
        let response = reqwest::Client::new()
            .get(app.url(path))
            .header("X-Padding", &huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 431, "{path}");
    }
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
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
