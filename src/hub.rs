//! The hub: the in-memory tail of the outbox that every live stream reads
//! from, the count of open streams, and the one signal all streams wait on.
//!
//! The tailer appends events here in id order. Streams do not get events
//! pushed at them; each keeps its own cursor and pulls what lies after it,
//! waking when the hub's [`Signal`] is notified. So a slow reader costs
//! nothing but its cursor: it never delays anyone else, and once it falls
//! behind the in-memory window it reads the gap from the outbox table
//! instead (see `sse.rs`).
//!
//! The same signal announces everything else a stream sends: a new online
//! count, a ping (one timer for all streams, in `lib.rs`), and shutdown.
//! Every frame is built once (by `wire.rs`) and shared: each event's, and
//! the current presence and ping frames.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::db::Row;
use crate::signal::Signal;
use crate::wire;

/// How many recent events are kept in memory for live streams.
pub const WINDOW: usize = 8192;

/// One stored event, framed for the wire.
#[derive(Debug)]
pub struct Event {
    pub id: i64,
    pub thread_id: Option<Box<str>>,
    pub recipient_id: Option<Box<str>>,
    /// A ban: the recipient's streams close once they have sent it.
    pub ends_stream: bool,
    /// `id: N\ndata: {...}\n\n`, shared by every stream that sends it.
    pub frame: Bytes,
}

/// The event that closes its recipient's streams.
pub const BANNED: &str = "banned";

impl Event {
    pub fn from_row(row: Row) -> Event {
        Event {
            id: row.id,
            ends_stream: row.kind == BANNED,
            frame: wire::event_frame(&row),
            thread_id: row.thread_id.map(String::into_boxed_str),
            recipient_id: row.recipient_id.map(String::into_boxed_str),
        }
    }
}

/// Which events one stream receives.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// Only this thread's events (`?thread=`).
    pub thread: Option<String>,
    /// The signed-in user: private events go only to their recipient.
    pub user: Option<String>,
}

impl Audience {
    pub fn wants(&self, thread_id: Option<&str>, recipient_id: Option<&str>) -> bool {
        // A private event about the account itself (a ban) has no thread
        // and reaches every stream of its recipient, narrowed or not.
        let thread_ok = match &self.thread {
            Some(wanted) => {
                thread_id == Some(wanted.as_str())
                    || (thread_id.is_none() && recipient_id.is_some())
            }
            None => true,
        };
        let private_ok = match recipient_id {
            Some(recipient) => self.user.as_deref() == Some(recipient),
            None => true,
        };
        thread_ok && private_ok
    }
}

/// What a stream finds after its cursor.
pub enum Lookup {
    /// Events it should send (possibly none) and the cursor after them: the
    /// cursor passes events it does not want as well.
    Ready(Vec<Arc<Event>>, i64),
    /// The cursor lies before the in-memory window: read the outbox.
    Behind,
}

struct Window {
    events: VecDeque<Arc<Event>>,
    /// Every event with an id above this is in `events`.
    floor: i64,
}

/// Why a stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyStreams,
    TooManyFromAddress,
}

/// A frame rebuilt now and then (the online count, a ping) that each stream
/// sends once per rebuild. A stream remembers the generation it last sent
/// rather than comparing contents: its opening frames already carry the
/// live count, and two pings look alike.
pub struct Beat {
    /// The generation in `current`, readable without the lock.
    generation: AtomicU64,
    current: Mutex<(u64, Bytes)>,
}

impl Beat {
    fn new() -> Beat {
        Beat {
            generation: AtomicU64::new(0),
            current: Mutex::new((0, Bytes::new())),
        }
    }

    /// The current generation, which a new stream counts as sent.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The frame, if rebuilt since generation `seen`; `seen` becomes its.
    pub fn since(&self, seen: &mut u64) -> Option<Bytes> {
        // Most looks find nothing new: check that without the lock.
        if self.generation() == *seen {
            return None;
        }
        let current = self.current.lock().expect("hub lock");
        *seen = current.0;
        Some(current.1.clone())
    }

    fn set(&self, frame: Bytes) {
        let mut current = self.current.lock().expect("hub lock");
        *current = (current.0 + 1, frame);
        self.generation.store(current.0, Ordering::Release);
    }
}

pub struct Hub {
    window: RwLock<Window>,
    /// Notified after every change a stream waits for: events, presence, a
    /// ping, closing.
    changes: Signal,
    open: AtomicUsize,
    /// The online count last announced to streams (see `announce_presence`).
    announced: AtomicUsize,
    /// Streams open on the other nodes, as last heard (`presence.rs`).
    elsewhere: AtomicUsize,
    presence: Beat,
    pings: Beat,
    closed: AtomicBool,
    streams: Mutex<HashMap<IpAddr, usize>>,
    max_streams: usize,
    max_per_address: usize,
}

impl Hub {
    /// A hub whose window starts after `position` (the outbox's newest id).
    pub fn new(position: i64, max_streams: usize, max_per_address: usize) -> Hub {
        Hub {
            window: RwLock::new(Window {
                events: VecDeque::with_capacity(WINDOW),
                floor: position,
            }),
            changes: Signal::default(),
            open: AtomicUsize::new(0),
            announced: AtomicUsize::new(0),
            elsewhere: AtomicUsize::new(0),
            presence: Beat::new(),
            pings: Beat::new(),
            closed: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
            max_streams,
            max_per_address,
        }
    }

    /// Appends events (in id order, newer than any before) and wakes streams.
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        {
            let mut window = self.window.write().expect("hub lock");
            for event in events {
                window.events.push_back(Arc::new(event));
            }
            while window.events.len() > WINDOW {
                let dropped = window.events.pop_front().expect("non-empty");
                window.floor = dropped.id;
            }
        }
        self.changes.notify();
    }

    /// The newest event id the hub has seen.
    pub fn latest(&self) -> i64 {
        let window = self.window.read().expect("hub lock");
        window.events.back().map_or(window.floor, |e| e.id)
    }

    /// Notified after anything a stream waits for changes. Look at the hub
    /// first, then wait (see [`Signal::poll_changed`]).
    pub fn changes(&self) -> &Signal {
        &self.changes
    }

    /// Up to `max` wanted events after `cursor`.
    pub fn after(&self, cursor: i64, audience: &Audience, max: usize) -> Lookup {
        let window = self.window.read().expect("hub lock");
        if cursor < window.floor {
            return Lookup::Behind;
        }
        let start = window.events.partition_point(|e| e.id <= cursor);
        let mut wanted = Vec::new();
        let mut next = cursor;
        for event in window.events.range(start..) {
            if wanted.len() == max {
                break;
            }
            next = event.id;
            if audience.wants(event.thread_id.as_deref(), event.recipient_id.as_deref()) {
                wanted.push(event.clone());
            }
        }
        Lookup::Ready(wanted, next)
    }

    /// Counts a new stream from `address`, unless a limit is reached. The
    /// returned guard uncounts it when dropped.
    pub fn open_stream(self: &Arc<Self>, address: IpAddr) -> Result<StreamGuard, Refusal> {
        let mut streams = self.streams.lock().expect("hub lock");
        // `open` only changes under this lock, so it is the exact total.
        let total = self.open.load(Ordering::Relaxed);
        if total >= self.max_streams {
            return Err(Refusal::TooManyStreams);
        }
        let from_address = streams.entry(address).or_insert(0);
        if *from_address >= self.max_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_address += 1;
        self.open.store(total + 1, Ordering::Relaxed);
        Ok(StreamGuard {
            hub: self.clone(),
            address,
        })
    }

    /// Open streams on this node right now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Open streams on every node: this one's now, the others' as last
    /// heard.
    pub fn online(&self) -> usize {
        self.connections() + self.elsewhere.load(Ordering::Relaxed)
    }

    /// Tells streams the online count, with `elsewhere` streams open on
    /// other nodes, if it changed since last time. Called on a timer rather
    /// than on every open and close, so a thousand clients arriving at once
    /// cause one `presence` message each, not a thousand.
    pub fn announce_presence(&self, elsewhere: usize) {
        self.elsewhere.store(elsewhere, Ordering::Relaxed);
        let now = self.online();
        if self.announced.swap(now, Ordering::Relaxed) != now {
            self.presence.set(wire::presence(now));
            self.changes.notify();
        }
    }

    /// The `presence` frame with the online count last announced.
    pub fn presence(&self) -> &Beat {
        &self.presence
    }

    /// Tells every stream to send a ping now.
    pub fn ping(&self) {
        self.pings.set(wire::ping());
        self.changes.notify();
    }

    /// The frame of the latest ping.
    pub fn pings(&self) -> &Beat {
        &self.pings
    }

    /// Ends every stream (the server is shutting down).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changes.notify();
    }

    /// Whether streams should end.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// One open stream, counted while it lives.
pub struct StreamGuard {
    hub: Arc<Hub>,
    address: IpAddr,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.hub.streams.lock().expect("hub lock");
        if let Some(count) = streams.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.address);
            }
        }
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::signal::Subscription;

    /// Whether `subscription` would wake now, having looked at the hub.
    fn changed(hub: &Hub, subscription: &mut Subscription) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        hub.changes().poll_changed(subscription, &mut cx) == Poll::Ready(())
    }

    fn event(id: i64, thread: &str, recipient: Option<&str>) -> Event {
        Event::from_row(Row {
            id,
            kind: "new_thread".into(),
            thread_id: Some(thread.into()),
            recipient_id: recipient.map(Into::into),
            payload: format!("{{\"n\":{id}}}"),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        })
    }

    fn ids(lookup: Lookup) -> (Vec<i64>, i64) {
        match lookup {
            Lookup::Ready(events, next) => (events.iter().map(|e| e.id).collect(), next),
            Lookup::Behind => panic!("expected events in memory"),
        }
    }

    #[test]
    fn a_stream_sees_what_it_wants_and_its_cursor_passes_the_rest() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(vec![
            event(1, "a", None),
            event(2, "b", None),
            event(3, "a", Some("u1")),
        ]);
        let thread_a = Audience {
            thread: Some("a".into()),
            user: None,
        };
        assert_eq!(ids(hub.after(0, &thread_a, 100)), (vec![1], 3));
        let u1 = Audience {
            thread: None,
            user: Some("u1".into()),
        };
        assert_eq!(ids(hub.after(1, &u1, 100)), (vec![2, 3], 3));
        assert_eq!(ids(hub.after(3, &u1, 100)), (vec![], 3));
    }

    #[test]
    fn a_cursor_older_than_the_window_is_sent_to_the_outbox() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(
            (1..=(WINDOW as i64 + 5))
                .map(|id| event(id, "a", None))
                .collect(),
        );
        assert!(matches!(
            hub.after(4, &Audience::default(), 10),
            Lookup::Behind
        ));
        assert_eq!(ids(hub.after(5, &Audience::default(), 2)), (vec![6, 7], 7));
    }

    #[test]
    fn stream_limits_hold_overall_and_per_address() {
        let hub = Arc::new(Hub::new(0, 3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = hub.open_stream(a).unwrap();
        let _second = hub.open_stream(a).unwrap();
        assert_eq!(hub.open_stream(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = hub.open_stream(b).unwrap();
        assert_eq!(hub.open_stream(b).err(), Some(Refusal::TooManyStreams));
        drop(first);
        assert_eq!(hub.connections(), 2);
        assert!(hub.open_stream(a).is_ok());
    }

    #[test]
    fn a_publish_between_looking_and_waiting_is_seen() {
        let hub = Hub::new(0, 10, 10);
        let audience = Audience::default();
        let mut subscription = hub.changes().subscribe();
        assert_eq!(ids(hub.after(0, &audience, 10)), (vec![], 0));
        hub.publish(vec![event(1, "a", None)]);
        assert!(changed(&hub, &mut subscription));
        assert_eq!(ids(hub.after(0, &audience, 10)), (vec![1], 1));
        assert!(!changed(&hub, &mut subscription), "nothing new since");
        assert_eq!(hub.latest(), 1);
    }

    #[test]
    fn presence_is_announced_once_per_new_count() {
        let hub = Arc::new(Hub::new(0, 10, 10));
        let mut subscription = hub.changes().subscribe();
        let mut seen = hub.presence().generation();
        let _guard = hub.open_stream("127.0.0.1".parse().unwrap()).unwrap();
        hub.announce_presence(0);
        assert!(changed(&hub, &mut subscription));
        let frame = hub.presence().since(&mut seen).expect("a new count");
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(
            text.starts_with(r#"data: {"type":"presence","data":{"online":1},"#),
            "{text}"
        );
        assert_eq!(hub.presence().since(&mut seen), None, "sent once");
        hub.announce_presence(0);
        assert!(!changed(&hub, &mut subscription), "the same count is quiet");
        assert_eq!(hub.presence().since(&mut seen), None);
        hub.announce_presence(4);
        let frame = hub.presence().since(&mut seen).expect("other nodes count");
        assert!(frame.starts_with(br#"data: {"type":"presence","data":{"online":5},"#));
        assert_eq!(hub.online(), 5);
    }

    #[test]
    fn pings_and_closing_wake_streams() {
        let hub = Hub::new(0, 10, 10);
        let mut subscription = hub.changes().subscribe();
        let mut seen = hub.pings().generation();
        assert_eq!(hub.pings().since(&mut seen), None);
        hub.ping();
        hub.ping();
        assert!(changed(&hub, &mut subscription));
        let frame = hub.pings().since(&mut seen).expect("a ping");
        assert!(frame.starts_with(br#"data: {"type":"ping","data":{},"timestamp":""#));
        assert!(frame.ends_with(b"\"}\n\n"));
        assert_eq!(hub.pings().since(&mut seen), None, "two ticks, one ping");
        assert!(!hub.is_closed());
        hub.close();
        assert!(changed(&hub, &mut subscription));
        assert!(hub.is_closed());
    }
}
