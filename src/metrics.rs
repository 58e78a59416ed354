//! Counters for `GET /metrics`, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub events_published: Counter,
    pub events_sent: Counter,
    pub streams_opened: Counter,
    pub streams_refused: Counter,
    pub replays: Counter,
    pub outbox_catch_ups: Counter,
    pub resyncs: Counter,
    pub database_busy: Counter,
    pub server_errors: Counter,
}

impl Metrics {
    /// The exposition text, with the current number of open streams.
    pub fn render(&self, open_streams: usize, latest_event_id: i64) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP stoa_{name} {help}\n# TYPE stoa_{name} gauge\nstoa_{name} {value}"
            );
        };
        gauge(
            "open_streams",
            "Event streams open now.",
            open_streams as i64,
        );
        gauge(
            "latest_event_id",
            "Newest outbox id seen by the tailer.",
            latest_event_id,
        );
        let counters = [
            (
                "events_published_total",
                "Outbox events read by the tailer.",
                &self.events_published,
            ),
            (
                "events_sent_total",
                "Events written to streams.",
                &self.events_sent,
            ),
            (
                "streams_opened_total",
                "Event streams accepted.",
                &self.streams_opened,
            ),
            (
                "streams_refused_total",
                "Event streams refused at a connection limit.",
                &self.streams_refused,
            ),
            (
                "replays_total",
                "Streams that resumed from a position.",
                &self.replays,
            ),
            (
                "outbox_catch_ups_total",
                "Reads of the outbox by streams behind the in-memory window.",
                &self.outbox_catch_ups,
            ),
            (
                "resyncs_total",
                "Streams told to reload their snapshot.",
                &self.resyncs,
            ),
            (
                "database_busy_total",
                "Requests refused because the database stayed locked.",
                &self.database_busy,
            ),
            (
                "server_errors_total",
                "Requests that failed with a 500.",
                &self.server_errors,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP stoa_{name} {help}\n# TYPE stoa_{name} counter\nstoa_{name} {}",
                counter.get()
            );
        }
        out
    }
}
