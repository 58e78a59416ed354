//! The hub: the in-memory tail of the outbox that every live stream reads
//! from, and the count of open streams.
//!
//! The tailer appends events here in id order. Streams do not get events
//! pushed at them; each keeps its own cursor and pulls what lies after it,
//! waking when [`Hub::latest`] moves. So a slow reader costs nothing but its
//! cursor: it never delays anyone else, and once it falls behind the
//! in-memory window it reads the gap from the outbox table instead
//! (see `sse.rs`). Each event's frame is built once and shared.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::db::outbox::Row;

/// How many recent events are kept in memory for live streams.
pub const WINDOW: usize = 8192;

/// One stored event, framed for the wire.
#[derive(Debug)]
pub struct Event {
    pub id: i64,
    pub thread_id: Option<Box<str>>,
    pub recipient_id: Option<Box<str>>,
    /// `id: N\ndata: {...}\n\n`, shared by every stream that sends it.
    pub frame: Bytes,
}

impl Event {
    pub fn from_row(row: Row) -> Event {
        Event {
            id: row.id,
            frame: Bytes::from(format!("id: {}\ndata: {}\n\n", row.id, row.message)),
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
        let thread_ok = match &self.thread {
            Some(wanted) => thread_id == Some(wanted.as_str()),
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

pub struct Hub {
    window: RwLock<Window>,
    latest: watch::Sender<i64>,
    open: AtomicUsize,
    /// The online count last announced to streams (see `announce_presence`).
    presence: watch::Sender<usize>,
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
            latest: watch::Sender::new(position),
            open: AtomicUsize::new(0),
            presence: watch::Sender::new(0),
            streams: Mutex::new(HashMap::new()),
            max_streams,
            max_per_address,
        }
    }

    /// Appends events (in id order, newer than any before) and wakes streams.
    pub fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(|e| e.id) else {
            return;
        };
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
        self.latest.send_replace(last);
    }

    /// The newest event id the hub has seen.
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// Changes whenever events are published.
    pub fn watch_latest(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
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

    /// Open streams right now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Tells streams the online count if it changed since last time. Called
    /// on a timer rather than on every open and close, so a thousand
    /// clients arriving at once cause one `presence` message each, not a
    /// thousand.
    pub fn announce_presence(&self) {
        self.presence.send_if_modified(|announced| {
            let now = self.connections();
            let changed = *announced != now;
            *announced = now;
            changed
        });
    }

    /// Changes whenever a new online count is announced.
    pub fn watch_presence(&self) -> watch::Receiver<usize> {
        self.presence.subscribe()
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
    use super::*;

    fn event(id: i64, thread: &str, recipient: Option<&str>) -> Event {
        Event::from_row(Row {
            id,
            thread_id: Some(thread.into()),
            recipient_id: recipient.map(Into::into),
            message: format!("{{\"n\":{id}}}"),
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
}
