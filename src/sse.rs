//! One event stream: the opening `retry:` and `connected` messages, replay
//! from a client's position, live events, pings, `resync`, and the framing
//! of each message (WHATWG HTML, "Server-sent events").
//!
//! A stream is a task with a cursor: the id of the last event it has passed.
//! It sends whatever lies after the cursor, from the hub's in-memory window
//! when the cursor is inside it, else from the outbox table, then waits for
//! the hub to move. Replay, live delivery and catching up after a stall are
//! the same loop, so there is no seam between them where an event could be
//! lost or sent twice. The stream's body is a small bounded channel: a
//! reader that stops reading stops its own task, and nobody else's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply;

use crate::api::error::ApiError;
use crate::db::{outbox, Db};
use crate::hub::{Audience, Event, Hub, Lookup, StreamGuard};
use crate::metrics::Metrics;

/// Frames queued for a stream's socket; a reader that stops reading holds
/// at most this many.
const QUEUE: usize = 16;
/// Events taken from the hub or the outbox in one go.
const BATCH: usize = 128;

/// What every stream shares.
#[derive(Clone)]
pub struct Streams {
    pub hub: Arc<Hub>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub ping_interval: Duration,
    pub shutdown: watch::Receiver<bool>,
}

/// A client's resume position: the `Last-Event-ID` header, else the
/// `lastEventId` query parameter. `None` means "from now on".
pub fn position(header: Option<&str>, query: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = header.or(query).map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(id) if id >= 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(id)),
        _ => Err(ApiError::bad_request(format!(
            "Last-Event-ID / lastEventId must be a non-negative integer event id, got {raw:?}"
        ))),
    }
}

/// Opens a stream for `audience`, resuming after `position` if given.
pub async fn open(
    streams: Streams,
    guard: StreamGuard,
    position: Option<i64>,
    audience: Audience,
) -> Result<Response, ApiError> {
    let range = streams.db.read(|tx| outbox::range(tx)).await?;
    let (cursor, resync) = match position {
        Some(position) if range.can_resume_from(position) => {
            streams.metrics.replays.add(1);
            (position, false)
        }
        Some(_) => {
            streams.metrics.resyncs.add(1);
            (range.latest, true)
        }
        None => (range.latest, false),
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(QUEUE);
    let connection = uuid::Uuid::now_v7();
    let opening = opening_frames(connection, cursor, resync, &streams);
    streams.metrics.streams_opened.add(1);
    tracing::info!(%connection, from = cursor, resync, thread = ?audience.thread, "stream opened");
    tokio::spawn(async move {
        run(streams, guard, tx, opening, cursor, audience).await;
        tracing::info!(%connection, "stream closed");
    });

    let mut response = warp::reply::stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // nginx and other proxies must pass each message on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `retry:` (jittered, so a restart does not bring every client back in the
/// same instant), `connected`, the online count, and `resync` when the
/// position was unusable.
fn opening_frames(connection: uuid::Uuid, cursor: i64, resync: bool, streams: &Streams) -> Bytes {
    let ping_interval = streams.ping_interval;
    let retry_ms = rand::thread_rng().gen_range(1000..4000);
    let connected = format!(
        r#"{{"connectionId":"{connection}","lastEventId":{cursor},"pingInterval":{}}}"#,
        ping_interval.as_millis()
    );
    let mut frames = format!("retry: {retry_ms}\n\n");
    frames.push_str(&message("connected", &connected));
    let online = streams.hub.connections();
    frames.push_str(&message("presence", &format!(r#"{{"online":{online}}}"#)));
    if resync {
        frames.push_str(&message(
            "resync",
            &format!(r#"{{"lastEventId":{cursor}}}"#),
        ));
    }
    Bytes::from(frames)
}

/// A message without an `id:` line (not stored, not resumable).
fn message(kind: &str, data: &str) -> String {
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!("data: {{\"type\":\"{kind}\",\"data\":{data},\"timestamp\":\"{timestamp}\"}}\n\n")
}

/// Why a stream stopped sending.
struct Closed;

async fn run(
    streams: Streams,
    _guard: StreamGuard,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    opening: Bytes,
    mut cursor: i64,
    audience: Audience,
) {
    let mut latest = streams.hub.watch_latest();
    let mut presence = streams.hub.watch_presence();
    let mut shutdown = streams.shutdown.clone();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + streams.ping_interval,
        streams.ping_interval,
    );
    if tx.send(Ok(opening)).await.is_err() {
        return;
    }
    loop {
        latest.borrow_and_update();
        if catch_up(&streams, &tx, &mut cursor, &audience)
            .await
            .is_err()
        {
            return;
        }
        let sent = tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() { return; }
                Ok(())
            }
            _ = presence.changed() => {
                let count = *presence.borrow_and_update();
                send(&tx, message("presence", &format!(r#"{{"online":{count}}}"#)).into()).await
            }
            _ = ping.tick() => send(&tx, message("ping", "{}").into()).await,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Sends every wanted event after `cursor`, advancing it.
async fn catch_up(
    streams: &Streams,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    cursor: &mut i64,
    audience: &Audience,
) -> Result<(), Closed> {
    loop {
        match streams.hub.after(*cursor, audience, BATCH) {
            Lookup::Ready(events, next) => {
                let done = next == *cursor;
                for event in events {
                    send(tx, event.frame.clone()).await?;
                    streams.metrics.events_sent.add(1);
                }
                *cursor = next;
                if done {
                    return Ok(());
                }
            }
            Lookup::Behind => {
                streams.metrics.outbox_catch_ups.add(1);
                let after = *cursor;
                let rows = match streams
                    .db
                    .read(move |tx| outbox::after(tx, after, BATCH))
                    .await
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        // The client resumes by its last id on reconnect.
                        tracing::warn!(%error, "reading the outbox for a stream failed; closing it");
                        streams.metrics.lagging_streams_closed.add(1);
                        return Err(Closed);
                    }
                };
                let Some(last) = rows.last().map(|row| row.id) else {
                    return Ok(());
                };
                for row in rows {
                    if audience.wants(row.thread_id.as_deref(), row.recipient_id.as_deref()) {
                        send(tx, Event::from_row(row).frame).await?;
                        streams.metrics.events_sent.add(1);
                    }
                }
                *cursor = last;
            }
        }
    }
}

async fn send(tx: &mpsc::Sender<Result<Bytes, Infallible>>, frame: Bytes) -> Result<(), Closed> {
    tx.send(Ok(frame)).await.map_err(|_| Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(position(Some("7"), Some("3")).unwrap(), Some(7));
        assert_eq!(position(None, Some("3")).unwrap(), Some(3));
        assert_eq!(position(None, None).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn any_position_text_is_parsed_or_refused_never_misread(raw in "\\PC{0,24}") {
            let parsed = position(Some(&raw), None);
            let trimmed = raw.trim();
            let valid = !trimmed.is_empty()
                && trimmed.bytes().all(|b| b.is_ascii_digit())
                && trimmed.parse::<i64>().is_ok();
            match parsed {
                Ok(Some(id)) => proptest::prop_assert!(valid && trimmed.parse::<i64>() == Ok(id)),
                Ok(None) => proptest::prop_assert!(trimmed.is_empty()),
                Err(_) => proptest::prop_assert!(!valid),
            }
        }
    }

    #[test]
    fn a_malformed_position_is_refused() {
        for bad in ["-1", "abc", "1.5", "+3", "99999999999999999999"] {
            assert!(
                position(Some(bad), None).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
