//! Every byte an event stream sends (WHATWG HTML, "Server-sent events"):
//! the frame of a stored event, messages without an id (`connected`,
//! `presence`, `ping`, `resync`), and the opening of a stream.
//!
//! A message's `data` is one line of JSON,
//! `{"type": ..., "data": {...}, "timestamp": ...}`; a stored event's frame
//! starts with `id: <outbox id>`, so a client resumes after it.

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;

use crate::db::Row;

/// `id: N` and the event's message: built once per event and shared by
/// every stream that sends it.
pub fn event_frame(row: &Row) -> Bytes {
    let mut frame = String::with_capacity(row.payload.len() + row.kind.len() + 80);
    let _ = writeln!(frame, "id: {}", row.id);
    push_message(&mut frame, &row.kind, &row.payload, &row.created_at);
    Bytes::from(frame)
}

/// A message without an `id:` line (not stored, not resumable), stamped now.
pub fn message(kind: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(data.len() + kind.len() + 64);
    push_message(
        &mut frame,
        kind,
        data,
        &crate::db::timestamp(chrono::Utc::now()),
    );
    Bytes::from(frame)
}

/// The `presence` message: how many streams are open.
pub fn presence(online: usize) -> Bytes {
    message("presence", &format!(r#"{{"online":{online}}}"#))
}

/// The `ping` message every stream gets on the server's ping interval.
pub fn ping() -> Bytes {
    message("ping", "{}")
}

/// What a stream's first bytes say.
#[derive(Debug, Clone)]
pub struct Opening {
    /// The reconnection delay the client should use (jittered per stream).
    pub retry: Duration,
    pub connection: uuid::Uuid,
    /// The position the stream continues from.
    pub last_event_id: i64,
    pub ping_interval: Duration,
    pub online: usize,
    /// The client's position could not be resumed: it must reload.
    pub resync: bool,
}

/// `retry:`, `connected`, the online count, and `resync` when the client's
/// position was unusable.
pub fn opening(opening: &Opening) -> Bytes {
    let connected = format!(
        r#"{{"connectionId":"{}","lastEventId":{},"pingInterval":{}}}"#,
        opening.connection,
        opening.last_event_id,
        opening.ping_interval.as_millis()
    );
    let mut frames = format!("retry: {}\n\n", opening.retry.as_millis()).into_bytes();
    frames.extend_from_slice(&message("connected", &connected));
    frames.extend_from_slice(&presence(opening.online));
    if opening.resync {
        let resync = format!(r#"{{"lastEventId":{}}}"#, opening.last_event_id);
        frames.extend_from_slice(&message("resync", &resync));
    }
    Bytes::from(frames)
}

/// Appends `data: {"type":kind,"data":data,"timestamp":at}` and the blank
/// line that ends the message.
fn push_message(frame: &mut String, kind: &str, data: &str, at: &str) {
    frame.push_str("data: {\"type\":");
    push_json_string(frame, kind);
    frame.push_str(",\"data\":");
    push_one_line(frame, data);
    frame.push_str(",\"timestamp\":");
    push_json_string(frame, at);
    frame.push_str("}\n\n");
}

fn push_json_string(frame: &mut String, text: &str) {
    // Writing a str into a String cannot fail.
    let _ = serde_json::to_writer(StringWriter(frame), text);
}

/// Appends a JSON document on one line: a line break would end the `data:`
/// field. Inside a JSON string a line break is always escaped, so one that
/// appears raw is whitespace between tokens and can go.
fn push_one_line(frame: &mut String, json: &str) {
    if json.contains(['\n', '\r']) {
        frame.extend(json.chars().filter(|c| !matches!(c, '\n' | '\r')));
    } else {
        frame.push_str(json);
    }
}

struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.0.push_str(text);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: &str) -> Row {
        Row {
            id: 42,
            kind: "new_comment".into(),
            thread_id: Some("t1".into()),
            recipient_id: None,
            payload: payload.into(),
            created_at: "2026-11-25T23:09:13.149Z".into(),
        }
    }

    #[test]
    fn an_event_frame_is_exactly_its_id_and_one_data_line() {
        let frame = event_frame(&row(r#"{"threadId":"t1","commentCount":3}"#));
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "id: 42\ndata: {\"type\":\"new_comment\",\"data\":{\"threadId\":\"t1\",\"commentCount\":3},\"timestamp\":\"2026-11-25T23:09:13.149Z\"}\n\n"
        );
    }

    #[test]
    fn a_payload_written_over_several_lines_still_goes_out_on_one() {
        let frame = event_frame(&row("{\n  \"text\": \"a\\nb\"\r\n}"));
        let text = std::str::from_utf8(&frame).unwrap();
        assert_eq!(text.matches('\n').count(), 3, "{text:?}");
        let data = text.strip_prefix("id: 42\ndata: ").unwrap().trim_end();
        let message: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(message["data"]["text"], "a\nb");
    }

    #[test]
    fn the_opening_is_retry_connected_and_presence_then_resync_if_due() {
        let mut opening = Opening {
            retry: Duration::from_millis(2500),
            connection: uuid::Uuid::nil(),
            last_event_id: 7,
            ping_interval: Duration::from_secs(30),
            online: 3,
            resync: false,
        };
        let text = String::from_utf8(super::opening(&opening).to_vec()).unwrap();
        let frames: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(frames.len(), 4, "{text:?}");
        assert_eq!(frames[0], "retry: 2500");
        let stamp = |frame: &str| {
            let at = frame.rfind(",\"timestamp\":\"").unwrap();
            (frame[..at].to_string(), frame[at..].len())
        };
        assert_eq!(
            stamp(frames[1]),
            (
                "data: {\"type\":\"connected\",\"data\":{\"connectionId\":\"00000000-0000-0000-0000-000000000000\",\"lastEventId\":7,\"pingInterval\":30000}".into(),
                ",\"timestamp\":\"2026-11-25T23:09:13.149Z\"}".len()
            )
        );
        assert_eq!(
            stamp(frames[2]).0,
            "data: {\"type\":\"presence\",\"data\":{\"online\":3}"
        );
        assert_eq!(frames[3], "");
        opening.resync = true;
        let text = String::from_utf8(super::opening(&opening).to_vec()).unwrap();
        let last = text.split("\n\n").nth(3).unwrap();
        assert_eq!(
            stamp(last).0,
            "data: {\"type\":\"resync\",\"data\":{\"lastEventId\":7}"
        );
    }
}
