//! Event streams answered on the socket directly, without hyper.
//!
//! hyper gives every HTTP/1 connection an 8 KiB read buffer and an 8 KiB
//! write buffer, and runs its dispatcher and chunked framing for every
//! write. An event stream reads nothing after its request and spends its
//! life writing small frames, so when a connection's first request opens
//! one, it is served here: the head is parsed with `httparse`, passed
//! through the same routes (authentication, limits, CORS and metrics are
//! the same), and the response goes straight to the socket, its body ended
//! by closing the connection. A stream then costs its socket, its cursor
//! and this task. Anything else, including a head this module does not
//! parse cleanly, is left to hyper with the bytes already read (see
//! `mod.rs`), as is an event stream asked for on a connection that already
//! served other requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;
use warp::http::{self, HeaderName, HeaderValue, Request, Response};

use super::PeerAddr;

/// Headers a stream request may carry (hyper takes the rare request with more).
const MAX_HEADERS: usize = 64;
/// Frames written in one `writev` (a replay sends many at once).
const MAX_QUEUED: usize = 64;

/// Whether a connection's first bytes ask for an event stream.
pub fn wants_event_stream(head: &[u8]) -> bool {
    head.strip_prefix(b"GET ")
        .and_then(|rest| rest.strip_prefix(crate::api::events::PATH.as_bytes()))
        .and_then(|rest| rest.first())
        .is_some_and(|&b| b == b' ' || b == b'?')
}

/// What the bytes read so far hold.
pub enum Head {
    /// A whole, well-formed request head.
    Complete(Box<Request<Empty<Bytes>>>),
    /// Not all of it yet.
    Partial,
    /// Something this module leaves to hyper (which answers errors properly).
    NotOurs,
}

/// Parses a request head from a connection's first bytes.
pub fn parse(buf: &[u8], peer: SocketAddr) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::NotOurs,
    }
    let (Some(path), Some(1)) = (parsed.path, parsed.version) else {
        return Head::NotOurs;
    };
    let mut request = Request::new(Empty::new());
    let Ok(uri) = path.parse() else {
        return Head::NotOurs;
    };
    *request.uri_mut() = uri;
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Head::NotOurs;
        };
        request.headers_mut().append(name, value);
    }
    // A body (which a GET has no use for) would need reading: hyper's job.
    let headers = request.headers();
    if headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0")
    {
        return Head::NotOurs;
    }
    request.extensions_mut().insert(PeerAddr(peer));
    Head::Complete(Box::new(request))
}

/// Answers `request` through `service` on `stream`, then closes it.
///
/// What this future holds lives as long as the stream, in every open
/// stream's task: the routes are called on a clone, in a box freed once
/// they have answered, and the request and the response's head are gone
/// before the body is sent.
pub async fn respond<S, B>(mut stream: TcpStream, request: Box<Request<Empty<Bytes>>>, service: &S)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: Body<Data = Bytes> + Unpin,
{
    // Two statements: the clone, a temporary, must not live across the await.
    let call = Box::pin(service.clone().call(*request));
    let Ok(response) = call.await;
    let (parts, body) = response.into_parts();
    let sent = if body.size_hint().exact().is_some() {
        Box::pin(send_whole(&mut stream, parts, body)).await
    } else {
        let head = head(&parts, None);
        drop(parts);
        send_streaming(&mut stream, head, body).await
    };
    if sent.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// An error or other whole answer, with its length.
async fn send_whole<B>(
    stream: &mut TcpStream,
    parts: http::response::Parts,
    body: B,
) -> io::Result<()>
where
    B: Body<Data = Bytes>,
{
    let Ok(collected) = body.collect().await else {
        return Ok(());
    };
    let body = collected.to_bytes();
    let mut message = head(&parts, Some(body.len()));
    message.extend_from_slice(&body);
    stream.write_all(&message).await
}

/// A stream's head, then its body as it comes.
async fn send_streaming<B>(stream: &mut TcpStream, head: Vec<u8>, body: B) -> io::Result<()>
where
    B: Body<Data = Bytes> + Unpin,
{
    stream.write_all(&head).await?;
    drop(head);
    let mut pump = Pump {
        stream,
        body,
        queue: VecDeque::new(),
        ended: false,
    };
    poll_fn(|cx| pump.poll(cx)).await;
    Ok(())
}

/// The status line and headers, framed by closing the connection (or by
/// `content_length` for a whole body).
fn head(parts: &http::response::Parts, content_length: Option<usize>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let status = parts.status;
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            http::header::CONNECTION
                | http::header::CONTENT_LENGTH
                | http::header::TRANSFER_ENCODING
        ) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
    let _ = write!(head, "date: {date}\r\n");
    if let Some(length) = content_length {
        let _ = write!(head, "content-length: {length}\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Moves a streaming body to the socket: frames are pulled while there is
/// room, written together, and nothing more is pulled while the socket is
/// full (a reader that stops reading stops its stream being polled). Ends
/// when the body ends, a write fails, or the client closes.
struct Pump<'a, B> {
    stream: &'a mut TcpStream,
    body: B,
    queue: VecDeque<Bytes>,
    ended: bool,
}

impl<B: Body<Data = Bytes> + Unpin> Pump<'_, B> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.client_closed(cx) {
            return Poll::Ready(());
        }
        loop {
            while !self.ended && self.queue.len() < MAX_QUEUED {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                self.queue.push_back(data);
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_)) | None) => self.ended = true,
                    Poll::Pending => break,
                }
            }
            if self.queue.is_empty() {
                return if self.ended {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_QUEUED];
            for (slice, frame) in slices.iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(frame);
            }
            let count = self.queue.len().min(MAX_QUEUED);
            match Pin::new(&mut *self.stream).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(written)) => self.advance(written),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Drops `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let front = self.queue.front_mut().expect("wrote queued bytes");
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }

    /// Whether the connection should end from the client's side: it closed
    /// its end, or it sent something. An event stream's client has nothing
    /// more to say (the response said `Connection: close`, so a pipelined
    /// request is retried elsewhere), and reading whatever a client sends
    /// could keep this task busy for as long as it kept sending.
    fn client_closed(&mut self, cx: &mut Context<'_>) -> bool {
        let mut scratch = [0u8; 64];
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) => match self.stream.try_read(&mut scratch) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Ok(_) | Err(_) => return true,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn only_a_get_of_the_events_path_is_an_event_stream() {
        assert!(wants_event_stream(
            b"GET /api/community/events HTTP/1.1\r\n"
        ));
        assert!(wants_event_stream(
            b"GET /api/community/events?thread=x HTTP/1.1"
        ));
        assert!(!wants_event_stream(b"GET /api/community/eventsx HTTP/1.1"));
        assert!(!wants_event_stream(b"POST /api/community/events HTTP/1.1"));
        assert!(!wants_event_stream(b"GET /api/community/threads HTTP/1.1"));
        assert!(!wants_event_stream(b"GET /api/community/events"));
    }

    #[test]
    fn a_whole_head_becomes_a_request_with_its_headers_and_peer() {
        let raw = b"GET /api/community/events?lastEventId=4 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\nCookie: a=1\r\n\r\n";
        let Head::Complete(request) = parse(raw, peer()) else {
            panic!("expected a complete head");
        };
        assert_eq!(request.uri().query(), Some("lastEventId=4"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.headers()["cookie"], "a=1");
        assert_eq!(
            request.extensions().get::<PeerAddr>().map(|p| p.0),
            Some(peer())
        );
    }

    #[test]
    fn partial_malformed_and_bodied_heads_are_told_apart() {
        assert!(matches!(
            parse(b"GET /api/community/events HTTP/1.1\r\nHost: x\r\n", peer()),
            Head::Partial
        ));
        for raw in [
            &b"GET /api/community/events HTTP/1.1\r\nBad Header\r\n\r\n"[..],
            b"GET /api/community/events HTTP/1.0\r\n\r\n",
            b"GET /api/community/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        ] {
            assert!(matches!(parse(raw, peer()), Head::NotOurs), "{raw:?}");
        }
    }

    #[test]
    fn the_head_is_framed_by_closing_the_connection_unless_whole() {
        let response = Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let text = String::from_utf8(head(&parts, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(text.ends_with("connection: close\r\n\r\n"));
        assert!(!text.contains("content-length"));
        let text = String::from_utf8(head(&parts, Some(12))).unwrap();
        assert!(text.contains("content-length: 12\r\n"));
    }
}
