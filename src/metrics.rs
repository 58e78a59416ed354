//! Counters for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
    pub lagging_streams_closed: Counter,
    /// Database operations that gave up on a lock (counted by `Db`).
    pub database_busy: Counter,
    /// Requests by method, route and status.
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
}

impl Metrics {
    pub fn record_request(&self, method: &'static str, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().expect("metrics lock");
        *requests.entry((method, route, status)).or_insert(0) += 1;
    }

    /// The exposition text, with the gauges read now.
    pub fn render(&self, open_streams: usize, latest_event_id: i64) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP stoa_{name} {help}\n# TYPE stoa_{name} {kind}\nstoa_{name} {value}"
            );
        };
        metric(
            "open_streams",
            "gauge",
            "Event streams open now.",
            open_streams as u64,
        );
        metric(
            "latest_event_id",
            "gauge",
            "Newest outbox id seen by the tailer.",
            latest_event_id.max(0) as u64,
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
                "Outbox reads by streams behind the in-memory window (lagging readers caught up).",
                &self.outbox_catch_ups,
            ),
            (
                "resyncs_total",
                "Streams told to reload their snapshot.",
                &self.resyncs,
            ),
            (
                "lagging_streams_closed_total",
                "Lagging streams closed because their catch-up read failed.",
                &self.lagging_streams_closed,
            ),
        ];
        for (name, help, counter) in counters {
            metric(name, "counter", help, counter.get());
        }
        metric(
            "database_busy_total",
            "counter",
            "Database operations that gave up waiting for a lock.",
            self.database_busy.get(),
        );
        out.push_str(
            "# HELP stoa_http_requests_total HTTP requests by method, route and status.\n\
             # TYPE stoa_http_requests_total counter\n",
        );
        for ((method, route, status), count) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "stoa_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out
    }
}
