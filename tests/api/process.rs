//! The real binary as an operator runs it: SIGTERM under load, two
//! processes sharing one database file, and two starting on a new one.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend::fresh_database;
use crate::helpers::{
    paths, post_thread_at, register_at, spawn_writers, start_binary, start_binary_logged,
};
use crate::sse_client::SseStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_ends_streams_keeps_every_acknowledged_write_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (mut child, addr) = start_binary(&db).await;
    let client = reqwest::Client::new();
    let token = register_at(&client, addr, "writer").await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(SseStream::connect(addr, paths::EVENTS, &[]).await);
    }
    let (writers, acknowledged) = spawn_writers(&client, addr, &token, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    // The shell's own `kill`, so no procps package is needed.
    let signalled = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stoa exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    for writer in writers {
        writer.await.unwrap();
    }
    for stream in &mut streams {
        assert!(
            stream.ends_within(Duration::from_secs(2)).await,
            "every stream is ended"
        );
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());

    let (_restarted, addr) = start_binary(&db).await;
    let mut stream =
        SseStream::connect(addr, &format!("{}?lastEventId=0", paths::EVENTS), &[]).await;
    assert_eq!(stream.next().await.kind(), "connected");
    let mut replayed = Vec::new();
    while replayed.len() < acknowledged.len() {
        let event = stream.next_event().await.json();
        replayed.push(event["data"]["title"].as_str().unwrap().to_string());
    }
    let mut expected = acknowledged.clone();
    expected.sort();
    replayed.sort();
    assert_eq!(
        replayed, expected,
        "exactly the acknowledged writes are stored and replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_stream_every_write_in_the_same_order_with_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (_first, a) = start_binary(&db).await;
    let (_second, b) = start_binary(&db).await;
    let client = reqwest::Client::new();
    let token = register_at(&client, a, "alice").await;
    let mut on_a = SseStream::connect(a, paths::EVENTS, &[]).await;
    let mut on_b = SseStream::connect(b, paths::EVENTS, &[]).await;
    assert_eq!(on_a.next().await.kind(), "connected");
    assert_eq!(on_b.next().await.kind(), "connected");
    for n in 0..20 {
        let through = if n % 2 == 0 { a } else { b };
        assert_eq!(
            post_thread_at(&client, through, &token, &format!("t{n}")).await,
            StatusCode::CREATED
        );
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..20 {
        let (x, y) = (on_a.next_event().await, on_b.next_event().await);
        seen_a.push((x.id_number().unwrap(), x.json()["data"]["title"].clone()));
        seen_b.push((y.id_number().unwrap(), y.json()["data"]["title"].clone()));
    }
    assert_eq!(seen_a, seen_b);
    let titles: Vec<Value> = (0..20).map(|n| json!(format!("t{n}"))).collect();
    assert_eq!(
        seen_a.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        titles
    );
    assert_eq!(
        seen_a.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<i64>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_on_one_new_database_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let ((mut first, a, first_log), (mut second, b, second_log)) =
        tokio::join!(start_binary_logged(&db), start_binary_logged(&db));
    let applied: Vec<&String> = first_log
        .iter()
        .chain(&second_log)
        .filter(|line| line.contains("applied database migration"))
        .collect();
    let versions: Vec<&str> = applied
        .iter()
        .map(|line| {
            line.split("version=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    let mut unique = versions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        versions.len(),
        "a migration ran twice: {applied:?}"
    );
    assert_eq!(unique.first(), Some(&"1"), "{applied:?}");
    // Both serve the one forum.
    let client = reqwest::Client::new();
    let token = register_at(&client, a, "ada").await;
    assert_eq!(
        post_thread_at(&client, b, &token, "hello").await,
        StatusCode::CREATED
    );
    first.start_kill().unwrap();
    second.start_kill().unwrap();
}
