//! A small incremental HTTP/1.1 response reader and Server-Sent Events
//! parser, cheap enough to run tens of thousands of streams in one process.
//!
//! The SSE part follows WHATWG HTML, "Server-sent events", section
//! "Interpreting an event stream": lines end in CRLF, LF or CR; an empty
//! line dispatches; a line starting with `:` is a comment; a field's value
//! loses one leading space; `data` lines join with LF; a message with an
//! empty data buffer is not dispatched.

/// Decodes the body of an HTTP/1.1 response: chunked or as-is.
pub enum Body {
    Identity,
    Chunked(ChunkState),
}

pub enum ChunkState {
    /// Reading the hex size line (digits so far, whether we are past the
    /// size in an extension).
    Size(u64, bool),
    /// After the size line's CR, waiting for LF.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Done,
}

impl Body {
    /// Feeds raw bytes; calls `out` with decoded body bytes. Returns false
    /// once the body has ended (the terminal chunk).
    pub fn feed(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        let state = match self {
            Body::Identity => {
                out(input);
                return true;
            }
            Body::Chunked(state) => state,
        };
        while !input.is_empty() {
            match state {
                ChunkState::Size(size, in_ext) => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\r' => *state = ChunkState::SizeLf(*size),
                        b'\n' => *state = start_chunk(*size),
                        _ if *in_ext => {}
                        b';' | b' ' | b'\t' => *in_ext = true,
                        _ => {
                            let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                            *size = *size * 16 + digit;
                        }
                    }
                }
                ChunkState::SizeLf(size) => {
                    if input[0] == b'\n' {
                        input = &input[1..];
                    }
                    *state = start_chunk(*size);
                }
                ChunkState::Data(remaining) => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    out(&input[..n]);
                    input = &input[n..];
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        *state = ChunkState::DataCr;
                    }
                }
                ChunkState::DataCr => {
                    if input[0] == b'\r' {
                        input = &input[1..];
                        *state = ChunkState::DataLf;
                    } else if input[0] == b'\n' {
                        input = &input[1..];
                        *state = ChunkState::Size(0, false);
                    } else {
                        *state = ChunkState::Size(0, false);
                    }
                }
                ChunkState::DataLf => {
                    if input[0] == b'\n' {
                        input = &input[1..];
                    }
                    *state = ChunkState::Size(0, false);
                }
                ChunkState::Done => return false,
            }
        }
        !matches!(state, ChunkState::Done)
    }
}

fn start_chunk(size: u64) -> ChunkState {
    if size == 0 {
        ChunkState::Done
    } else {
        ChunkState::Data(size)
    }
}

/// The parsed head of an HTTP response.
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

/// Parses a response head if `buf` holds all of it.
pub fn parse_head(buf: &[u8]) -> Option<Head> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok();
        }
    }
    Some(Head {
        status,
        chunked,
        content_length,
        len: end,
    })
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One dispatched message.
pub struct Message<'a> {
    pub data: &'a [u8],
}

/// The WHATWG event-stream parser state for one stream.
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    data: Vec<u8>,
    /// The last event ID, which a reconnecting client would send.
    pub last_event_id: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF belongs to it.
    after_cr: bool,
    /// The first bytes may carry a UTF-8 BOM, which is skipped.
    started: bool,
    pub retry: Option<u64>,
}

impl Parser {
    /// Feeds decoded body bytes, calling `on_message` for each dispatch.
    pub fn feed(&mut self, mut input: &[u8], on_message: &mut impl FnMut(Message<'_>)) {
        if !self.started && !input.is_empty() {
            self.started = true;
            if input.starts_with(b"\xEF\xBB\xBF") {
                input = &input[3..];
            }
        }
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        while let Some(pos) = input.iter().position(|&b| b == b'\n' || b == b'\r') {
            let terminator = input[pos];
            if self.line.is_empty() {
                self.process_line(&input[..pos], on_message);
            } else {
                self.line.extend_from_slice(&input[..pos]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, on_message);
                self.line = line;
                self.line.clear();
            }
            input = &input[pos + 1..];
            if terminator == b'\r' {
                if input.is_empty() {
                    self.after_cr = true;
                } else if input[0] == b'\n' {
                    input = &input[1..];
                }
            }
        }
        self.line.extend_from_slice(input);
    }

    fn process_line(&mut self, line: &[u8], on_message: &mut impl FnMut(Message<'_>)) {
        if line.is_empty() {
            if !self.data.is_empty() {
                // Remove the last LF.
                self.data.pop();
                on_message(Message { data: &self.data });
            }
            self.data.clear();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id.clear();
                self.last_event_id.extend_from_slice(value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
}

/// The benchmark's marker in an event body: `#B<seq>:<send time, µs since
/// the Unix epoch>#`.
pub fn marker(seq: u64, sent_us: u64) -> String {
    format!("#B{seq}:{sent_us}#")
}

/// Finds and parses the marker in a message's data.
pub fn parse_marker(data: &[u8]) -> Option<(u64, u64)> {
    let start = find(data, b"#B")? + 2;
    let rest = &data[start..];
    let (seq, used) = digits(rest)?;
    let rest = &rest[used..];
    if rest.first() != Some(&b':') {
        return None;
    }
    let (sent, _) = digits(&rest[1..])?;
    Some((seq, sent))
}

fn digits(input: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut n = 0;
    for &b in input {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        n += 1;
    }
    (n > 0).then_some((value, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut |m| {
                out.push(String::from_utf8_lossy(m.data).into_owned())
            });
        }
        out
    }

    #[test]
    fn follows_the_whatwg_rules() {
        assert_eq!(
            messages(&[b"retry: 10\n\ndata: a\ndata:b\n\n: comment\n\ndata\n\n"]),
            vec!["a\nb", ""]
        );
        // CRLF split across chunks, CR alone, BOM.
        assert_eq!(
            messages(&[b"\xEF\xBB\xBFdata: x\r", b"\n\r", b"\ndata: y\r\r"]),
            vec!["x", "y"]
        );
        assert_eq!(messages(&[b"da", b"ta: 1", b"2\n", b"\n"]), vec!["12"]);
    }

    #[test]
    fn decodes_chunked_bodies_split_anywhere() {
        let raw = b"5\r\nhello\r\n3;ext=1\r\n ab\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let mut body = Body::Chunked(ChunkState::Size(0, false));
            let mut out = Vec::new();
            body.feed(&raw[..split], &mut |b| out.extend_from_slice(b));
            let open = body.feed(&raw[split..], &mut |b| out.extend_from_slice(b));
            assert_eq!(out, b"hello ab");
            assert!(!open);
        }
    }

    #[test]
    fn markers_round_trip() {
        let body = format!(
            "{{\"content\":\"{} pad\"}}",
            marker(42, 1_700_000_000_123_456)
        );
        assert_eq!(
            parse_marker(body.as_bytes()),
            Some((42, 1_700_000_000_123_456))
        );
        assert_eq!(parse_marker(b"#Bx"), None);
    }
}
