//! `spawn_app()`: the real server, in-process, on an ephemeral port with a
//! database file of its own; `TestApp`, one method per endpoint; and
//! `start_binary()`, the real `stoa` executable, for tests of the process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stoa::{App, Config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sse_client::SseStream;

pub struct TestApp {
    pub addr: SocketAddr,
    pub config: Config,
    pub client: reqwest::Client,
    /// Keeps the database's folder alive for the test (and across restarts).
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub token: String,
}

/// Settings for tests: polls short enough to see in a test, and no rate
/// limits (tests that check them turn them on).
pub fn test_config(db: PathBuf) -> Config {
    Config {
        poll_interval: Duration::from_millis(20),
        write_rate: 0.0,
        sign_in_rate: 0.0,
        ..Config::for_db(db)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(dir.path().join("stoa.db"));
    adjust(&mut config);
    start(config, dir).await
}

async fn start(config: Config, dir: Arc<tempfile::TempDir>) -> TestApp {
    let app = App::build(config.clone()).await.expect("server builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs and stops cleanly");
    });
    TestApp {
        addr,
        config,
        client: reqwest::Client::new(),
        dir,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops within 10 s")
                .expect("server task ends without panicking");
        }
    }

    /// Stops the server and starts a new one on the same database file.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        start(config, self.dir.clone()).await
    }

    /// Any request; returns the status and the body as JSON (Null if empty).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path} answered non-JSON: {text}"))
        };
        (status, json)
    }

    pub async fn register(&self, username: &str) -> Session {
        let (status, body) = self
            .request(
                Method::POST,
                "/api/auth/register",
                None,
                Some(json!({"username": username, "password": "password123"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
        Session {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            token: body["token"].as_str().unwrap().to_string(),
        }
    }

    /// POSTs `body` as `who`, expects 201, and returns the created `key`.
    async fn create(&self, who: &Session, path: &str, body: Value, key: &str) -> Value {
        let (status, answer) = self
            .request(Method::POST, path, Some(&who.token), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
        answer[key].clone()
    }

    pub async fn create_thread(&self, who: &Session, title: &str, content: &str) -> Value {
        let body = json!({"title": title, "content": content});
        self.create(who, "/api/community/threads", body, "thread")
            .await
    }

    pub async fn comment(&self, who: &Session, thread_id: &str, content: &str) -> Value {
        let body = json!({"threadId": thread_id, "content": content});
        self.create(who, "/api/community/comment", body, "comment")
            .await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn threads(&self, who: Option<&Session>) -> Value {
        let (status, body) = self
            .request(
                Method::GET,
                "/api/community/threads",
                who.map(|s| s.token.as_str()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "list threads: {body}");
        body
    }

    pub async fn stats(&self) -> Value {
        self.request(Method::GET, "/api/community/stats", None, None)
            .await
            .1
    }

    /// Opens the event stream at `path_and_query` (after `/api/community/events`).
    pub async fn events(&self, query: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut stream =
            SseStream::connect(self.addr, &format!("/api/community/events{query}"), headers).await;
        let connected = stream.next().await;
        assert_eq!(
            connected.kind(),
            "connected",
            "the first message is `connected`"
        );
        assert_eq!(connected.id, None, "`connected` carries no id");
        stream
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A connection to a test server's SQLite file of its own, as the
/// `sqlite3` shell or a script would open it: writes through it reach the
/// server only through its triggers and its polling.
pub fn outside_connection(db: &std::path::Path) -> tokio_rusqlite::rusqlite::Connection {
    let conn = tokio_rusqlite::rusqlite::Connection::open(db).expect("database opens");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn
}

/// Starts `stoa` on `db` and returns it with the address it listens on.
pub async fn start_binary(db: &std::path::Path) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stoa"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--write-rate",
            "0",
            "--sign-in-rate",
            "0",
            "--db",
        ])
        .arg(db)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("stoa starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("stoa exited before listening");
    })
    .await
    .expect("stoa listens within 20 s");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// Signs up `name` on a server started with `start_binary`; returns the token.
pub async fn register_at(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    name: &str,
) -> String {
    let body: Value = client
        .post(format!("http://{addr}/api/auth/register"))
        .json(&json!({"username": name, "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// Posts a thread; a failed connection reads as 503.
pub async fn post_thread_at(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    token: &str,
    title: &str,
) -> StatusCode {
    client
        .post(format!("http://{addr}/api/community/threads"))
        .bearer_auth(token)
        .json(&json!({"title": title, "content": "c"}))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// `count` writers posting threads through `addr` as fast as they can
/// until the server stops answering. Returns their tasks and the titles
/// that were acknowledged with a 201.
pub fn spawn_writers(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    count: usize,
) -> (Vec<JoinHandle<()>>, Arc<Mutex<Vec<String>>>) {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers = (0..count)
        .map(|w| {
            let (client, token, acknowledged) =
                (client.clone(), token.to_string(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let title = format!("w{w}-{n}");
                    match post_thread_at(&client, addr, &token, &title).await {
                        StatusCode::CREATED => acknowledged.lock().unwrap().push(title),
                        // The server went away mid-request (or before it).
                        StatusCode::SERVICE_UNAVAILABLE => return,
                        other => panic!("unexpected status {other}"),
                    }
                }
            })
        })
        .collect();
    (writers, acknowledged)
}
