//! One event stream: the opening `retry:` and `connected` messages, replay
//! from a client's position, live events, pings and `resync` (WHATWG HTML,
//! "Server-sent events"); the frames themselves are built in `hub.rs`.
//!
//! A stream is a cursor: the id of the last event it has passed. Its body
//! ([`EventStream`]) is polled by the connection that sends it, and yields
//! whatever lies after the cursor: from the hub's in-memory window when the
//! cursor is inside it, else from the outbox table; when there is nothing,
//! it sends the hub's current presence or ping frame if it has not yet, and
//! otherwise waits on the hub's change signal. Replay, live delivery and
//! catching up after a stall are the same loop, so there is no seam between
//! them where an event could be lost or sent twice. Nothing is pushed at a
//! stream: a reader that stops reading stops being polled, holds its cursor
//! and what its socket buffers, and delays nobody. There is no task, queue
//! or timer per stream, only the connection's own task; waiting costs one
//! waker in the hub's list.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rand::Rng;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply;

use crate::api::error::ApiError;
use crate::db::{outbox, Db, DbResult};
use crate::hub::{message, presence_message, Audience, Event, Hub, Lookup, StreamGuard};
use crate::metrics::Metrics;
use crate::signal::Subscription;

/// Events taken from the hub or the outbox in one go.
const BATCH: usize = 128;

/// What every stream shares.
#[derive(Clone)]
pub struct Streams {
    pub hub: Arc<Hub>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub ping_interval: Duration,
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

    let connection = uuid::Uuid::now_v7();
    let opening = opening_frames(connection, cursor, resync, &streams);
    streams.metrics.streams_opened.add(1);
    tracing::info!(%connection, from = cursor, resync, thread = ?audience.thread, "stream opened");
    let body = EventStream::new(streams, guard, connection, opening, cursor, audience);

    let mut response = warp::reply::stream(body).into_response();
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
    frames.push_str(&presence_message(streams.hub.connections()));
    if resync {
        frames.push_str(&message(
            "resync",
            &format!(r#"{{"lastEventId":{cursor}}}"#),
        ));
    }
    Bytes::from(frames)
}

type CatchUp = Pin<Box<dyn Future<Output = DbResult<Vec<outbox::Row>>> + Send + Sync>>;

/// The body of one stream. Holds its place in the outbox and yields frames
/// when polled; dropping it (the client went away) closes the stream.
pub struct EventStream {
    streams: Streams,
    _guard: StreamGuard,
    connection: uuid::Uuid,
    audience: Audience,
    /// The id of the last event passed (sent, or skipped as not wanted).
    cursor: i64,
    /// Frames ready to go, in order.
    ready: VecDeque<Bytes>,
    /// A read of the outbox for a cursor behind the in-memory window.
    catching_up: Option<CatchUp>,
    /// The hub's change signal, as far as this stream has seen it.
    changes: Subscription,
    /// The generations of the hub's presence and ping frames last sent.
    presence_seen: u64,
    ping_seen: u64,
}

impl EventStream {
    fn new(
        streams: Streams,
        guard: StreamGuard,
        connection: uuid::Uuid,
        opening: Bytes,
        cursor: i64,
        audience: Audience,
    ) -> EventStream {
        // The opening frames carry the live count, and the first ping comes
        // at the server's next tick: neither of the current frames is due.
        EventStream {
            changes: streams.hub.changes().subscribe(),
            presence_seen: streams.hub.presence().generation(),
            ping_seen: streams.hub.pings().generation(),
            streams,
            _guard: guard,
            connection,
            audience,
            cursor,
            ready: VecDeque::from([opening]),
            catching_up: None,
        }
    }

    /// Fills `ready` with what lies after the cursor, if anything does;
    /// `Pending` while an outbox read is in flight; `Err` when the stream
    /// must close (the read failed: the client resumes by its last id).
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        loop {
            if let Some(read) = &mut self.catching_up {
                let rows = match read.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(rows)) => rows,
                    Poll::Ready(Err(error)) => {
                        tracing::warn!(%error, connection = %self.connection, "reading the outbox for a stream failed; closing it");
                        self.streams.metrics.lagging_streams_closed.add(1);
                        return Poll::Ready(Err(()));
                    }
                };
                self.catching_up = None;
                let Some(last) = rows.last().map(|row| row.id) else {
                    return Poll::Ready(Ok(()));
                };
                for row in rows {
                    if self
                        .audience
                        .wants(row.thread_id.as_deref(), row.recipient_id.as_deref())
                    {
                        self.ready.push_back(Event::from_row(row).frame);
                        self.streams.metrics.events_sent.add(1);
                    }
                }
                self.cursor = last;
                if !self.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match self.streams.hub.after(self.cursor, &self.audience, BATCH) {
                Lookup::Ready(events, next) => {
                    let passed = next != self.cursor;
                    self.ready
                        .extend(events.iter().map(|event| event.frame.clone()));
                    self.streams.metrics.events_sent.add(events.len() as u64);
                    self.cursor = next;
                    if !self.ready.is_empty() || !passed {
                        return Poll::Ready(Ok(()));
                    }
                }
                Lookup::Behind => {
                    self.streams.metrics.outbox_catch_ups.add(1);
                    let after = self.cursor;
                    let db = self.streams.db.clone();
                    self.catching_up = Some(Box::pin(async move {
                        db.read(move |tx| outbox::after(tx, after, BATCH)).await
                    }));
                }
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.streams.hub.is_closed() {
                return Poll::Ready(None);
            }
            if let Some(frame) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            match this.fill(cx) {
                Poll::Ready(Err(())) => return Poll::Ready(None),
                Poll::Ready(Ok(())) if !this.ready.is_empty() => continue,
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
            // No events to send now (or an outbox read in flight, which
            // wakes the stream itself): a new online count or a ping, if
            // not sent yet.
            let hub = &this.streams.hub;
            if let Some(frame) = hub.presence().since(&mut this.presence_seen) {
                return Poll::Ready(Some(Ok(frame)));
            }
            if let Some(frame) = hub.pings().since(&mut this.ping_seen) {
                return Poll::Ready(Some(Ok(frame)));
            }
            // Else wait for the hub to change. Checked after looking, so a
            // change in between is not missed; a wake-up while a read is in
            // flight only polls the read again.
            if hub
                .changes()
                .poll_changed(&mut this.changes, cx)
                .is_pending()
            {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        tracing::info!(connection = %self.connection, "stream closed");
    }
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
