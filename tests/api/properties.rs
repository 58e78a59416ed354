//! Bad input, tried systematically with proptest against the running
//! server: arbitrary bodies, positions, queries, cookies and tokens never
//! produce a 500 or a half-written change; and any sequence of valid and
//! invalid calls leaves the database consistent with its outbox.
//!
//! Case counts are small by default so `cargo test` stays quick; set
//! `PROPTEST_CASES` for a longer run (CI sets it).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend::query_outside;
use crate::helpers::{paths, spawn_app, Answer, Page, Session, TestApp};
use stoa::config::Database;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    })
}

/// Runs an async check on a fresh runtime per case (proptest is synchronous).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// An answer to bad input: a client error with the JSON error shape.
fn assert_clean_refusal(status: StatusCode, body: &str, what: &str) {
    assert!(
        status.is_client_error() || status.is_success(),
        "{what} got {status}: {body}"
    );
    if status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE {
        let json: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{what}: error is not JSON: {body}"));
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
}

const WRITE_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", paths::REGISTER),
    ("POST", paths::LOGIN),
    ("POST", paths::THREADS),
    ("POST", paths::COMMENT),
    ("POST", paths::LIKE),
    ("DELETE", paths::LIKE),
];

/// JSON-ish bodies: real JSON values of every shape with the endpoints' own
/// field names, and arbitrary bytes.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("title".to_string()),
                    Just("content".to_string()),
                    Just("threadId".to_string()),
                    Just("commentId".to_string()),
                    Just("username".to_string()),
                    Just("password".to_string()),
                    "\\PC{0,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
fn no_body_sent_to_any_write_endpoint_causes_a_server_error() {
    block_on(async {
        let app = spawn_app().await;
        let alice = app.register("alice").await;
        let mut runner = runner(64);
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::block_in_place(|| {
            runner.run(
                &(0..WRITE_ENDPOINTS.len(), body_strategy()),
                |(endpoint, body)| {
                    let (method, path) = WRITE_ENDPOINTS[endpoint];
                    let request = app
                        .client
                        .request(
                            Method::from_bytes(method.as_bytes()).unwrap(),
                            app.url(path),
                        )
                        .bearer_auth(&alice.token)
                        .header("Content-Type", "application/json")
                        .body(body.clone());
                    let answer = handle.block_on(app.send(request));
                    assert_clean_refusal(
                        answer.status,
                        &answer.text,
                        &format!("{method} {path} {:?}", String::from_utf8_lossy(&body)),
                    );
                    Ok(())
                },
            )
        });
        result.unwrap();
        // Whatever was accepted produced its events, and nothing was half
        // written: the outbox replays to exactly the stored rows.
        let (forum, events) = rows(&app.config.db).await;
        assert_eq!(replay(&events), forum);
        assert_eq!(app.try_healthz().await.status, StatusCode::OK);
    });
}

#[test]
fn no_query_position_cookie_or_token_causes_a_server_error() {
    block_on(async {
        let app = spawn_app().await;
        let mut runner = runner(64);
        let handle = tokio::runtime::Handle::current();
        let strategy = ("[ -~]{0,40}", "[ -~]{0,40}", 0..5usize);
        let result = tokio::task::block_in_place(|| {
            runner.run(&strategy, |(value, other, which)| {
                let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
                let (path, header): (String, Option<(&str, String)>) = match which {
                    0 => (
                        format!("{}?limit={encoded}&before={encoded}", paths::THREADS),
                        None,
                    ),
                    1 => (
                        format!("{}?lastEventId={encoded}&thread={encoded}", paths::EVENTS),
                        None,
                    ),
                    2 => (paths::EVENTS.into(), Some(("Last-Event-ID", value.clone()))),
                    3 => (
                        paths::ME.into(),
                        Some(("Cookie", format!("stoa_session={value}; {other}"))),
                    ),
                    _ => (
                        paths::ME.into(),
                        Some(("Authorization", format!("Bearer {value}"))),
                    ),
                };
                // Sent by hand, not through `TestApp::send`: a stream that
                // opens must not be read to its end.
                let (status, text) = handle.block_on(async {
                    let mut request = app.client.get(app.url(&path));
                    if let Some((name, value)) = &header {
                        request = request.header(*name, value);
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    // A stream that opened is fine; close it without reading.
                    if response
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v == "text/event-stream")
                    {
                        return (status, String::new());
                    }
                    (status, response.text().await.unwrap())
                });
                assert_clean_refusal(status, &text, &format!("{path} {header:?}"));
                Ok(())
            })
        });
        result.unwrap();
    });
}

/// Stream requests are read by stoa itself (`src/server/streaming.rs`),
/// not hyper, when they open a connection: whatever bytes follow the start
/// of the request line, the client gets an answer (a stream, or a client
/// error from hyper or the routes; never a 5xx but "version not
/// supported") or a closed connection, never silence, and the server keeps
/// serving.
#[test]
fn any_stream_request_head_is_answered_and_the_server_keeps_serving() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    block_on(async {
        let app = spawn_app().await;
        let mut runner = runner(64);
        let handle = tokio::runtime::Handle::current();
        let rest = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "[ -~\r\n\t]{0,200}".prop_map(String::into_bytes),
            "(\\?[a-zA-Z=&%0-9]{0,20})? HTTP/1\\.[01]\r\n([A-Za-z-]{1,12}: [ -~]{0,30}\r\n){0,6}"
                .prop_map(String::into_bytes),
        ];
        let result = tokio::task::block_in_place(|| {
            runner.run(&rest, |rest| {
                let mut head = format!("GET {}", paths::EVENTS).into_bytes();
                head.extend_from_slice(&rest);
                head.extend_from_slice(b"\r\n\r\n");
                let status_line = handle.block_on(async {
                    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
                    socket.write_all(&head).await.unwrap();
                    let mut reader = BufReader::new(socket);
                    let mut line = Vec::new();
                    tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        reader.read_until(b'\n', &mut line),
                    )
                    .await
                    .expect("an answer or a close, not silence")
                    .ok();
                    String::from_utf8_lossy(&line).into_owned()
                });
                let what = String::from_utf8_lossy(&head);
                if !status_line.is_empty() {
                    let status: u16 = status_line
                        .split(' ')
                        .nth(1)
                        .and_then(|code| code.parse().ok())
                        .unwrap_or_else(|| panic!("{what:?}: bad status line {status_line:?}"));
                    assert!(
                        status < 500 || status == 505,
                        "{what:?} got {status_line:?}"
                    );
                }
                Ok(())
            })
        });
        result.unwrap();
        assert_eq!(app.try_healthz().await.status, StatusCode::OK);
        // Opens, and checks `connected` arrives.
        app.events("", &[]).await;
    });
}

/// One step of a random session with the forum; indexes pick among the
/// users, and among the threads and comments made so far (or a missing id).
#[derive(Debug, Clone)]
enum Step {
    Post {
        user: usize,
        title: String,
        content: String,
    },
    Comment {
        user: usize,
        thread: usize,
        content: String,
    },
    LikeThread {
        user: usize,
        thread: usize,
        liked: bool,
    },
    LikeComment {
        user: usize,
        comment: usize,
        liked: bool,
    },
    DeleteThread {
        user: usize,
        thread: usize,
    },
    DeleteComment {
        user: usize,
        comment: usize,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let text =
        prop_oneof![4 => "[a-z ]{1,12}", 1 => Just(String::new()), 1 => Just("x".repeat(201))];
    prop_oneof![
        3 => (0..3usize, text.clone(), "[a-z]{0,6}").prop_map(|(user, title, content)| Step::Post { user, title, content }),
        3 => (0..3usize, 0..6usize, text).prop_map(|(user, thread, content)| Step::Comment { user, thread, content }),
        3 => (0..3usize, 0..6usize, any::<bool>()).prop_map(|(user, thread, liked)| Step::LikeThread { user, thread, liked }),
        2 => (0..3usize, 0..8usize, any::<bool>()).prop_map(|(user, comment, liked)| Step::LikeComment { user, comment, liked }),
        1 => (0..3usize, 0..6usize).prop_map(|(user, thread)| Step::DeleteThread { user, thread }),
        1 => (0..3usize, 0..8usize).prop_map(|(user, comment)| Step::DeleteComment { user, comment }),
    ]
}

fn pick(ids: &[String], index: usize) -> String {
    ids.get(index)
        .cloned()
        .unwrap_or_else(|| "missing-id".into())
}

/// Makes the call `step` describes through `TestApp`, and remembers what
/// it created.
async fn perform(
    app: &TestApp,
    users: &[Session],
    threads: &mut Vec<String>,
    comments: &mut Vec<String>,
    step: &Step,
) {
    let answer: Answer = match step {
        Step::Post {
            user,
            title,
            content,
        } => app.try_create_thread(&users[*user], title, content).await,
        Step::Comment {
            user,
            thread,
            content,
        } => {
            app.try_comment(&users[*user], &pick(threads, *thread), content)
                .await
        }
        Step::LikeThread {
            user,
            thread,
            liked,
        } => {
            let (who, id) = (&users[*user], pick(threads, *thread));
            if *liked {
                app.try_like_thread(who, &id).await
            } else {
                app.try_unlike_thread(who, &id).await
            }
        }
        Step::LikeComment {
            user,
            comment,
            liked,
        } => {
            let (who, id) = (&users[*user], pick(comments, *comment));
            if *liked {
                app.try_like_comment(who, &id).await
            } else {
                app.try_unlike_comment(who, &id).await
            }
        }
        Step::DeleteThread { user, thread } => {
            app.try_delete_thread(&users[*user], &pick(threads, *thread))
                .await
        }
        Step::DeleteComment { user, comment } => {
            app.try_delete_comment(&users[*user], &pick(comments, *comment))
                .await
        }
    };
    assert!(
        !answer.status.is_server_error(),
        "{step:?} got {}: {}",
        answer.status,
        answer.text
    );
    if answer.status == StatusCode::CREATED {
        if let Some(id) = answer.body["thread"]["id"].as_str() {
            threads.push(id.to_string());
        }
        if let Some(id) = answer.body["comment"]["id"].as_str() {
            comments.push(id.to_string());
        }
    }
}

/// The forum's state as rows: threads, comments (with their thread), likes
/// (user, thread, comment).
#[derive(Debug, Default, PartialEq)]
struct Forum {
    threads: BTreeSet<String>,
    comments: BTreeMap<String, String>,
    likes: BTreeSet<(String, String, Option<String>)>,
}

/// The one place this file reads SQL: what a second backend would swap.
async fn rows(db: &Database) -> (Forum, Vec<Value>) {
    let text = |value: &Option<String>| value.clone().expect("a value");
    let forum = Forum {
        threads: query_outside(db, "SELECT id FROM threads")
            .await
            .iter()
            .map(|row| text(&row[0]))
            .collect(),
        comments: query_outside(db, "SELECT id, thread_id FROM comments")
            .await
            .iter()
            .map(|row| (text(&row[0]), text(&row[1])))
            .collect(),
        likes: query_outside(db, "SELECT user_id, thread_id, comment_id FROM likes")
            .await
            .iter()
            .map(|row| (text(&row[0]), text(&row[1]), row[2].clone()))
            .collect(),
    };
    let events = query_outside(db, "SELECT type, payload FROM outbox ORDER BY id")
        .await
        .iter()
        .map(|row| {
            let data: Value = serde_json::from_str(&text(&row[1])).unwrap();
            json!({"type": text(&row[0]), "data": data})
        })
        .collect();
    (forum, events)
}

/// Rebuilds the forum from its events alone, checking each event's counts
/// against the state at that moment.
fn replay(events: &[Value]) -> Forum {
    let mut forum = Forum::default();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    for event in events {
        let data = &event["data"];
        match event["type"].as_str().unwrap() {
            "new_thread" => {
                forum.threads.insert(text(&data["id"]));
            }
            "thread_deleted" => {
                let thread = text(&data["threadId"]);
                forum.threads.remove(&thread);
                forum.comments.retain(|_, t| *t != thread);
                forum.likes.retain(|(_, t, _)| *t != thread);
            }
            "new_comment" => {
                let thread = text(&data["threadId"]);
                forum
                    .comments
                    .insert(text(&data["comment"]["id"]), thread.clone());
                let count = forum.comments.values().filter(|t| **t == thread).count();
                assert_eq!(data["commentCount"], count, "{event}");
            }
            "comment_deleted" => {
                let comment = text(&data["commentId"]);
                let thread = text(&data["threadId"]);
                forum.comments.remove(&comment);
                forum
                    .likes
                    .retain(|(_, _, c)| c.as_deref() != Some(comment.as_str()));
                let count = forum.comments.values().filter(|t| **t == thread).count();
                assert_eq!(data["commentCount"], count, "{event}");
            }
            kind @ ("thread_liked" | "thread_unliked" | "comment_liked" | "comment_unliked") => {
                let thread = text(&data["threadId"]);
                let comment = data.get("commentId").map(text);
                let like = (text(&data["userId"]), thread, comment.clone());
                if kind.ends_with("_liked") {
                    assert!(
                        forum.likes.insert(like),
                        "a like event for an existing like: {event}"
                    );
                } else {
                    assert!(
                        forum.likes.remove(&like),
                        "an unlike event for a missing like: {event}"
                    );
                }
                let count = forum
                    .likes
                    .iter()
                    .filter(|(_, t, c)| *t == like_target(&data["threadId"]) && *c == comment)
                    .count();
                assert_eq!(data["likeCount"], count, "{event}");
            }
            "notification" => {}
            other => panic!("unknown event type {other}"),
        }
    }
    forum
}

fn like_target(thread: &Value) -> String {
    thread.as_str().unwrap().to_string()
}

#[test]
fn any_sequence_of_calls_leaves_the_database_consistent_with_its_outbox() {
    let mut runner = runner(12);
    runner
        .run(&prop::collection::vec(step_strategy(), 1..40), |steps| {
            block_on(async {
                let app = spawn_app().await;
                let users = vec![
                    app.register("ann").await,
                    app.register("ben").await,
                    app.register("cat").await,
                ];
                let (mut threads, mut comments) = (Vec::new(), Vec::new());
                for step in &steps {
                    perform(&app, &users, &mut threads, &mut comments, step).await;
                }
                let (forum, events) = rows(&app.config.db).await;
                assert_eq!(
                    replay(&events),
                    forum,
                    "the outbox replays to exactly the stored rows"
                );
                // And the API's counts match the rows.
                let listed = app.threads(None, Page::default()).await;
                for thread in listed["threads"].as_array().unwrap() {
                    let id = thread["id"].as_str().unwrap();
                    let likes = forum
                        .likes
                        .iter()
                        .filter(|(_, t, c)| t == id && c.is_none())
                        .count();
                    let replies = forum.comments.values().filter(|t| *t == id).count();
                    assert_eq!(thread["likeCount"], likes);
                    assert_eq!(thread["commentCount"], replies);
                }
            });
            Ok(())
        })
        .unwrap();
}
