//! A test client for the event stream over a raw TCP connection: it sends
//! the request itself, decodes the body (chunked, or ended by closing the
//! connection, as stoa sends streams it serves directly), and parses messages by the
//! WHATWG "Server-sent events" rules, so the tests see exactly the bytes a
//! browser would.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long any single read may take before the test fails instead of
/// hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One dispatched message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `id:` of this message, if it had one.
    pub id: Option<String>,
    pub data: String,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("message data is not JSON ({e}): {}", self.data))
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }

    pub fn id_number(&self) -> Option<i64> {
        self.id.as_ref().map(|id| id.parse().expect("numeric id"))
    }
}

pub struct SseStream {
    pub headers: Vec<(String, String)>,
    pub retry: Option<u64>,
    /// The stream's last event id, as a browser would keep it.
    pub last_event_id: String,
    /// Filled by a reader task, so waiting with a timeout never loses a
    /// half-read line.
    items: mpsc::UnboundedReceiver<Item>,
    /// The reader task, which owns the socket: dropping the stream closes
    /// the connection at once, as closing a browser tab does.
    _reader: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a stream gave within a wait.
#[cfg_attr(not(stoa_test_cluster), allow(dead_code))]
pub enum Next {
    Message(Message),
    /// Nothing came.
    Quiet,
    /// The server ended the stream.
    Ended,
}

enum Item {
    Retry(u64),
    Message(Message),
}

impl SseStream {
    /// Opens `path` (with its query) and checks for a 200 event stream.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
        match Self::try_connect(addr, path, headers).await {
            Ok(stream) => stream,
            Err((status, body)) => {
                panic!("expected an event stream from {path}, got {status}: {body}")
            }
        }
    }

    /// Like `connect`, but a non-200 answer comes back as its status and body.
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<SseStream, (u16, String)> {
        Self::read_response(Self::send_request(addr, path, headers).await).await
    }

    /// Sends the request and returns the socket without reading anything:
    /// a client that has stopped reading. `read_response` picks it up.
    pub async fn send_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TcpStream {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        socket
    }

    pub async fn read_response(socket: TcpStream) -> Result<SseStream, (u16, String)> {
        let mut reader = BufReader::new(socket);
        let status_line = read_line(&mut reader).await;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader).await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let mut body = Body {
            reader,
            chunked,
            pending: Vec::new(),
        };
        if status != 200 {
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, l)| l.parse().ok());
            return Err((status, body.read_all(length).await));
        }
        let (tx, items) = mpsc::unbounded_channel();
        let reader = AbortOnDrop(tokio::spawn(parse(body, tx)).abort_handle());
        Ok(SseStream {
            headers,
            retry: None,
            last_event_id: String::new(),
            items,
            _reader: reader,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next dispatched message, or `None` if the stream ended or nothing
    /// came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.next_or_end())
            .await
            .ok()
            .flatten()
    }

    /// The next message within `wait`, told apart from a quiet stream and
    /// from one the server ended.
    #[cfg_attr(not(stoa_test_cluster), allow(dead_code))]
    pub async fn next_or_quiet(&mut self, wait: Duration) -> Next {
        match tokio::time::timeout(wait, self.next_or_end()).await {
            Ok(Some(message)) => Next::Message(message),
            Ok(None) => Next::Ended,
            Err(_) => Next::Quiet,
        }
    }

    /// The next message; fails the test if none comes within [`READ_TIMEOUT`].
    pub async fn next(&mut self) -> Message {
        self.next_within(READ_TIMEOUT)
            .await
            .expect("a message should arrive (stream ended or timed out)")
    }

    /// The next message whose type is not `ping` or `presence`.
    pub async fn next_event(&mut self) -> Message {
        loop {
            let message = self.next().await;
            if !matches!(message.kind().as_str(), "ping" | "presence") {
                return message;
            }
        }
    }

    /// Up to `count` messages that are not `ping` or `presence`, each
    /// waited for up to [`READ_TIMEOUT`]: fewer if the stream ends or goes
    /// quiet, so a comparison can show what is missing.
    pub async fn take_events(&mut self, count: usize) -> Vec<Message> {
        let mut seen = Vec::with_capacity(count);
        while seen.len() < count {
            match self.next_within(READ_TIMEOUT).await {
                Some(message) if matches!(message.kind().as_str(), "ping" | "presence") => {}
                Some(message) => seen.push(message),
                None => break,
            }
        }
        seen
    }

    /// Waits `wait` and returns every non-ping, non-presence message seen.
    pub async fn drain_events(&mut self, wait: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(message) = self
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            if !matches!(message.kind().as_str(), "ping" | "presence") {
                seen.push(message);
            }
        }
        seen
    }

    /// Whether the server ends the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.next_or_end()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn next_or_end(&mut self) -> Option<Message> {
        loop {
            match self.items.recv().await? {
                Item::Retry(ms) => self.retry = Some(ms),
                Item::Message(message) => {
                    if let Some(id) = &message.id {
                        self.last_event_id = id.clone();
                    }
                    return Some(message);
                }
            }
        }
    }
}

/// The decoded body of a response.
struct Body {
    reader: BufReader<TcpStream>,
    /// Chunked, else it runs until the connection closes.
    chunked: bool,
    pending: Vec<u8>,
}

impl Body {
    async fn read_all(&mut self, length: Option<usize>) -> String {
        if let Some(length) = length {
            let mut body = vec![0; length];
            tokio::time::timeout(READ_TIMEOUT, self.reader.read_exact(&mut body))
                .await
                .expect("body in time")
                .expect("body");
            return String::from_utf8_lossy(&body).into_owned();
        }
        while self.read_more().await {}
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Reads more of the body into `pending`; false at its end.
    async fn read_more(&mut self) -> bool {
        if self.chunked {
            return self.read_chunk().await;
        }
        let mut buffer = [0; 4096];
        match self.reader.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buffer[..n]);
                true
            }
        }
    }

    /// Reads one chunk into `pending`; false at the end of the body.
    async fn read_chunk(&mut self) -> bool {
        let mut size_line = String::new();
        match self.reader.read_line(&mut size_line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            return false;
        }
        let mut chunk = vec![0; size + 2];
        if self.reader.read_exact(&mut chunk).await.is_err() {
            return false;
        }
        self.pending.extend_from_slice(&chunk[..size]);
        true
    }

    /// One line from `pending`, ended by CRLF, LF or CR.
    fn take_line(&mut self) -> Option<String> {
        let end = self
            .pending
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')?;
        // A CR at the very end may be the first half of a CRLF: wait for more.
        if self.pending[end] == b'\r' && end + 1 == self.pending.len() {
            return None;
        }
        let crlf = self.pending[end] == b'\r' && self.pending.get(end + 1) == Some(&b'\n');
        let line = String::from_utf8(self.pending[..end].to_vec()).expect("UTF-8 stream");
        self.pending.drain(..end + if crlf { 2 } else { 1 });
        Some(line)
    }
}

/// Parses the body by the WHATWG field rules until it ends.
async fn parse(mut body: Body, tx: mpsc::UnboundedSender<Item>) {
    let mut data = String::new();
    let mut id: Option<String> = None;
    loop {
        while let Some(line) = body.take_line() {
            if line.is_empty() {
                if !data.is_empty() {
                    if data.ends_with('\n') {
                        data.pop();
                    }
                    let message = Message {
                        id: id.take(),
                        data: std::mem::take(&mut data),
                    };
                    if tx.send(Item::Message(message)).is_err() {
                        return;
                    }
                }
                id = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => id = Some(value.to_string()),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    let _ = tx.send(Item::Retry(value.parse().unwrap_or(0)));
                }
                _ => {}
            }
        }
        if !body.read_more().await {
            return;
        }
    }
}

async fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .expect("a line should arrive in time")
        .expect("read");
    line.trim_end_matches(['\r', '\n']).to_string()
}
