//! Just enough HTTP/1.1 client for the benchmark: loopback URLs, keep-alive
//! connections for publishing, and sockets bound to a chosen source address
//! for the streams.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::sse::{parse_head, Body, ChunkState};

/// An `http://IP:PORT/path?query` URL on the loopback.
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("{text}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (name, port) = host
            .rsplit_once(':')
            .ok_or_else(|| format!("{text}: the URL needs a port"))?;
        let ip: IpAddr = if name == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            name.parse()
                .map_err(|_| format!("{text}: the host must be an IP address or localhost"))?
        };
        // Load is only ever sent to this machine.
        if !ip.is_loopback() {
            return Err(format!(
                "{text}: the benchmark only targets loopback addresses (127.0.0.0/8)"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text}: bad port {port:?}"))?;
        Ok(Url {
            addr: SocketAddr::new(ip, port),
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// A TCP connection from `source` (port chosen by the kernel).
pub async fn connect_from(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    recv_buffer: Option<u32>,
) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(source) = source {
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(15), socket.connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A keep-alive connection that sends one request at a time.
pub struct Conn {
    url: Url,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(url: &Url) -> Conn {
        Conn {
            url: url.clone(),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends a request and reads the whole response: (status, body). A
    /// connection the server closed is reopened once.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{headers}\r\n",
            self.url.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let reused = self.stream.is_some();
        match self.try_request(&request).await {
            Err(_) if reused => {
                self.stream = None;
                self.try_request(&request).await
            }
            other => other,
        }
    }

    async fn try_request(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            self.stream = Some(connect_from(self.url.addr, None, None).await?);
            self.buf.clear();
        }
        let result = self.exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await?;
        let mut chunk = [0u8; 4096];
        let head = loop {
            if let Some(head) = parse_head(&self.buf) {
                break head;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        self.buf.drain(..head.len);
        let mut body = Vec::new();
        if head.chunked {
            let mut decoder = Body::Chunked(ChunkState::Size(0, false));
            let mut pending = std::mem::take(&mut self.buf);
            loop {
                // The decoder consumes whole input; a response never shares
                // a read with the next one, since requests are not pipelined.
                let open = decoder.feed(&pending, &mut |b| body.extend_from_slice(b));
                if !open {
                    break;
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                pending = chunk[..n].to_vec();
            }
        } else {
            let length = head.content_length.unwrap_or(0);
            while self.buf.len() < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            body = self.buf.drain(..length).collect();
        }
        Ok((head.status, body))
    }
}
