//! The HTTP/1 framing hyper does not show: whether a request head had both `Content-Length` and
//! `Transfer-Encoding` (request smuggling). hyper reads such a request by its chunked framing and
//! drops `Content-Length` from the header map, so the stack cannot see it. [`FramingWatch`]
//! follows the bytes hyper reads ([`crate::tap`]) and notes, head by head, which ones had both;
//! the server marks those requests with a [`FramingDoubt`], and every request after bytes the
//! watch could not follow too (it fails closed). The limits layer refuses them.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::tap::Follow;

/// Marks a request the limits layer refuses for its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingDoubt {
    /// Its head had both `Content-Length` and `Transfer-Encoding`.
    Both,
    /// It came after bytes the watch could not follow: it cannot be told.
    Lost,
}

/// What [`FramingWatch`] saw of one connection's request heads, in order: whether each had both
/// `Content-Length` and `Transfer-Encoding`. The server takes one entry per request hyper hands
/// it; hyper hands over every head it parsed, in order, and closes the connection on any it
/// cannot parse, so the two stay in step. Once the watch cannot follow the bytes (after a
/// CONNECT, or framing it does not read), it fails closed: every later request is in doubt.
#[derive(Debug, Default)]
pub struct FramingLog {
    heads: Mutex<VecDeque<bool>>,
    lost: AtomicBool,
}

impl FramingLog {
    /// Why the next request must be refused for its framing, if it must.
    pub fn next(&self) -> Option<FramingDoubt> {
        let head = self
            .heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match head {
            Some(true) => Some(FramingDoubt::Both),
            Some(false) => None,
            None => self
                .lost
                .load(Ordering::Relaxed)
                .then_some(FramingDoubt::Lost),
        }
    }

    fn push(&self, ambiguous: bool) {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(ambiguous);
    }
}

/// Where the watch is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
    /// Not HTTP/1 requests any more (a tunnel), or nothing the watch can follow.
    Off,
}

/// Follows the bytes of an HTTP/1 connection ([`crate::tap`]), its request heads read as they
/// go by (see [`FramingLog`]). Bodies are skipped by their framing, not scanned.
pub struct FramingWatch {
    state: Framing,
    /// The head (or chunk line) read so far.
    pending: Vec<u8>,
    log: Arc<FramingLog>,
    max_head: usize,
}

impl FramingWatch {
    /// `max_head`: past this, hyper refuses the head itself and the watch stops.
    pub fn new(log: Arc<FramingLog>, max_head: usize) -> Self {
        Self {
            state: Framing::Head,
            pending: Vec::new(),
            log,
            max_head,
        }
    }

    fn feed(&mut self, input: &[u8]) {
        if self.state == Framing::Off {
            return;
        }
        self.track(input);
        if self.state == Framing::Off {
            self.log.lost.store(true, Ordering::Relaxed);
            self.pending = Vec::new();
        }
    }

    fn track(&mut self, input: &[u8]) {
        // What followed a head in the same read (a body, the next request), fed again.
        let mut carry: Vec<u8>;
        let mut data = input;
        while !data.is_empty() {
            match self.state {
                Framing::Off => return,
                Framing::Body(n) | Framing::ChunkData(n) => {
                    let skip = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    data = &data[skip..];
                    let left = n - skip as u64;
                    self.state = match (self.state, left) {
                        (Framing::Body(_), 0) => Framing::Head,
                        (Framing::Body(_), _) => Framing::Body(left),
                        (_, 0) => Framing::ChunkEnd,
                        _ => Framing::ChunkData(left),
                    };
                }
                Framing::ChunkEnd => match data.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        data = &data[at + 1..];
                        self.state = Framing::ChunkSize;
                    }
                    None => return,
                },
                Framing::ChunkSize | Framing::Trailer => {
                    let Some(at) = data.iter().position(|&b| b == b'\n') else {
                        self.pending.extend_from_slice(data);
                        if self.pending.len() > self.max_head {
                            self.state = Framing::Off;
                        }
                        return;
                    };
                    self.pending.extend_from_slice(&data[..at]);
                    data = &data[at + 1..];
                    let line = std::mem::take(&mut self.pending);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = if self.state == Framing::Trailer {
                        if line.is_empty() {
                            Framing::Head
                        } else {
                            Framing::Trailer
                        }
                    } else {
                        chunk_size(line).map_or(Framing::Off, |size| {
                            if size == 0 {
                                Framing::Trailer
                            } else {
                                Framing::ChunkData(size)
                            }
                        })
                    };
                }
                // Most heads arrive whole in one read: read in place, nothing copied.
                Framing::Head if self.pending.is_empty() => match self.head(data) {
                    Some((used, next)) => {
                        self.state = next;
                        data = &data[used..];
                    }
                    None => {
                        self.pending.extend_from_slice(data);
                        return;
                    }
                },
                Framing::Head => {
                    self.pending.extend_from_slice(data);
                    let mut buffered = std::mem::take(&mut self.pending);
                    let Some((used, next)) = self.head(&buffered) else {
                        self.pending = buffered;
                        if self.pending.len() > self.max_head {
                            self.state = Framing::Off;
                        }
                        return;
                    };
                    self.state = next;
                    carry = buffered.split_off(used);
                    data = &carry;
                }
            }
        }
    }

    /// A complete head at the start of `bytes`: its length and the framing after it, noted in
    /// the log. `None` while it is incomplete; a head httparse refuses turns the watch off.
    fn head(&mut self, bytes: &[u8]) -> Option<(usize, Framing)> {
        // hyper takes at most 100 header fields: a head with more is refused there, and here stops
        // the watch. Left uninitialised: filling 100 empty headers cost more than the parse.
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
        let mut request = httparse::Request::new(&mut []);
        let used = match request.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => return Some((bytes.len(), Framing::Off)),
        };
        let (mut chunked, mut length) = (false, None);
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if length.is_none() && header.name.eq_ignore_ascii_case("content-length") {
                length = Some(header.value);
            }
        }
        self.log.push(chunked && length.is_some());
        let next = if request.method == Some("CONNECT") {
            Framing::Off
        } else if chunked {
            Framing::ChunkSize
        } else if let Some(length) = length {
            std::str::from_utf8(length)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Framing::Off, |n| {
                    if n == 0 {
                        Framing::Head
                    } else {
                        Framing::Body(n)
                    }
                })
        } else {
            Framing::Head
        };
        Some((used, next))
    }
}

/// The size at the start of a chunk line (`1a;ext=x`), in hex; leading zeros, which hyper
/// accepts however many, are skipped.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let significant = &line[line[..digits]
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits)..digits];
    if significant.len() > 16 {
        return None;
    }
    if significant.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(significant).ok()?, 16).ok()
}

impl Follow for FramingWatch {
    fn follow(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log a watch writes for `stream`, fed in pieces of `step` bytes.
    fn heads(stream: &[u8], step: usize) -> Vec<bool> {
        let log = Arc::new(FramingLog::default());
        let mut watch = FramingWatch::new(log.clone(), 64 * 1024);
        for piece in stream.chunks(step) {
            watch.feed(piece);
        }
        let seen: Vec<bool> = log.heads.lock().unwrap().iter().copied().collect();
        drop(watch);
        seen
    }

    #[test]
    fn the_watch_follows_bodies_and_notes_heads_with_both_framings() {
        // A body that looks like a smuggling head is a body: skipped by its length.
        let decoy = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = format!(
            "\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n\
             POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{decoy}\
             POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x};ext=1\r\n{decoy}\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
             POST /d HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n\
             0\r\n\r\n\
             GET /e HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            decoy.len(),
            decoy.len(),
        );
        for step in [1, 2, 7, 64, stream.len()] {
            assert_eq!(
                heads(stream.as_bytes(), step),
                [false, false, false, true, false],
                "step {step}"
            );
        }
        // After a CONNECT the bytes are a tunnel's, and what is unreadable stops the watch.
        let tunnel = format!("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n{decoy}");
        assert_eq!(heads(tunnel.as_bytes(), 5), [false]);
        let broken = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{decoy}");
        assert_eq!(heads(broken.as_bytes(), 5), [false]);
        // Chunk sizes with leading zeros, as hyper reads them.
        let zeros = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000003\r\n\
             abc\r\n0000000000000000000000\r\n\r\n{decoy}\r\n"
        );
        assert_eq!(heads(zeros.as_bytes(), 3), [false, true]);
    }

    #[test]
    fn once_the_watch_is_lost_every_later_request_is_in_doubt() {
        let log = Arc::new(FramingLog::default());
        let mut watch = FramingWatch::new(log.clone(), 64 * 1024);
        watch
            .feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert_eq!(log.next(), None);
        assert_eq!(log.next(), None, "the head it could not follow is noted");
        assert_eq!(log.next(), Some(FramingDoubt::Lost));
        assert_eq!(log.next(), Some(FramingDoubt::Lost));
        assert!(watch.pending.is_empty(), "nothing kept once lost");
    }
}
