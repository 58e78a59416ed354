//! The real binary as an operator runs it: SIGTERM under load, two
//! processes sharing one database file, two starting on a new one, and
//! what it says to an operator: refused settings, unusable databases and
//! addresses, the log off a terminal, sample data.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend::fresh_database;
use crate::helpers::{
    paths, post_thread_at, register_at, spawn_writers, start_binary, start_binary_logged,
    start_binary_with,
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

/// Runs `stoa` with `args` to its end (it is expected to refuse to start),
/// without `NO_COLOR`; returns its exit code, standard output and error.
async fn run_to_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("STOA_LOG_LEVEL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("stoa exits within 20 s")
    .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn bad_settings_are_refused_at_start_saying_what_to_write_instead() {
    let (code, _, stderr) = run_to_exit(&["--log-level", "verbose"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("use one of off, error, warn, info, debug, trace"),
        "{stderr}"
    );
    let (code, _, stderr) = run_to_exit(&["--listen", "8090"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("use 127.0.0.1:8090"), "{stderr}");
    let (code, _, stderr) = run_to_exit(&["--retention", "7"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("such as 30s, 250ms, 5m or 7days"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_database_in_a_missing_folder_is_refused_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("stoa.db");
    let (code, _, stderr) = run_to_exit(&["--db", path.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{stderr}");
    let folder = dir.path().join("missing");
    assert!(
        stderr.contains(&format!("the folder {} does not exist", folder.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_address_in_use_is_named_and_the_log_has_no_colour_codes_off_a_terminal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let db = crate::backend::db_arg(&db);
    let (code, stdout, stderr) = run_to_exit(&["--db", &db, "--listen", &address]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")) && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(
        stdout.contains("applied database migration"),
        "the log was written: {stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "colour codes in a pipe: {stdout:?}"
    );
}

#[tokio::test]
async fn demo_data_goes_into_an_empty_forum_once_with_a_warning_and_then_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let (mut first, _, log) = start_binary_with(&db, &["--demo"]).await;
    let first_log = log.lock().unwrap().join("\n");
    assert!(first_log.contains("loaded sample data"), "{first_log}");
    assert!(
        first_log.contains("share the password \"demo-password\"")
            && first_log.contains("do not use --demo on a public server"),
        "{first_log}"
    );
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let (mut second, _, log) = start_binary_with(&db, &["--demo"]).await;
    let second_log = log.lock().unwrap().join("\n");
    assert!(
        second_log.contains("loaded no sample data: this forum already has threads"),
        "{second_log}"
    );
    second.start_kill().unwrap();
}
