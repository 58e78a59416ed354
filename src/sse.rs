//! One event stream: the opening, replay from a client's position, live
//! events, pings and `resync`; the bytes themselves are built by `wire.rs`,
//! and the HTTP response around them by `api/events.rs`.
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

use crate::db::{Db, DbResult, Row};
use crate::hub::{Audience, Event, Hub, Lookup, StreamGuard};
use crate::metrics::Metrics;
use crate::signal::Subscription;
use crate::wire;

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

/// Opens a stream for `audience`, resuming after `position` if given.
pub async fn open(
    streams: Streams,
    guard: StreamGuard,
    position: Option<i64>,
    audience: Audience,
) -> DbResult<EventStream> {
    let range = streams.db.outbox_range().await?;
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
    let opening = wire::opening(&wire::Opening {
        // Jittered, so a restart does not bring every client back in the
        // same instant.
        retry: Duration::from_millis(rand::thread_rng().gen_range(1000..4000)),
        connection,
        last_event_id: cursor,
        ping_interval: streams.ping_interval,
        online: streams.hub.online(),
        resync,
    });
    streams.metrics.streams_opened.add(1);
    tracing::info!(%connection, from = cursor, resync, thread = ?audience.thread, "stream opened");
    Ok(EventStream::new(
        streams, guard, connection, opening, cursor, audience,
    ))
}

/// A read of the outbox, run as a task of its own: a stream's body must be
/// `Sync`, and a database driver's futures need not be.
type CatchUp = tokio::task::JoinHandle<DbResult<Vec<Row>>>;

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
    /// A ban of this stream's user was queued: close once `ready` is sent.
    closing: bool,
    /// Pings before this are dropped: the shared ping timer may tick just
    /// after a stream opens, and its opening already showed it alive.
    first_ping: tokio::time::Instant,
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
            // Half an interval: the longest silence is then one and a half
            // intervals, within the client's watchdog of two.
            first_ping: tokio::time::Instant::now() + streams.ping_interval / 2,
            streams,
            _guard: guard,
            connection,
            audience,
            cursor,
            ready: VecDeque::from([opening]),
            catching_up: None,
            closing: false,
        }
    }

    /// Fills `ready` with what lies after the cursor, if anything does;
    /// `Pending` while an outbox read is in flight; `Err` when the stream
    /// must close (the read failed: the client resumes by its last id).
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        loop {
            if let Some(read) = &mut self.catching_up {
                let rows = match Pin::new(read).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Ok(rows))) => rows,
                    Poll::Ready(Ok(Err(error))) => {
                        tracing::warn!(%error, connection = %self.connection, "reading the outbox for a stream failed; closing it");
                        self.streams.metrics.lagging_streams_closed.add(1);
                        return Poll::Ready(Err(()));
                    }
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
                        let event = Event::from_row(row);
                        self.ready.push_back(event.frame);
                        self.streams.metrics.events_sent.add(1);
                        if event.ends_stream {
                            // Nothing after a ban reaches this stream.
                            self.closing = true;
                            self.cursor = event.id;
                            return Poll::Ready(Ok(()));
                        }
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
                    if let Some(ban) = events.iter().position(|event| event.ends_stream) {
                        // Nothing after a ban reaches this stream.
                        self.ready
                            .extend(events[..=ban].iter().map(|event| event.frame.clone()));
                        self.streams.metrics.events_sent.add(ban as u64 + 1);
                        self.cursor = events[ban].id;
                        self.closing = true;
                        return Poll::Ready(Ok(()));
                    }
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
                    self.catching_up =
                        Some(tokio::spawn(
                            async move { db.outbox_after(after, BATCH).await },
                        ));
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
            if this.closing {
                tracing::info!(connection = %this.connection, "closing the stream of a banned user");
                return Poll::Ready(None);
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
                if tokio::time::Instant::now() >= this.first_ping {
                    return Poll::Ready(Some(Ok(frame)));
                }
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
