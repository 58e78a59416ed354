//! The HTTP server loop: accepts connections and serves the routes over
//! HTTP/1.1, with the limits hyper does not set on its own.
//!
//! `warp::serve` gives no way to bound how long a client may take to send
//! its request head, so a client that connects and sends nothing (or one
//! byte a minute) would hold its connection for ever. Here every request
//! head must arrive within the header timeout (which also closes idle
//! keep-alive connections) and fit in [`MAX_HEAD`] bytes.
//!
//! A connection whose first request opens an event stream is answered by
//! `streaming.rs` instead of hyper: most of an open page's cost is its
//! stream, and hyper's buffers and framing are most of a stream's cost.

mod prefixed;
mod streaming;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;
use warp::reply::Response;
use warp::Filter;

use prefixed::Prefixed;
use streaming::Head;

/// Largest request head (request line and headers) accepted; also the most
/// response data hyper buffers per connection.
pub const MAX_HEAD: usize = 16 * 1024;
/// Each connection's kernel send buffer (Linux doubles it for bookkeeping).
/// Left to itself the kernel grows it to megabytes for a reader that stops
/// reading; bounded, such a stream holds at most this and its queue of
/// (shared) frames, plus hyper's buffer when hyper serves it. Plenty for
/// SSE and page loads alike.
pub const SEND_BUFFER: usize = 16 * 1024;
/// Longest wait for open connections to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer address of a request's connection, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `routes` on `listener` until `shutdown` completes, then stops
/// accepting and waits (at most [`DRAIN_TIMEOUT`]) for open connections.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    // Shared: every connection's task holds pointers, not copies of the
    // routes (over a kilobyte) and hyper's settings, for its whole life.
    let service = Arc::new(warp::service(routes));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD);
    let http = Arc::new(http);
    let mut shutdown = std::pin::pin!(shutdown);
    // Ends connections still waiting for their first request at shutdown
    // (hyper's graceful shutdown does the same for idle ones it serves).
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait, don't spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let service = service.clone();
        let http = http.clone();
        // Taken here, not in the task, so a shutdown that starts meanwhile
        // still waits for this connection.
        let watcher = graceful.watcher();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            // Boxed, like every phase that does not last: the task keeps
            // only what the connection needs for its whole life.
            let first = Box::pin(async {
                tokio::select! {
                    first = tokio::time::timeout(header_timeout, first_request(&stream, peer)) => first.ok(),
                    _ = closing.wait_for(|closing| *closing) => None,
                }
            })
            .await;
            drop(closing);
            let Some(first) = first else {
                return; // no request head in time, or shutting down
            };
            match first {
                First::Stream(request) => {
                    let _counted_until_done = watcher;
                    streaming::respond(stream, request, service.as_ref()).await;
                }
                First::Other(read) => {
                    let handler =
                        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                            request.extensions_mut().insert(PeerAddr(peer));
                            service.as_ref().clone().call(request)
                        });
                    let io = TokioIo::new(Prefixed::new(read, stream));
                    // Boxed: hyper's connection state is large, and a stream's
                    // task (above) should not be sized for it.
                    let connection = Box::pin(watcher.watch(http.serve_connection(io, handler)));
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                First::Closed => {}
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// A connection's first request, as far as routing it goes.
enum First {
    /// An event stream request, parsed: served by `streaming.rs`.
    Stream(Box<hyper::Request<http_body_util::Empty<Bytes>>>),
    /// Anything else: hyper reads it, starting with these bytes.
    Other(Bytes),
    /// The client closed (or the socket failed) before sending anything.
    Closed,
}

/// Reads until the first request is known to be an event stream (with its
/// whole head) or not. Most heads arrive in one read, so other requests
/// cost hyper one extra copy of their first bytes.
async fn first_request(stream: &TcpStream, peer: SocketAddr) -> First {
    let mut read = Vec::with_capacity(1024);
    loop {
        if let Err(error) = stream.readable().await {
            tracing::debug!(%error, %peer, "reading a request failed");
            return First::Closed;
        }
        match stream.try_read_buf(&mut read) {
            Ok(0) if read.is_empty() => return First::Closed,
            // Closed mid-head: hyper answers it as it would.
            Ok(0) => return First::Other(read.into()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return First::Closed,
        }
        if !streaming::wants_event_stream(&read) {
            return First::Other(read.into());
        }
        match streaming::parse(&read, peer) {
            Head::Complete(request) => return First::Stream(request),
            Head::NotOurs => return First::Other(read.into()),
            Head::Partial if read.len() >= MAX_HEAD => return First::Other(read.into()),
            Head::Partial => read.reserve(1024.min(MAX_HEAD - read.len()).max(1)),
        }
    }
}
