//! The HTTP server loop: accepts connections and serves the routes over
//! HTTP/1.1, with the limits hyper does not set on its own.
//!
//! `warp::serve` gives no way to bound how long a client may take to send
//! its request head, so a client that connects and sends nothing (or one
//! byte a minute) would hold its connection for ever. Here every request
//! head must arrive within the header timeout (which also closes idle
//! keep-alive connections) and fit in [`MAX_HEAD`] bytes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::reply::Response;
use warp::Filter;

/// Largest request head (request line and headers) accepted; also the most
/// response data hyper buffers per connection.
pub const MAX_HEAD: usize = 16 * 1024;
/// Each connection's kernel send buffer (Linux doubles it for bookkeeping).
/// Left to itself the kernel grows it to megabytes for a reader that stops
/// reading; bounded, such a stream holds at most this, hyper's buffer and
/// its own queue of (shared) frames. Plenty for SSE and page loads alike.
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
    let service = warp::service(routes);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD);
    let mut shutdown = std::pin::pin!(shutdown);
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
        let handler = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            service.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), handler));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
