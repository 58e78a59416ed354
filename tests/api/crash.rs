//! The real binary, killed with SIGKILL while writes are in flight: every
//! write that was acknowledged survives, and its event replays.

use std::collections::HashSet;
use std::time::Duration;

use crate::backend::fresh_database;
use crate::helpers::{paths, register_at, spawn_writers, start_binary, url_encode};
use crate::sse_client::SseStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_loses_no_acknowledged_write_and_its_event_replays() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (mut child, addr) = start_binary(&db).await;
    let client = reqwest::Client::new();
    let token = register_at(&client, addr, "writer").await;

    let (writers, acknowledged) = spawn_writers(&client, addr, &token, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 10,
        "writes should have been acknowledged before the kill"
    );

    let (_restarted, addr) = start_binary(&db).await;
    let mut stored = HashSet::new();
    let mut before = String::new();
    loop {
        let page: serde_json::Value = client
            .get(format!("http://{addr}{}?limit=100{before}", paths::THREADS))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for thread in page["threads"].as_array().unwrap() {
            stored.insert(thread["title"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => before = format!("&before={}", url_encode(cursor)),
            None => break,
        }
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|t| !stored.contains(*t))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost in the crash: {lost:?}"
    );

    let mut stream =
        SseStream::connect(addr, &format!("{}?lastEventId=0", paths::EVENTS), &[]).await;
    assert_eq!(stream.next().await.kind(), "connected");
    let mut replayed = HashSet::new();
    while replayed.len() < stored.len() {
        let message = stream.next_event().await;
        let event = message.json();
        assert_eq!(event["type"], "new_thread");
        replayed.insert(event["data"]["title"].as_str().unwrap().to_string());
    }
    assert_eq!(replayed, stored, "every stored thread's event replays");
}
