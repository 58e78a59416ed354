//! The tailer: the one task that reads new outbox rows, in id order, and
//! hands them to the hub.
//!
//! It wakes at once after a write made through this server (the `written`
//! signal of `Db`; on PostgreSQL also every NOTIFY from any node) and
//! otherwise every poll interval, so rows written by another process (a
//! second stoa, the sqlite3 shell, psql, a script) go out too. It always
//! reads by id after the last row it handed on, so a failed read (the
//! database away) is simply tried again: nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::db::TailReader;
use crate::hub::{Event, Hub};
use crate::metrics::Metrics;

const BATCH: usize = 1024;

pub async fn tail(
    mut reader: TailReader,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    written: Arc<Notify>,
    poll_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cursor = hub.latest();
    let mut failing = false;
    loop {
        let read = reader.new_rows(cursor, BATCH).await;
        if read.is_ok() && failing {
            tracing::info!(
                from = cursor,
                "reading the outbox works again; caught up by id"
            );
            failing = false;
        }
        match read {
            Ok(rows) if !rows.is_empty() => {
                let full = rows.len() == BATCH;
                cursor = rows.last().map_or(cursor, |row| row.id);
                metrics.events_published.add(rows.len() as u64);
                hub.publish(rows.into_iter().map(Event::from_row).collect());
                if full {
                    continue;
                }
            }
            Ok(_) => {}
            Err(error) => {
                // Once per outage, not once per poll.
                if !failing {
                    tracing::warn!(%error, "reading the outbox failed; retrying every poll");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = written.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
