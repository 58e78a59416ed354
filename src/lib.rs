//! stoa: a community forum in one binary, where every new thread, comment
//! and like reaches everyone with the page open, live, over Server-Sent
//! Events, and a browser that lost its connection is replayed exactly what
//! it missed.
//!
//! # Layout
//!
//! The modules follow the data's path:
//!
//! - `api`: HTTP request → validation → a call into `db` (one file per
//!   resource); the only module that speaks HTTP statuses and headers.
//! - `auth`: passwords, session tokens, the viewer a token resolves to.
//! - `markdown`: a post's Markdown rendered to sanitised HTML, once, when
//!   it is written.
//! - `search`: a search query's words and the snippets sent back.
//! - `db`: the store's one seam, named methods over SQLite (`db/sqlite/`,
//!   with its migrations); every write's trigger appends the change to the
//!   `outbox` table in the same transaction.
//! - `tailer`: reads new outbox rows in id order and hands them to the hub.
//! - `hub`: the in-memory tail of the outbox that streams read, the count
//!   of open streams, and the frames they share.
//! - `signal`: the one change signal every stream waits on.
//! - `presence`: the online count across every node.
//! - `sse`: one stream: replay, live events, pings, resync.
//! - `wire`: every byte a stream sends, built once.
//! - `web`: the embedded page and its client library.
//! - `server`: the HTTP/1.1 accept loop, with header timeouts and limits;
//!   event streams on their own connections are answered without hyper.
//! - `config`, `limits`, `metrics`, `fixtures`: settings, rate limits,
//!   counters, sample data.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod fixtures;
pub mod hub;
pub mod limits;
pub mod markdown;
pub mod metrics;
pub mod presence;
pub mod search;
pub mod server;
pub mod signal;
pub mod sse;
pub mod tailer;
pub mod web;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use auth::Hasher;
pub use config::{Config, Flags};
use db::Db;
use hub::Hub;
use limits::{Limiter, Limits};
use metrics::Metrics;

/// What every request handler can reach. Cloned by every filter a request
/// passes through, so it is one reference-counted pointer.
#[derive(Clone)]
pub struct State(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub db: Db,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub hasher: Hasher,
    /// This node's name among those sharing the database.
    pub node: String,
    shutdown: watch::Receiver<bool>,
}

impl std::ops::Deref for State {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl State {
    pub fn streams(&self) -> sse::Streams {
        sse::Streams {
            hub: self.hub.clone(),
            db: self.db.clone(),
            metrics: self.metrics.clone(),
            ping_interval: self.config.ping_interval,
        }
    }
}

/// A built server: database open, port bound, not yet serving.
pub struct App {
    listener: TcpListener,
    state: State,
    shutdown: watch::Sender<bool>,
}

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

impl App {
    /// Opens the database (creating it with the schema) and binds the port.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let metrics = Arc::new(Metrics::default());
        let settings = db::OpenSettings {
            busy_timeout: config.busy_timeout,
            pool_size: config.db_pool_size,
        };
        let db = Db::open(&config.db, settings, metrics.clone()).await?;
        // The hub starts with the newest events already in memory, so the
        // clients that reconnect after a restart, each a little behind, are
        // replayed from there instead of each reading the outbox table.
        let (position, recent) = db.outbox_newest(hub::WINDOW).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|error| unbindable(config.listen, error))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let floor = recent.first().map_or(position, |row| row.id - 1);
        let hub = Arc::new(Hub::new(
            floor,
            config.max_streams,
            config.max_streams_per_ip,
        ));
        hub.publish(recent.into_iter().map(hub::Event::from_row).collect());
        let limits = Limits {
            writes: Limiter::new(&db, "writes", config.write_rate, config.write_burst),
            sign_ins: Limiter::new(&db, "sign-ins", config.sign_in_rate, config.sign_in_burst),
        };
        Ok(App {
            listener,
            state: State(Arc::new(Shared {
                config,
                db,
                hub,
                metrics,
                limits,
                hasher: Hasher::default(),
                node: uuid::Uuid::now_v7().to_string(),
                shutdown: shutdown_rx,
            })),
            shutdown,
        })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Serves until `signal` completes, then stops accepting, ends every
    /// stream (clients resume elsewhere by their last id), lets in-flight
    /// requests finish, and checkpoints the WAL.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let App {
            listener,
            state,
            shutdown,
        } = self;
        let background = [
            tokio::spawn(tailer::tail(
                state.db.tail_reader().await?,
                state.hub.clone(),
                state.metrics.clone(),
                state.db.written(),
                state.config.poll_interval,
                state.shutdown.clone(),
            )),
            tokio::spawn(presence::run(
                state.db.clone(),
                state.hub.clone(),
                state.node.clone(),
                state.shutdown.clone(),
            )),
            tokio::spawn(every(state.config.ping_interval, state.shutdown.clone(), {
                let hub = state.hub.clone();
                move || hub.ping()
            })),
            tokio::spawn(prune_outbox(
                state.db.clone(),
                state.config.retention,
                state.config.retention_events,
                state.shutdown.clone(),
            )),
        ];
        let db = state.db.clone();
        let hub = state.hub.clone();
        let header_timeout = state.config.header_timeout;
        let routes = api::routes(state);
        server::serve(listener, routes, header_timeout, async move {
            signal.await;
            tracing::info!("shutting down: closing streams, finishing requests");
            let _ = shutdown.send(true);
            hub.close();
        })
        .await;
        for task in background {
            let _ = task.await;
        }
        db.close().await?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Why `--listen` could not be bound, naming the address and the fix.
fn unbindable(address: SocketAddr, error: std::io::Error) -> StartError {
    let hint = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            ": another program (or another stoa) is listening there; stop it or choose another \
             address with --listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            ": ports below 1024 need root or CAP_NET_BIND_SERVICE; listen on a higher port \
             (8080) behind a proxy such as nginx (deploy/nginx.conf)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            ": that address is not one of this machine's; use 127.0.0.1 or 0.0.0.0"
        }
        _ => "",
    };
    format!("cannot listen on {address}: {error}{hint}").into()
}

/// Runs `action` every `period`, the first time one period from now, until
/// shutdown: the pings, one timer for all streams.
async fn every(period: Duration, mut shutdown: watch::Receiver<bool>, action: impl Fn()) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => action(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes outbox events older than `retention` or beyond the newest
/// `keep`, a small batch per write so no writer waits long. Ids are never
/// reused; a client resuming from a pruned position is told to resync.
/// Shared rate-limit buckets idle for a day go too (they are full again
/// long before that at any sensible rate).
async fn prune_outbox(db: Db, retention: Duration, keep: u64, mut shutdown: watch::Receiver<bool>) {
    const BATCH: usize = 1000;
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Ok(age) = chrono::Duration::from_std(retention) else {
            return;
        };
        let cutoff = chrono::Utc::now() - age;
        loop {
            match db.prune_outbox(cutoff, keep, BATCH).await {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "pruning the outbox failed");
                    break;
                }
            }
        }
        let idle = chrono::Utc::now() - chrono::Duration::days(1);
        if let Err(error) = db.forget_idle_limits(idle).await {
            tracing::warn!(%error, "forgetting idle rate-limit buckets failed");
        }
    }
}
