//! Runs every scenario file in `fixtures/scenarios/`: a sequence of actions
//! (as users) and the exact events each connected client must see, ids
//! included. Adding a case is adding a file; the format is described in
//! `fixtures/scenarios/README.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Session, TestApp};
use crate::sse_client::SseStream;

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
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let scenario: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(panic) = tokio::spawn(run(scenario)).await {
            failures.push(format!("{name}: {panic}"));
        } else {
            println!("scenario {name}: passed");
        }
    }
    assert!(
        failures.is_empty(),
        "failed scenarios:\n{}",
        failures.join("\n")
    );
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
    vars: HashMap<String, Value>,
    clients: HashMap<String, Client>,
}

async fn run(scenario: Value) {
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
        vars: HashMap::new(),
        clients: HashMap::new(),
    };
    for (index, step) in scenario["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .enumerate()
    {
        let context = format!("step {} {}", index + 1, step);
        let outcome = runner.step(step).await;
        if let Err(message) = outcome {
            panic!("{context}: {message}");
        }
    }
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
            if !extra.is_empty() {
                return Err(format!(
                    "{name} should have seen nothing more, got {extra:?}"
                ));
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
            let snapshot = self.app().threads(self.user(step)).await;
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

    /// Opens a stream and checks its opening: `retry:`, then `connected`
    /// without an id.
    async fn open_stream(
        &self,
        query: &str,
        headers: &[(String, String)],
    ) -> Result<(SseStream, Value), String> {
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let path = format!("/api/community/events{query}");
        let mut stream = SseStream::connect(self.app().addr, &path, &borrowed).await;
        let connected = stream.next().await;
        if connected.kind() != "connected" || connected.id.is_some() {
            return Err(format!(
                "expected a `connected` message without id, got {connected:?}"
            ));
        }
        if stream.retry.is_none() {
            return Err("the stream should open with a retry: field".into());
        }
        Ok((stream, connected.json()))
    }

    async fn connect(&mut self, name: &str, step: &Value) -> StepResult {
        let (query, headers) = self.client_request(step).await?;
        let (stream, connected) = self.open_stream(&query, &headers).await?;
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
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match SseStream::try_connect(
            self.app().addr,
            &format!("/api/community/events{query}"),
            &borrowed,
        )
        .await
        {
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
        let (stream, _) = self.open_stream(&query, &headers).await?;
        let client = self.clients.get_mut(name).unwrap();
        client.stream = Some(stream);
        client.headers = headers;
        Ok(())
    }

    async fn act(&mut self, action: &str, step: &Value) -> StepResult {
        let user = self.user(step).ok_or("`do` needs `as`")?.clone();
        let target = |key: &str| self.var(step[key].as_str().unwrap_or_default());
        let (method, path, body) = match action {
            "createThread" => (
                Method::POST,
                "/api/community/threads".to_string(),
                Some(json!({"title": step["title"], "content": step["content"]})),
            ),
            "comment" => (
                Method::POST,
                "/api/community/comment".to_string(),
                Some(json!({"threadId": target("thread")?, "content": step["content"]})),
            ),
            "likeThread" => (
                Method::POST,
                "/api/community/like".into(),
                Some(json!({"threadId": target("thread")?})),
            ),
            "unlikeThread" => (
                Method::DELETE,
                "/api/community/like".into(),
                Some(json!({"threadId": target("thread")?})),
            ),
            "likeComment" => (
                Method::POST,
                "/api/community/like".into(),
                Some(json!({"commentId": target("comment")?})),
            ),
            "unlikeComment" => (
                Method::DELETE,
                "/api/community/like".into(),
                Some(json!({"commentId": target("comment")?})),
            ),
            "deleteThread" => (
                Method::DELETE,
                format!("/api/community/threads/{}", target("thread")?),
                None,
            ),
            "deleteComment" => (
                Method::DELETE,
                format!("/api/community/comments/{}", target("comment")?),
                None,
            ),
            other => return Err(format!("unknown action {other}")),
        };
        let (status, response) = self
            .app()
            .request(method, &path, Some(&user.token), body)
            .await;
        if !status.is_success() {
            return Err(format!("{action} failed with {status}: {response}"));
        }
        if let Some(save) = step["save"].as_str() {
            let id = response["thread"]["id"]
                .as_str()
                .or(response["comment"]["id"].as_str())
                .ok_or("nothing to save")?;
            self.vars.insert(save.to_string(), json!(id));
        }
        if let Some(expected) = step.get("response") {
            self.matches(expected, &response, "response")?;
        }
        Ok(())
    }

    async fn expect(&mut self, name: &str, expected: &[Value]) -> StepResult {
        let mut seen = Vec::new();
        for want in expected {
            let message = {
                let stream = self.stream(name)?;
                match tokio::time::timeout(Duration::from_secs(5), stream.next_event()).await {
                    Ok(message) => message,
                    Err(_) => {
                        return Err(format!(
                            "{name} got only {seen:?}, still waiting for {want}"
                        ))
                    }
                }
            };
            let got = message.json();
            seen.push(got.clone());
            let id = message.id_number();
            match want.get("id") {
                Some(Value::Null) | None => {
                    if id.is_some() {
                        return Err(format!("{name}: expected no id on {got}, got {id:?}"));
                    }
                }
                Some(want_id) => {
                    if Some(want_id.as_i64().unwrap()) != id {
                        return Err(format!(
                            "{name}: expected id {want_id}, got {id:?} for {got}"
                        ));
                    }
                }
            }
            if got["type"] != want["type"] {
                return Err(format!(
                    "{name}: expected a {} event, got {got}",
                    want["type"]
                ));
            }
            if let Some(data) = want.get("data") {
                self.matches(data, &got["data"], &format!("{name} {} data", want["type"]))?;
            }
            let timestamp = got["timestamp"].as_str().unwrap_or_default();
            if chrono::DateTime::parse_from_rfc3339(timestamp).is_err() {
                return Err(format!("{name}: timestamp {timestamp:?} is not RFC 3339"));
            }
        }
        Ok(())
    }

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
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| format!("non-JSON answer: {text}"))?
        };
        if let Some(expected) = step.get("response") {
            self.matches(expected, &body, "response")?;
        }
        if let Some(wanted) = step["responseHeaders"].as_object() {
            for (name, value) in wanted {
                let got = headers.get(name).and_then(|v| v.to_str().ok());
                let present_is_enough = value == "$any" && got.is_some();
                if got != value.as_str() && !present_is_enough {
                    return Err(format!("header {name}: expected {value}, got {got:?}"));
                }
            }
        }
        if step.get("status").is_some() {
            check_error(step, status, &body)?;
        }
        Ok(())
    }

    /// Compares JSON: objects key for key, `"$any"` matches anything,
    /// `"$timestamp"` an RFC 3339 time, `"$name"` a saved value.
    fn matches(&self, expected: &Value, got: &Value, at: &str) -> StepResult {
        match expected {
            Value::String(s) if s == "$any" => Ok(()),
            Value::String(s) if s == "$timestamp" => {
                match got.as_str().map(chrono::DateTime::parse_from_rfc3339) {
                    Some(Ok(_)) => Ok(()),
                    _ => Err(format!("{at}: expected a timestamp, got {got}")),
                }
            }
            Value::String(s) if s.starts_with('$') => {
                let value = self.var(&s[1..])?;
                if got.as_str() == Some(value.as_str()) {
                    Ok(())
                } else {
                    Err(format!("{at}: expected {s} ({value}), got {got}"))
                }
            }
            Value::Object(want) => {
                let have = got
                    .as_object()
                    .ok_or_else(|| format!("{at}: expected an object, got {got}"))?;
                let mut want_keys: Vec<_> = want.keys().collect();
                let mut have_keys: Vec<_> = have.keys().collect();
                want_keys.sort();
                have_keys.sort();
                if want_keys != have_keys {
                    return Err(format!(
                        "{at}: expected keys {want_keys:?}, got {have_keys:?} in {got}"
                    ));
                }
                for (key, value) in want {
                    self.matches(value, &have[key], &format!("{at}.{key}"))?;
                }
                Ok(())
            }
            Value::Array(want) => {
                let have = got
                    .as_array()
                    .ok_or_else(|| format!("{at}: expected an array, got {got}"))?;
                if want.len() != have.len() {
                    return Err(format!("{at}: expected {} items, got {got}", want.len()));
                }
                for (i, (w, h)) in want.iter().zip(have).enumerate() {
                    self.matches(w, h, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            _ if expected == got => Ok(()),
            _ => Err(format!("{at}: expected {expected}, got {got}")),
        }
    }
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
