//! Who is online across every node sharing the database.
//!
//! Each node announces its own count of open streams once a second, as an
//! ephemeral message (over NOTIFY on PostgreSQL; on SQLite, one node, the
//! message goes nowhere), and keeps the latest count heard from every
//! other node. A node that stops announcing (it died, or lost the
//! database) stops counting after [`STALE_AFTER`]. The total is what
//! streams are told as `online`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::db::Db;
use crate::hub::Hub;

/// How often each node announces its count.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// A node not heard from for this long no longer counts.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// A node's announcement, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Announcement {
    kind: String,
    node: String,
    online: usize,
}

const KIND: &str = "presence";

/// The latest count of every other node.
#[derive(Debug, Default)]
struct Peers {
    counts: HashMap<String, (usize, Instant)>,
}

impl Peers {
    fn heard(&mut self, node: String, online: usize, at: Instant) {
        self.counts.insert(node, (online, at));
    }

    /// The sum over nodes heard from recently; forgets the others.
    fn total(&mut self, now: Instant) -> usize {
        self.counts
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < STALE_AFTER);
        self.counts.values().map(|(online, _)| online).sum()
    }
}

/// Announces this node's count, listens to the others', and tells the
/// hub the cluster's total every [`INTERVAL`], until shutdown.
pub async fn run(db: Db, hub: Arc<Hub>, node: String, mut shutdown: watch::Receiver<bool>) {
    let mut heard = db.ephemeral_messages();
    let mut peers = Peers::default();
    let mut tick = tokio::time::interval_at(Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let announcement = Announcement {
                    kind: KIND.into(),
                    node: node.clone(),
                    online: hub.connections(),
                };
                let text = serde_json::to_string(&announcement).expect("serialisable");
                match db.publish_ephemeral(text).await {
                    Ok(()) => failing = false,
                    Err(error) if !failing => {
                        tracing::warn!(%error, "could not announce this node's online count");
                        failing = true;
                    }
                    Err(_) => {}
                }
                hub.announce_presence(peers.total(Instant::now()));
            }
            message = heard.recv() => match message {
                Ok(text) => {
                    if let Ok(peer) = serde_json::from_str::<Announcement>(&text) {
                        if peer.kind == KIND && peer.node != node {
                            peers.heard(peer.node, peer.online, Instant::now());
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_not_heard_from_stops_counting() {
        let mut peers = Peers::default();
        let start = Instant::now();
        peers.heard("a".into(), 5, start);
        peers.heard("b".into(), 7, start + Duration::from_secs(2));
        assert_eq!(peers.total(start + Duration::from_secs(2)), 12);
        assert_eq!(peers.total(start + STALE_AFTER), 7, "a went quiet");
        peers.heard("a".into(), 1, start + STALE_AFTER);
        assert_eq!(peers.total(start + STALE_AFTER), 8, "a is back");
    }
}
