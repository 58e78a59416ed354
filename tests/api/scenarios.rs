//! Runs every scenario file in `fixtures/scenarios/`: a sequence of actions
//! (as users) and the exact events each connected client must see, ids
//! included. Adding a case is adding a file; the format is described in
//! `fixtures/scenarios/README.md`. `STOA_SCENARIO=07` runs only the files
//! whose name contains `07`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::expect::{any, compare_events, matches, Frame, Vars};
use crate::helpers::{spawn_app_with, Answer, Page, Session, TestApp};
use crate::sse_client::SseStream;

/// The variable that picks scenarios by (part of) their file name.
const FILTER: &str = "STOA_SCENARIO";

#[tokio::test]
async fn every_scenario_in_the_fixtures_folder_passes() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("fixtures/scenarios exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected the scenario set, found {files:?}"
    );
    let name_of = |path: &PathBuf| path.file_name().unwrap().to_string_lossy().into_owned();
    let filter = std::env::var(FILTER).ok().filter(|f| !f.is_empty());
    if let Some(filter) = &filter {
        let all: Vec<String> = files.iter().map(name_of).collect();
        files.retain(|path| name_of(path).contains(filter.as_str()));
        assert!(
            !files.is_empty(),
            "{FILTER}={filter} matches no scenario; there are: {}",
            all.join(", ")
        );
    }
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for file in &files {
        let name = name_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        let scenario: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The step under way, so a panic deep in a helper still says where.
        let progress = Arc::new(Mutex::new(String::from("starting the server")));
        if let Err(failure) = tokio::spawn(run(scenario, progress.clone())).await {
            let at = progress.lock().unwrap().clone();
            failures.push(format!("{name}: {at}:\n{}", panic_text(failure)));
        } else {
            println!("scenario {name}: passed");
        }
        ran.push(name);
    }
    match &filter {
        Some(filter) => println!("{FILTER}={filter} ran {}", ran.join(", ")),
        None => println!("ran all {} scenarios", ran.len()),
    }
    assert!(
        failures.is_empty(),
        "failed scenarios:\n{}",
        failures.join("\n")
    );
}

/// A failed task's panic message as written (the `JoinError`'s own text
/// would quote it, turning a table's line breaks into `\n`).
fn panic_text(failure: tokio::task::JoinError) -> String {
    match failure.try_into_panic() {
        Ok(payload) => match payload.downcast::<String>() {
            Ok(text) => *text,
            Err(payload) => match payload.downcast::<&str>() {
                Ok(text) => text.to_string(),
                Err(_) => "a panic without a message".into(),
            },
        },
        Err(failure) => failure.to_string(),
    }
}

struct Client {
    stream: Option<SseStream>,
    /// The last id seen, kept across disconnects as a browser keeps it.
    last_event_id: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Client {
    fn disconnect(&mut self) {
        if let Some(stream) = self.stream.take() {
            self.last_event_id = stream.last_event_id;
        }
    }
}

struct Runner {
    app: Option<TestApp>,
    users: HashMap<String, Session>,
    /// Saved ids by name (`"save": "t1"`), and users' ids by username.
    vars: Vars,
    clients: HashMap<String, Client>,
}

async fn run(scenario: Value, progress: Arc<Mutex<String>>) {
    let settings = scenario["config"].clone();
    let app = spawn_app_with(|config| {
        if let Some(n) = settings["maxStreams"].as_u64() {
            config.max_streams = n as usize;
        }
        if let Some(n) = settings["maxStreamsPerIp"].as_u64() {
            config.max_streams_per_ip = n as usize;
        }
        if let Some(origins) = settings["corsOrigins"].as_array() {
            config.cors_origins = origins
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect();
        }
        if let Some(rate) = settings["writeRate"].as_f64() {
            config.write_rate = rate;
            config.write_burst = settings["writeBurst"].as_u64().unwrap_or(1) as u32;
        }
        if let Some(rate) = settings["signInRate"].as_f64() {
            config.sign_in_rate = rate;
            config.sign_in_burst = settings["signInBurst"].as_u64().unwrap_or(1) as u32;
        }
        if let Some(ping) = settings["pingInterval"].as_str() {
            config.ping_interval = humantime::parse_duration(ping).unwrap();
        }
    })
    .await;
    let mut runner = Runner {
        app: Some(app),
        users: HashMap::new(),
        vars: Vars::new(),
        clients: HashMap::new(),
    };
    for (index, step) in scenario["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .enumerate()
    {
        *progress.lock().unwrap() = format!("step {} {}", index + 1, step);
        if let Err(message) = runner.step(step).await {
            // The caller prefixes the step from `progress`.
            panic!("{message}");
        }
    }
    *progress.lock().unwrap() = "stopping the server".into();
    runner.app.as_mut().unwrap().stop().await;
}

type StepResult = Result<(), String>;

impl Runner {
    fn app(&self) -> &TestApp {
        self.app.as_ref().unwrap()
    }

    fn user(&self, step: &Value) -> Option<&Session> {
        step["as"].as_str().map(|name| &self.users[name])
    }

    fn var(&self, name: &str) -> Result<String, String> {
        self.vars
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no saved value {name:?}"))
    }

    /// Replaces `{name}` in a path with saved values.
    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.vars {
            if let Some(value) = value.as_str() {
                out = out.replace(&format!("{{{name}}}"), value);
            }
        }
        out
    }

    async fn step(&mut self, step: &Value) -> StepResult {
        if let Some(name) = step["register"].as_str() {
            let session = self.app().register(name).await;
            self.vars.insert(name.to_string(), json!(session.id));
            self.users.insert(name.to_string(), session);
            return Ok(());
        }
        if let Some(name) = step["setRole"].as_str() {
            let role = step["role"].as_str().ok_or("setRole needs a role")?;
            self.app().set_role(name, role).await;
            return Ok(());
        }
        if let Some(name) = step["connect"].as_str() {
            return self.connect(name, step).await;
        }
        if step.get("connectRefused").is_some() {
            return self.connect_refused(step).await;
        }
        if let Some(name) = step["disconnect"].as_str() {
            self.clients
                .get_mut(name)
                .ok_or("no such client")?
                .disconnect();
            return Ok(());
        }
        if let Some(name) = step["resume"].as_str() {
            return self.resume(name).await;
        }
        if let Some(action) = step["do"].as_str() {
            return self.act(action, step).await;
        }
        if let Some(name) = step["expect"].as_str() {
            return self
                .expect(name, step["events"].as_array().ok_or("events list")?)
                .await;
        }
        if let Some(name) = step["expectQuiet"].as_str() {
            let stream = self.stream(name)?;
            let extra = stream.drain_events(Duration::from_millis(300)).await;
            return compare_events(&extra, &[], &self.vars)
                .map_err(|table| format!("{name} should have seen nothing more: {table}"));
        }
        if let Some(name) = step["expectClosed"].as_str() {
            let stream = self.stream(name)?;
            if !stream.ends_within(Duration::from_secs(5)).await {
                return Err(format!("the server should have closed {name}'s stream"));
            }
            return Ok(());
        }
        if step.get("restart").is_some() {
            for client in self.clients.values_mut() {
                client.disconnect();
            }
            let app = self.app.take().unwrap();
            self.app = Some(app.restart().await);
            return Ok(());
        }
        if step.get("request").is_some() {
            return self.request(step).await;
        }
        Err("unknown step".into())
    }

    fn stream(&mut self, name: &str) -> Result<&mut SseStream, String> {
        self.clients
            .get_mut(name)
            .and_then(|c| c.stream.as_mut())
            .ok_or_else(|| format!("client {name} is not connected"))
    }

    async fn client_request(
        &self,
        step: &Value,
    ) -> Result<(String, Vec<(String, String)>), String> {
        let mut params = Vec::new();
        if let Some(thread) = step["thread"].as_str() {
            params.push(format!("thread={}", self.var(thread)?));
        }
        if let Some(position) = step["lastEventId"].as_i64() {
            params.push(format!("lastEventId={position}"));
        }
        if let Some(raw) = step["lastEventIdRaw"].as_str() {
            params.push(format!("lastEventId={raw}"));
        }
        if step["fromSnapshot"].as_bool() == Some(true) {
            let snapshot = self.app().threads(self.user(step), Page::default()).await;
            params.push(format!("lastEventId={}", snapshot["lastEventId"]));
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let mut headers = Vec::new();
        if let Some(user) = self.user(step) {
            headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", user.token),
            ));
        }
        if let Some(position) = step["lastEventIdHeader"].as_i64() {
            headers.push(("Last-Event-ID".to_string(), position.to_string()));
        }
        Ok((query, headers))
    }

    /// Opens a stream; `TestApp` checks its opening (`retry:`, then
    /// `connected` without an id).
    async fn open_stream(&self, query: &str, headers: &[(String, String)]) -> (SseStream, Value) {
        self.app().events_and_opening(query, &borrow(headers)).await
    }

    async fn connect(&mut self, name: &str, step: &Value) -> StepResult {
        let (query, headers) = self.client_request(step).await?;
        let (stream, connected) = self.open_stream(&query, &headers).await;
        if let Some(at) = step["connectedAt"].as_i64() {
            let got = &connected["data"]["lastEventId"];
            if got != &json!(at) {
                return Err(format!("connected.lastEventId should be {at}, got {got}"));
            }
        }
        self.clients.insert(
            name.to_string(),
            Client {
                stream: Some(stream),
                last_event_id: String::new(),
                query,
                headers,
            },
        );
        Ok(())
    }

    async fn connect_refused(&mut self, step: &Value) -> StepResult {
        let spec = &step["connectRefused"];
        let (query, headers) = self.client_request(spec).await?;
        match self.app().try_events(&query, &borrow(&headers)).await {
            Ok(_) => Err("the stream should have been refused".into()),
            Err((status, body)) => {
                let body: Value = serde_json::from_str(&body)
                    .map_err(|e| format!("error body not JSON: {e}: {body}"))?;
                check_error(step, status, &body)
            }
        }
    }

    /// Reconnects as a browser does: the same URL, with `Last-Event-ID` set
    /// to the last id seen.
    async fn resume(&mut self, name: &str) -> StepResult {
        let client = self.clients.get_mut(name).ok_or("no such client")?;
        client.disconnect();
        let mut headers: Vec<(String, String)> = client
            .headers
            .iter()
            .filter(|(n, _)| n != "Last-Event-ID")
            .cloned()
            .collect();
        if !client.last_event_id.is_empty() {
            headers.push(("Last-Event-ID".into(), client.last_event_id.clone()));
        }
        let query = client.query.clone();
        let (stream, _) = self.open_stream(&query, &headers).await;
        let client = self.clients.get_mut(name).unwrap();
        client.stream = Some(stream);
        client.headers = headers;
        Ok(())
    }

    /// A `do` step: one `TestApp` endpoint method per action.
    async fn act(&mut self, action: &str, step: &Value) -> StepResult {
        let user = self.user(step).ok_or("`do` needs `as`")?.clone();
        let text = |key: &str| {
            step[key]
                .as_str()
                .ok_or_else(|| format!("{action} needs a string {key:?}"))
        };
        let saved = |key: &str| match step[key].as_str() {
            Some(name) => self.var(name),
            None => Err(format!("{action} needs {key:?}, the name of a saved id")),
        };
        let app = self.app();
        let answer = match action {
            "createThread" => {
                app.try_create_thread(&user, text("title")?, text("content")?)
                    .await
            }
            "comment" => {
                app.try_comment(&user, &saved("thread")?, text("content")?)
                    .await
            }
            "likeThread" => app.try_like_thread(&user, &saved("thread")?).await,
            "unlikeThread" => app.try_unlike_thread(&user, &saved("thread")?).await,
            "likeComment" => app.try_like_comment(&user, &saved("comment")?).await,
            "unlikeComment" => app.try_unlike_comment(&user, &saved("comment")?).await,
            "deleteThread" => app.try_delete_thread(&user, &saved("thread")?).await,
            "deleteComment" => app.try_delete_comment(&user, &saved("comment")?).await,
            "editThread" => {
                let mut body = serde_json::Map::new();
                for key in ["title", "content"] {
                    if let Some(value) = step.get(key) {
                        body.insert(key.into(), value.clone());
                    }
                }
                app.try_edit_thread(&user, &saved("thread")?, Value::Object(body))
                    .await
            }
            "editComment" => {
                app.try_edit_comment(&user, &saved("comment")?, text("content")?)
                    .await
            }
            "lockThread" => app.try_lock(&user, &saved("thread")?, true).await,
            "unlockThread" => app.try_lock(&user, &saved("thread")?, false).await,
            "pinThread" => app.try_pin(&user, &saved("thread")?, true).await,
            "unpinThread" => app.try_pin(&user, &saved("thread")?, false).await,
            "ban" => {
                let mut body = serde_json::Map::new();
                for key in ["reason", "until"] {
                    if let Some(value) = step.get(key) {
                        body.insert(key.into(), value.clone());
                    }
                }
                app.try_ban(&user, &saved("user")?, Value::Object(body))
                    .await
            }
            "unban" => app.try_unban(&user, &saved("user")?).await,
            other => return Err(format!("unknown action {other}")),
        };
        if step.get("status").is_none() && !answer.status.is_success() {
            return Err(format!(
                "{action} failed with {}: {}",
                answer.status, answer.text
            ));
        }
        if let Some(save) = step["save"].as_str() {
            let id = answer.body["thread"]["id"]
                .as_str()
                .or(answer.body["comment"]["id"].as_str())
                .ok_or("nothing to save")?;
            self.vars.insert(save.to_string(), json!(id));
        }
        self.check_answer(step, &answer)
    }

    async fn expect(&mut self, name: &str, expected: &[Value]) -> StepResult {
        let frames = expected
            .iter()
            .map(|want| {
                let id = match want.get("id") {
                    None | Some(Value::Null) => None,
                    Some(id) => Some(id.as_i64().ok_or("an id is a number or null")?),
                };
                let kind = want["type"]
                    .as_str()
                    .ok_or("an expected event needs a type")?;
                let mut frame = crate::expect::frame(id, kind, any());
                if let Some(data) = want.get("data") {
                    frame.data = data.clone();
                }
                Ok(frame)
            })
            .collect::<Result<Vec<Frame>, String>>()?;
        let received = self.stream(name)?.take_events(frames.len()).await;
        compare_events(&received, &frames, &self.vars)
            .map_err(|table| format!("{name}: {table}"))?;
        for message in &received {
            let got = message.json();
            let timestamp = got["timestamp"].as_str().unwrap_or_default();
            if chrono::DateTime::parse_from_rfc3339(timestamp).is_err() {
                return Err(format!(
                    "{name}: timestamp {timestamp:?} is not RFC 3339 in {got}"
                ));
            }
        }
        Ok(())
    }

    /// A `request` step: any request, built by hand.
    async fn request(&mut self, step: &Value) -> StepResult {
        let spec = &step["request"];
        let method =
            Method::from_bytes(spec["method"].as_str().unwrap_or("GET").as_bytes()).unwrap();
        let path = self.fill(spec["path"].as_str().ok_or("request.path")?);
        let mut request = self.app().client.request(method, self.app().url(&path));
        if let Some(user) = self.user(spec) {
            request = request.bearer_auth(&user.token);
        }
        if let Some(name) = spec["cookieAs"].as_str() {
            request = request.header("Cookie", format!("stoa_session={}", self.users[name].token));
        }
        if let Some(headers) = spec["headers"].as_object() {
            for (name, value) in headers {
                request = request.header(name, self.fill(value.as_str().unwrap()));
            }
        }
        if let Some(body) = spec.get("body") {
            let body = self.fill(&body.to_string());
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        if let Some(raw) = spec["rawBody"].as_str() {
            request = request.body(raw.to_string());
        }
        if let Some(size) = spec["bodyOfSize"].as_u64() {
            let padding = "x".repeat(size as usize);
            request = request
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"title":"{padding}"}}"#));
        }
        if let Some(content_type) = spec["contentType"].as_str() {
            request = request.header("Content-Type", content_type);
        }
        let answer = self.app().send(request).await;
        if !answer.text.is_empty() && answer.body.is_null() {
            return Err(format!("non-JSON answer: {}", answer.text));
        }
        self.check_answer(step, &answer)
    }

    /// The expectations a `do` or `request` step may carry: `response`
    /// (the body, as a pattern), `responseHeaders`, and `status` with
    /// `code`, `field` and `messageMentions`.
    fn check_answer(&self, step: &Value, answer: &Answer) -> StepResult {
        if let Some(expected) = step.get("response") {
            matches(expected, &answer.body, "response", &self.vars)?;
        }
        if let Some(wanted) = step["responseHeaders"].as_object() {
            for (name, value) in wanted {
                let got = answer.header(name);
                let present_is_enough = value == "$any" && got.is_some();
                if got != value.as_str() && !present_is_enough {
                    return Err(format!("header {name}: expected {value}, got {got:?}"));
                }
            }
        }
        if step.get("status").is_some() {
            check_error(step, answer.status.as_u16(), &answer.body)?;
        }
        Ok(())
    }
}

fn borrow(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// `"status"`, and for errors the `"code"` and `"field"`, of an answer.
fn check_error(step: &Value, status: u16, body: &Value) -> StepResult {
    let want = step["status"].as_u64().ok_or("status")? as u16;
    if status != want {
        return Err(format!("expected status {want}, got {status}: {body}"));
    }
    if status >= 400 {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if message.is_empty() {
            return Err(format!("an error needs a message: {body}"));
        }
        if let Some(code) = step["code"].as_str() {
            if body["error"]["code"] != code {
                return Err(format!("expected code {code}, got {body}"));
            }
        }
        if let Some(field) = step["field"].as_str() {
            if body["error"]["field"] != field {
                return Err(format!("expected field {field}, got {body}"));
            }
        }
        if let Some(mentions) = step["messageMentions"].as_str() {
            if !message.contains(mentions) {
                return Err(format!(
                    "the message should mention {mentions:?}: {message}"
                ));
            }
        }
    }
    Ok(())
}
