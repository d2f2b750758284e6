//! The HTTP/1 framing hyper does not show: whether a request head had both `Content-Length` and
//! `Transfer-Encoding` (request smuggling). hyper reads such a request by its chunked framing and
//! drops `Content-Length` from the header map, so the stack cannot see it. [`FramingWatch`]
//! follows the bytes hyper reads ([`crate::tap`]) and notes, head by head, which ones had both;
//! the server marks those requests with a [`FramingDoubt`], and every request after bytes the
//! watch could not follow too (it fails closed). The limits layer refuses them. Most heads name
//! neither framing, which a scan of their bytes tells; only the others are parsed (httparse).

use std::{
    collections::VecDeque,
    ops::ControlFlow,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::tap::Follow;

/// Marks a request the limits layer refuses for its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingDoubt {
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
///
/// One writer (the watch) and one reader (the server, a request at a time): the heads are
/// counted, and only those with both framings are kept, by number, behind a lock nothing else
/// takes.
#[derive(Debug)]
pub(crate) struct FramingLog {
    /// Heads noted so far.
    noted: AtomicU64,
    /// Entries taken by [`FramingLog::next`] so far.
    taken: AtomicU64,
    /// The number of the oldest head in `both`, `NONE` while it is empty.
    first_both: AtomicU64,
    /// The numbers of the heads with both framings not taken yet, oldest first.
    both: Mutex<VecDeque<u64>>,
    lost: AtomicBool,
}

const NONE: u64 = u64::MAX;

impl Default for FramingLog {
    fn default() -> Self {
        Self {
            noted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            first_both: AtomicU64::new(NONE),
            both: Mutex::default(),
            lost: AtomicBool::new(false),
        }
    }
}

impl FramingLog {
    /// Why the next request must be refused for its framing, if it must.
    pub(crate) fn next(&self) -> Option<FramingDoubt> {
        let taken = self.taken.load(Ordering::Relaxed);
        if taken == self.noted.load(Ordering::Acquire) {
            return self
                .lost
                .load(Ordering::Relaxed)
                .then_some(FramingDoubt::Lost);
        }
        self.taken.store(taken + 1, Ordering::Relaxed);
        if self.first_both.load(Ordering::Relaxed) != taken {
            return None;
        }
        let mut both = self.both.lock().unwrap_or_else(PoisonError::into_inner);
        both.pop_front();
        let first = both.front().copied().unwrap_or(NONE);
        self.first_both.store(first, Ordering::Relaxed);
        Some(FramingDoubt::Both)
    }

    fn push(&self, ambiguous: bool) {
        let number = self.noted.load(Ordering::Relaxed);
        if ambiguous {
            let mut both = self.both.lock().unwrap_or_else(PoisonError::into_inner);
            if both.is_empty() {
                self.first_both.store(number, Ordering::Relaxed);
            }
            both.push_back(number);
        }
        // Published after `first_both`: the reader looks at it once it sees the head.
        self.noted.store(number + 1, Ordering::Release);
    }

    /// The heads noted and not taken yet: whether each had both.
    #[cfg(test)]
    fn pending(&self) -> Vec<bool> {
        let both = self.both.lock().unwrap();
        (self.taken.load(Ordering::Relaxed)..self.noted.load(Ordering::Relaxed))
            .map(|number| both.contains(&number))
            .collect()
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
pub(crate) struct FramingWatch {
    state: Framing,
    /// The head (or chunk line) read so far.
    pending: Vec<u8>,
    log: Arc<FramingLog>,
    max_head: usize,
}

impl FramingWatch {
    /// `max_head`: past this, hyper refuses the head itself and the watch stops.
    pub(crate) fn new(log: Arc<FramingLog>, max_head: usize) -> Self {
        Self {
            state: Framing::Head,
            pending: Vec::new(),
            log,
            max_head,
        }
    }

    fn feed(&mut self, input: &[u8]) {
        match self.state {
            Framing::Off => return,
            // Most reads are one whole head (a GET's), read in place: nothing left to track.
            Framing::Head if self.pending.is_empty() && !input.is_empty() => {
                match self.head(input) {
                    Some((used, next)) => {
                        self.state = next;
                        if used < input.len() {
                            self.track(&input[used..]);
                        }
                    }
                    None => self.pending.extend_from_slice(input),
                }
            }
            _ => self.track(input),
        }
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
    #[inline]
    fn head(&mut self, bytes: &[u8]) -> Option<(usize, Framing)> {
        // Most heads name neither framing: found by a scan, no parse needed.
        if let Some(used) = plain_head(bytes) {
            self.log.push(false);
            return Some((used, Framing::Head));
        }
        self.parse_head(bytes)
    }

    /// [`FramingWatch::head`] for the heads the scan leaves to httparse.
    #[inline(never)]
    fn parse_head(&mut self, bytes: &[u8]) -> Option<(usize, Framing)> {
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

/// How many lines [`plain_head`] reads before it leaves the head to httparse: hyper (and the
/// watch) refuse more than 100 header fields.
const PLAIN_LINES: usize = 100;

/// The length of the head at the start of `bytes`, when a scan can tell that httparse, if it takes
/// the head, reads it as a complete head that is not a CONNECT and has neither
/// `Content-Length` nor `Transfer-Encoding`: what [`FramingWatch::head`] then concludes
/// (`Framing::Head`, the head not ambiguous) is known without parsing it. `None` for any other
/// head, and whenever the scan cannot be sure: httparse decides.
///
/// A head httparse refuses may pass the scan (the watch would have stopped there); hyper parses
/// with httparse too (its default configuration, as the watch), so it refuses that head,
/// answers 400 and closes the connection: no request reads the log after it.
///
/// The scan, a word (8 bytes) at a time, two words a step, stops at two bytes: `\n`, where a line ends (httparse ends
/// lines at `\n`, after an optional `\r`; a head it takes has no other `\r`), and `-`, in
/// each of the two names. Any line that names either framing, in any case, anywhere (a header
/// name, an obs-fold, a value, the target), sends the head to httparse, as does one it cannot
/// read through: a leading empty line (httparse skips those), a `\r` not followed by `\n`
/// at the start of a line, or bytes ending before the head does (it is incomplete).
fn plain_head(bytes: &[u8]) -> Option<usize> {
    if matches!(bytes.first(), None | Some(b'\r' | b'\n')) || bytes.starts_with(b"CONNECT") {
        return None;
    }
    // Fewer than 8 bytes hold no complete head (14 at least).
    let last = bytes.last_chunk::<8>()?;
    let mut lines = 0;
    // 16 bytes at a time, then the word left, if any, and the bytes after it, at the bottom of
    // the last 8.
    let pairs = bytes.chunks_exact(16);
    let (rest, whole) = (pairs.remainder(), bytes.len() / 16);
    for (n, pair) in pairs.enumerate() {
        let (one, two) = pair.split_at(8);
        let one = marks(u64::from_le_bytes(one.try_into().unwrap_or_default()));
        let two = marks(u64::from_le_bytes(two.try_into().unwrap_or_default()));
        if one | two != 0 {
            for (start, marks) in [(16 * n, one), (16 * n + 8, two)] {
                if let ControlFlow::Break(answer) = look(bytes, start, marks, &mut lines) {
                    return answer;
                }
            }
        }
    }
    let start = 16 * whole;
    let tail = |left: usize| {
        marks(u64::from_le_bytes(*last))
            .checked_shr(8 * (8 - left as u32))
            .unwrap_or(0)
    };
    let words = match rest.first_chunk::<8>() {
        Some(word) => [
            (start, marks(u64::from_le_bytes(*word))),
            (start + 8, tail(rest.len() - 8)),
        ],
        None => [(start, tail(rest.len())), (0, 0)],
    };
    for (start, marks) in words {
        if let ControlFlow::Break(answer) = look(bytes, start, marks, &mut lines) {
            return answer;
        }
    }
    None
}

/// Looks at the marks of the word at `start`, in order: `Break` with [`plain_head`]'s answer.
#[inline(always)]
fn look(
    bytes: &[u8],
    start: usize,
    mut marks: u64,
    lines: &mut usize,
) -> ControlFlow<Option<usize>> {
    while marks != 0 {
        let at = start + marks.trailing_zeros() as usize / 8;
        marks &= marks - 1;
        mark(bytes, at, lines)?;
    }
    ControlFlow::Continue(())
}

/// The high bit of each byte of `word` that is `\n` or `-` set, and perhaps that of a byte
/// above one that is (a borrow): each is looked at.
#[inline(always)]
fn marks(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const DASHES: u64 = u64::from_ne_bytes([b'-'; 8]);
    // A byte that is 0 after the XOR borrows, which sets its high bit; `!word` keeps only
    // bytes below 0x80 (the two bytes' XORs keep each byte's high bit).
    ((word ^ NEWLINES).wrapping_sub(ONES) | (word ^ DASHES).wrapping_sub(ONES)) & !word & HIGHS
}

/// What the byte at `at` tells [`plain_head`], if it is a mark: `Break` with its answer.
#[inline(always)]
fn mark(bytes: &[u8], at: usize, lines: &mut usize) -> ControlFlow<Option<usize>> {
    match bytes.get(at) {
        Some(b'\n') => {
            *lines += 1;
            match (bytes.get(at + 1), bytes.get(at + 2)) {
                _ if *lines > PLAIN_LINES => ControlFlow::Break(None),
                (Some(b'\n'), _) => ControlFlow::Break(Some(at + 2)),
                (Some(b'\r'), Some(b'\n')) => ControlFlow::Break(Some(at + 3)),
                // Incomplete, or a `\r` httparse refuses.
                (Some(b'\r') | None, _) => ControlFlow::Break(None),
                _ => ControlFlow::Continue(()),
            }
        }
        Some(b'-') if names_framing(bytes, at) => ControlFlow::Break(None),
        _ => ControlFlow::Continue(()),
    }
}

/// Whether the dash at `at` may be the one in `Content-Length` or `Transfer-Encoding`, in any
/// case; near the end of `bytes`, as much of the name as they hold.
#[inline(never)]
fn names_framing(bytes: &[u8], at: usize) -> bool {
    let named = |name: &[u8], dash: usize| {
        at.checked_sub(dash).is_some_and(|from| {
            let seen = &bytes[from..bytes.len().min(from + name.len())];
            seen.eq_ignore_ascii_case(&name[..seen.len()])
        })
    };
    // Most dashes are told apart by the letter after them (`User-Agent`, `Content-Type`).
    match bytes.get(at + 1).map(|b| b | 0x20) {
        Some(b'l') => named(b"content-length", 7),
        Some(b'e') => named(b"transfer-encoding", 8),
        Some(_) => false,
        None => true,
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
mod tests;
