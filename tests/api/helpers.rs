//! `spawn_app()`: the real server, in-process, on an ephemeral port with a
//! database file of its own; `TestApp`, one method per endpoint, the only
//! place the suite spells out the API's paths and bodies (scenarios,
//! property tests and stream tests all call it); `/metrics` read as
//! numbers; the few helpers that touch the database file directly (so a
//! second backend has one place to swap); and `start_binary()`, the real
//! `stoa` executable, for tests of the process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stoa::config::Database;
use stoa::{App, Config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::{db_arg, fresh_database};
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

impl Session {
    /// From a `{user, token}` answer (register, login).
    pub fn from_body(body: &Value) -> Session {
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("no user id and token in {body}"))
                .to_string()
        };
        Session {
            id: text(&body["user"]["id"]),
            token: text(&body["token"]),
        }
    }
}

/// The password `register` and `login` use.
pub const PASSWORD: &str = "password123";

/// The API's paths, written once: `TestApp`'s methods use them, and so do
/// the tests that must send raw bytes (the fuzzers, the wire-level stream
/// tests, the tests of the real binary).
pub mod paths {
    pub const REGISTER: &str = "/api/auth/register";
    pub const LOGIN: &str = "/api/auth/login";
    pub const LOGOUT: &str = "/api/auth/logout";
    pub const ME: &str = "/api/auth/me";
    pub const THREADS: &str = "/api/community/threads";
    pub const COMMENT: &str = "/api/community/comment";
    pub const PREVIEW: &str = "/api/community/preview";
    pub const SEARCH: &str = "/api/community/search";
    pub const LIKE: &str = "/api/community/like";
    pub const EVENTS: &str = "/api/community/events";
    pub const STATS: &str = "/api/community/stats";
    pub const HEALTHZ: &str = "/healthz";
    pub const METRICS: &str = "/metrics";

    /// `GET` (with its comments) or `DELETE` one thread.
    pub fn thread(id: &str) -> String {
        format!("{THREADS}/{id}")
    }

    /// `PATCH` or `DELETE` one comment.
    pub fn comment(id: &str) -> String {
        format!("/api/community/comments/{id}")
    }

    /// `PUT` or `DELETE` a thread's lock.
    pub fn lock(id: &str) -> String {
        format!("{THREADS}/{id}/lock")
    }

    /// `PUT` or `DELETE` a thread's pin.
    pub fn pin(id: &str) -> String {
        format!("{THREADS}/{id}/pin")
    }

    /// `PUT` or `DELETE` a user's ban.
    pub fn ban(user_id: &str) -> String {
        format!("/api/admin/users/{user_id}/ban")
    }

    pub const MODERATION_LOG: &str = "/api/admin/log";
}

/// An answer as the client saw it, for callers that check statuses and
/// errors themselves; the endpoint methods without `try_` assert success.
#[derive(Debug)]
pub struct Answer {
    /// `METHOD /path?query`, for failure messages.
    pub request: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON: `Null` when it is empty or not JSON (see `text`).
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Fails the test unless the status is `want`; returns the body.
    #[track_caller]
    pub fn expect_status(self, want: StatusCode) -> Value {
        assert_eq!(
            self.status, want,
            "{} answered {}: {}",
            self.request, self.status, self.text
        );
        self.body
    }
}

/// A page of the thread list: `?limit=&before=`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Page<'a> {
    pub limit: Option<u32>,
    /// A `nextCursor` from the page before.
    pub before: Option<&'a str>,
}

impl Page<'_> {
    fn query(&self) -> String {
        let mut params = Vec::new();
        if let Some(limit) = self.limit {
            params.push(format!("limit={limit}"));
        }
        if let Some(before) = self.before {
            params.push(format!("before={}", url_encode(before)));
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Settings for tests: polls short enough to see in a test, and no rate
/// limits (tests that check them turn them on).
pub fn test_config(db: Database) -> Config {
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
    let mut config = test_config(fresh_database(dir.path()).await);
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
    /// A server this test did not start (a cluster's node, or nginx in
    /// front of them) on `db`: every endpoint method works the same.
    #[cfg_attr(not(stoa_test_cluster), allow(dead_code))]
    pub fn remote(addr: SocketAddr, db: Database) -> TestApp {
        TestApp {
            addr,
            config: Config::for_db(db),
            client: reqwest::Client::new(),
            dir: Arc::new(tempfile::tempdir().expect("temp dir")),
            stop: None,
            server: None,
        }
    }

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

    /// Sends a request built by hand (raw bodies, odd headers) and reads
    /// its answer the way every endpoint method does.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let (client, request) = request.build_split();
        let request = request.expect("a well-formed request");
        let url = request.url();
        let what = match url.query() {
            Some(query) => format!("{} {}?{query}", request.method(), url.path()),
            None => format!("{} {}", request.method(), url.path()),
        };
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what} was not answered: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            request: what,
            status,
            headers,
            body,
            text,
        }
    }

    /// A JSON request to one of the API's paths, as `who` (by token).
    async fn call(
        &self,
        method: Method,
        path: &str,
        who: Option<&Session>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(who) = who {
            request = request.bearer_auth(&who.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }
}

/// One method per endpoint (docs/api.md): `try_…` returns the `Answer`,
/// the plain name asserts the success status and returns what a test
/// usually wants. A few are not called yet; they stay so that every
/// endpoint has its method.
#[allow(dead_code)]
impl TestApp {
    /// `POST /api/auth/register`
    pub async fn try_register(&self, username: &str, password: &str) -> Answer {
        let body = json!({"username": username, "password": password});
        self.call(Method::POST, paths::REGISTER, None, Some(body))
            .await
    }

    /// Signs `username` up with [`PASSWORD`].
    pub async fn register(&self, username: &str) -> Session {
        let body = self
            .try_register(username, PASSWORD)
            .await
            .expect_status(StatusCode::CREATED);
        Session::from_body(&body)
    }

    /// `POST /api/auth/login`
    pub async fn try_login(&self, username: &str, password: &str) -> Answer {
        let body = json!({"username": username, "password": password});
        self.call(Method::POST, paths::LOGIN, None, Some(body))
            .await
    }

    /// Signs `username` in with [`PASSWORD`]: a new session.
    pub async fn login(&self, username: &str) -> Session {
        let body = self
            .try_login(username, PASSWORD)
            .await
            .expect_status(StatusCode::OK);
        Session::from_body(&body)
    }

    /// `POST /api/auth/logout`
    pub async fn try_logout(&self, who: &Session) -> Answer {
        self.call(Method::POST, paths::LOGOUT, Some(who), None)
            .await
    }

    pub async fn logout(&self, who: &Session) {
        self.try_logout(who)
            .await
            .expect_status(StatusCode::NO_CONTENT);
    }

    /// `GET /api/auth/me`
    pub async fn try_me(&self, who: Option<&Session>) -> Answer {
        self.call(Method::GET, paths::ME, who, None).await
    }

    /// The signed-in user.
    pub async fn me(&self, who: &Session) -> Value {
        self.try_me(Some(who)).await.expect_status(StatusCode::OK)["user"].take()
    }

    /// `GET /api/community/threads?limit=&before=`
    pub async fn try_threads(&self, who: Option<&Session>, page: Page<'_>) -> Answer {
        let path = format!("{}{}", paths::THREADS, page.query());
        self.call(Method::GET, &path, who, None).await
    }

    /// `{threads, nextCursor, lastEventId}`
    pub async fn threads(&self, who: Option<&Session>, page: Page<'_>) -> Value {
        self.try_threads(who, page)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `GET /api/community/search?q=&limit=&before=`
    pub async fn try_search(
        &self,
        who: Option<&Session>,
        q: &str,
        limit: Option<usize>,
        before: Option<&str>,
    ) -> Answer {
        let mut path = format!("{}?q={}", paths::SEARCH, url_encode(q));
        if let Some(limit) = limit {
            path.push_str(&format!("&limit={limit}"));
        }
        if let Some(before) = before {
            path.push_str(&format!("&before={}", url_encode(before)));
        }
        self.call(Method::GET, &path, who, None).await
    }

    /// `{results, nextCursor}` for `q`, the first page.
    pub async fn search(&self, q: &str) -> Value {
        self.try_search(None, q, None, None)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `GET /api/community/threads/:id`
    pub async fn try_thread(&self, who: Option<&Session>, id: &str) -> Answer {
        self.call(Method::GET, &paths::thread(id), who, None).await
    }

    /// `{thread, comments, lastEventId}`
    pub async fn thread(&self, who: Option<&Session>, id: &str) -> Value {
        self.try_thread(who, id).await.expect_status(StatusCode::OK)
    }

    /// `POST /api/community/threads`
    pub async fn try_create_thread(&self, who: &Session, title: &str, content: &str) -> Answer {
        let body = json!({"title": title, "content": content});
        self.call(Method::POST, paths::THREADS, Some(who), Some(body))
            .await
    }

    /// The created thread.
    pub async fn create_thread(&self, who: &Session, title: &str, content: &str) -> Value {
        self.try_create_thread(who, title, content)
            .await
            .expect_status(StatusCode::CREATED)["thread"]
            .take()
    }

    /// `POST /api/community/comment`
    pub async fn try_comment(&self, who: &Session, thread_id: &str, content: &str) -> Answer {
        let body = json!({"threadId": thread_id, "content": content});
        self.call(Method::POST, paths::COMMENT, Some(who), Some(body))
            .await
    }

    /// `POST /api/community/preview`: a draft's Markdown rendered, nothing stored.
    pub async fn try_preview(&self, who: Option<&Session>, content: &str) -> Answer {
        let body = json!({"content": content});
        self.call(Method::POST, paths::PREVIEW, who, Some(body))
            .await
    }

    /// The created comment.
    pub async fn comment(&self, who: &Session, thread_id: &str, content: &str) -> Value {
        self.try_comment(who, thread_id, content)
            .await
            .expect_status(StatusCode::CREATED)["comment"]
            .take()
    }

    /// `POST /api/community/like` `{threadId}`
    pub async fn try_like_thread(&self, who: &Session, thread_id: &str) -> Answer {
        let body = json!({"threadId": thread_id});
        self.call(Method::POST, paths::LIKE, Some(who), Some(body))
            .await
    }

    /// `{liked, likeCount}`
    pub async fn like_thread(&self, who: &Session, thread_id: &str) -> Value {
        self.try_like_thread(who, thread_id)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `DELETE /api/community/like` `{threadId}`
    pub async fn try_unlike_thread(&self, who: &Session, thread_id: &str) -> Answer {
        let body = json!({"threadId": thread_id});
        self.call(Method::DELETE, paths::LIKE, Some(who), Some(body))
            .await
    }

    /// `{liked, likeCount}`
    pub async fn unlike_thread(&self, who: &Session, thread_id: &str) -> Value {
        self.try_unlike_thread(who, thread_id)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `POST /api/community/like` `{commentId}`
    pub async fn try_like_comment(&self, who: &Session, comment_id: &str) -> Answer {
        let body = json!({"commentId": comment_id});
        self.call(Method::POST, paths::LIKE, Some(who), Some(body))
            .await
    }

    /// `{liked, likeCount}`
    pub async fn like_comment(&self, who: &Session, comment_id: &str) -> Value {
        self.try_like_comment(who, comment_id)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `DELETE /api/community/like` `{commentId}`
    pub async fn try_unlike_comment(&self, who: &Session, comment_id: &str) -> Answer {
        let body = json!({"commentId": comment_id});
        self.call(Method::DELETE, paths::LIKE, Some(who), Some(body))
            .await
    }

    /// `{liked, likeCount}`
    pub async fn unlike_comment(&self, who: &Session, comment_id: &str) -> Value {
        self.try_unlike_comment(who, comment_id)
            .await
            .expect_status(StatusCode::OK)
    }

    /// `DELETE /api/community/threads/:id`
    pub async fn try_delete_thread(&self, who: &Session, thread_id: &str) -> Answer {
        self.call(Method::DELETE, &paths::thread(thread_id), Some(who), None)
            .await
    }

    pub async fn delete_thread(&self, who: &Session, thread_id: &str) {
        self.try_delete_thread(who, thread_id)
            .await
            .expect_status(StatusCode::NO_CONTENT);
    }

    /// `DELETE /api/community/comments/:id`
    pub async fn try_delete_comment(&self, who: &Session, comment_id: &str) -> Answer {
        self.call(Method::DELETE, &paths::comment(comment_id), Some(who), None)
            .await
    }

    pub async fn delete_comment(&self, who: &Session, comment_id: &str) {
        self.try_delete_comment(who, comment_id)
            .await
            .expect_status(StatusCode::NO_CONTENT);
    }

    /// `PATCH /api/community/threads/:id` with `body` (`title`, `content`)
    pub async fn try_edit_thread(&self, who: &Session, thread_id: &str, body: Value) -> Answer {
        self.call(
            Method::PATCH,
            &paths::thread(thread_id),
            Some(who),
            Some(body),
        )
        .await
    }

    pub async fn edit_thread(&self, who: &Session, thread_id: &str, body: Value) -> Value {
        self.try_edit_thread(who, thread_id, body)
            .await
            .expect_status(StatusCode::OK)["thread"]
            .clone()
    }

    /// `PATCH /api/community/comments/:id` `{content}`
    pub async fn try_edit_comment(&self, who: &Session, comment_id: &str, content: &str) -> Answer {
        let body = json!({ "content": content });
        self.call(
            Method::PATCH,
            &paths::comment(comment_id),
            Some(who),
            Some(body),
        )
        .await
    }

    pub async fn edit_comment(&self, who: &Session, comment_id: &str, content: &str) -> Value {
        self.try_edit_comment(who, comment_id, content)
            .await
            .expect_status(StatusCode::OK)["comment"]
            .clone()
    }

    /// `PUT` (`on`) or `DELETE` `/api/community/threads/:id/lock`
    pub async fn try_lock(&self, who: &Session, thread_id: &str, on: bool) -> Answer {
        let method = if on { Method::PUT } else { Method::DELETE };
        self.call(method, &paths::lock(thread_id), Some(who), None)
            .await
    }

    /// `PUT` (`on`) or `DELETE` `/api/community/threads/:id/pin`
    pub async fn try_pin(&self, who: &Session, thread_id: &str, on: bool) -> Answer {
        let method = if on { Method::PUT } else { Method::DELETE };
        self.call(method, &paths::pin(thread_id), Some(who), None)
            .await
    }

    /// `PUT /api/admin/users/:id/ban` with `body` (`reason`, `until`)
    pub async fn try_ban(&self, who: &Session, user_id: &str, body: Value) -> Answer {
        self.call(Method::PUT, &paths::ban(user_id), Some(who), Some(body))
            .await
    }

    /// `DELETE /api/admin/users/:id/ban`
    pub async fn try_unban(&self, who: &Session, user_id: &str) -> Answer {
        self.call(Method::DELETE, &paths::ban(user_id), Some(who), None)
            .await
    }

    /// `GET /api/admin/log`
    pub async fn try_moderation_log(&self, who: Option<&Session>) -> Answer {
        self.call(Method::GET, paths::MODERATION_LOG, who, None)
            .await
    }

    /// Gives `username` a role on this server's database, as `stoa role`
    /// does (the same `Db` method, without starting a process).
    pub async fn set_role(&self, username: &str, role: &str) {
        let db = stoa::db::Db::open(
            &self.config.db,
            stoa::db::OpenSettings {
                busy_timeout: Duration::from_secs(5),
                pool_size: 1,
            },
            Default::default(),
        )
        .await
        .expect("the database opens");
        db.set_role(username.into(), role.parse().unwrap())
            .await
            .expect("the role is set")
            .expect("the user exists");
        db.close().await.unwrap();
    }

    /// `GET /api/community/events` + `query` (`""` or `"?…"`): the request
    /// sent, nothing read, as a client that has stopped reading.
    pub async fn send_events_request(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> tokio::net::TcpStream {
        let path = format!("{}{query}", paths::EVENTS);
        SseStream::send_request(self.addr, &path, headers).await
    }

    /// Opens the event stream; a refusal comes back as its status and body.
    pub async fn try_events(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseStream, (u16, String)> {
        let path = format!("{}{query}", paths::EVENTS);
        SseStream::try_connect(self.addr, &path, headers).await
    }

    /// Opens the event stream (200 or the test fails) without reading it.
    pub async fn open_events(&self, query: &str, headers: &[(&str, &str)]) -> SseStream {
        self.try_events(query, headers)
            .await
            .unwrap_or_else(|(status, body)| {
                panic!("expected an event stream from events{query}, got {status}: {body}")
            })
    }

    /// Opens the event stream and checks its opening (`retry:`, then
    /// `connected` without an id); returns the stream and `connected`.
    pub async fn events_and_opening(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> (SseStream, Value) {
        let mut stream = self.open_events(query, headers).await;
        let connected = stream.next().await;
        assert_eq!(
            connected.kind(),
            "connected",
            "the first message is `connected`: {connected:?}"
        );
        assert_eq!(connected.id, None, "`connected` carries no id");
        assert!(
            stream.retry.is_some(),
            "the stream opens with a retry: field"
        );
        (stream, connected.json())
    }

    /// Opens the event stream and checks its opening; ready for events.
    pub async fn events(&self, query: &str, headers: &[(&str, &str)]) -> SseStream {
        self.events_and_opening(query, headers).await.0
    }

    /// `GET /api/community/stats`
    pub async fn try_stats(&self) -> Answer {
        self.call(Method::GET, paths::STATS, None, None).await
    }

    /// `{connections, online, lastEventId, outbox: {earliestId, latestId}}`
    pub async fn stats(&self) -> Value {
        self.try_stats().await.expect_status(StatusCode::OK)
    }

    /// `GET /healthz`
    pub async fn try_healthz(&self) -> Answer {
        self.call(Method::GET, paths::HEALTHZ, None, None).await
    }

    /// The health report.
    pub async fn healthz(&self) -> Value {
        self.try_healthz().await.expect_status(StatusCode::OK)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let answer = self.call(Method::GET, paths::METRICS, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "/metrics: {}", answer.text);
        answer.text
    }

    /// The value of an unlabelled metric, or the sum over all its series.
    /// Fails the test if `/metrics` does not name it at all.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metric_with(name, &[]).await
    }

    /// The sum over the series of `name` that carry every one of `labels`
    /// (0 when none does yet). Fails the test if `/metrics` does not name
    /// the metric at all, so a misspelt name cannot read as 0.
    pub async fn metric_with(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, name, labels)
            .unwrap_or_else(|| panic!("/metrics has no metric {name}:\n{text}"))
    }
}
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// The samples of an exposition text (comments and blank lines skipped).
fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad metrics line {line:?}")))
        .collect()
}

/// `name value`, or `name{label="value",…} value`, maybe with a timestamp.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inside[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The sum of `name`'s samples that carry all of `labels`; `None` if the
/// text has neither a sample nor a `# TYPE` line for `name`.
fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let samples: Vec<Sample> = parse_metrics(text)
        .into_iter()
        .filter(|s| s.name == name)
        .collect();
    let declared = text
        .lines()
        .any(|line| line.split_whitespace().take(3).eq(["#", "TYPE", name]));
    if samples.is_empty() && !declared {
        return None;
    }
    let carries = |sample: &Sample| {
        labels
            .iter()
            .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
    };
    Some(samples.iter().filter(|s| carries(s)).map(|s| s.value).sum())
}

#[test]
fn metrics_text_is_read_as_numbers() {
    let text = "# HELP stoa_a_total A.\n# TYPE stoa_a_total counter\nstoa_a_total 3\n\
                # TYPE stoa_r_total counter\n\
                stoa_r_total{method=\"GET\",route=\"/x\",status=\"200\"} 2\n\
                stoa_r_total{method=\"POST\",route=\"/x\",status=\"201\"} 5 1700000000\n\
                stoa_r_total{method=\"POST\",route=\"/y\\\"z\",status=\"201\"} 7\n\
                # TYPE stoa_none_total counter\n";
    assert_eq!(metric_value(text, "stoa_a_total", &[]), Some(3.0));
    assert_eq!(metric_value(text, "stoa_r_total", &[]), Some(14.0));
    let created = [("route", "/x"), ("status", "201")];
    assert_eq!(metric_value(text, "stoa_r_total", &created), Some(5.0));
    let quoted = [("route", "/y\"z")];
    assert_eq!(metric_value(text, "stoa_r_total", &quoted), Some(7.0));
    assert_eq!(
        metric_value(text, "stoa_r_total", &[("status", "500")]),
        Some(0.0)
    );
    assert_eq!(metric_value(text, "stoa_none_total", &[]), Some(0.0));
    assert_eq!(metric_value(text, "stoa_a", &[]), None);
}

/// Starts `stoa` on `db` and returns it with the address it listens on.
pub async fn start_binary(db: &Database) -> (Child, std::net::SocketAddr) {
    let (child, addr, _) = start_binary_logged(db).await;
    (child, addr)
}

/// `start_binary`, also returning what it logged until it listened.
pub async fn start_binary_logged(db: &Database) -> (Child, std::net::SocketAddr, Vec<String>) {
    let (child, addr, log) = start_binary_with(db, &[]).await;
    let log = log.lock().unwrap().clone();
    (child, addr, log)
}

/// Everything a started binary has logged so far, one line each.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Starts `stoa` on `db` with `extra` flags; returns it, the address it
/// listens on, and its log, which keeps filling while it runs.
pub async fn start_binary_with(
    db: &Database,
    extra: &[&str],
) -> (Child, std::net::SocketAddr, Log) {
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
        .arg(db_arg(db))
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("stoa starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log: Log = Arc::default();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            log.lock().unwrap().push(line);
        }
        panic!("stoa exited before listening");
    })
    .await
    .expect("stoa listens within 20 s");
    // Keep reading its log so it never blocks on a full pipe.
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    (child, addr, log)
}

/// Signs up `name` on a server started with `start_binary`; returns the token.
pub async fn register_at(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    name: &str,
) -> String {
    let body: Value = client
        .post(format!("http://{addr}{}", paths::REGISTER))
        .json(&json!({"username": name, "password": PASSWORD}))
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
        .post(format!("http://{addr}{}", paths::THREADS))
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
