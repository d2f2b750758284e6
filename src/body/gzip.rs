//! Streaming gzip for request bodies: `decode` inflates a caller's `Content-Encoding: gzip` body
//! as it streams, `encode` deflates a body again as one gzip member.
//!
//! Salesforce's Java WSC client gzips its SOAP requests, and the session has to be written into
//! the envelope inside. Both adapters work frame by frame with flate2's low-level `Decompress` and
//! `Compress` and never hold the body: decoding fills at most [`MAX_FRAME`] bytes per output
//! frame and stops past a total limit, so a gzip bomb (a few kB that inflate to gigabytes) never
//! produces an unbounded chunk or total; encoding flushes after every input frame so the body
//! keeps streaming and finishes the member (CRC-32 and size) at the end.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::{BodyError, ProxyBody};

/// The most bytes one decoded frame carries.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// The longest gzip member header accepted (the optional extra field, file name and comment).
const MAX_HEADER: usize = 128 * 1024;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Why a gzip body could not be decoded: the error inside the [`BodyError`] a decoded body yields.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GzipError {
    #[error(
        "the request body is larger than the limit of {limit} bytes once decompressed \
         (Content-Encoding: gzip)"
    )]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Invalid(&'static str),
}

/// `body` inflated: at most [`MAX_FRAME`] bytes a frame, an error past `limit` bytes in all.
/// Concatenated gzip members are read one after the other; trailers pass through at the end.
pub(crate) fn decode(body: ProxyBody, limit: u64) -> ProxyBody {
    Decode {
        inner: body,
        input: Bytes::new(),
        inflate: Decompress::new(false),
        state: DecodeState::Header,
        header: Vec::new(),
        trailer: Vec::new(),
        crc: Crc::new(),
        total: 0,
        limit,
        pending: false,
        inner_done: false,
        trailers: None,
    }
    .boxed_unsync()
}

/// `body` deflated as one gzip member, a frame out for each frame in (flushed, so it streams).
pub(crate) fn encode(body: ProxyBody) -> ProxyBody {
    Encode {
        inner: body,
        deflate: Compress::new(Compression::fast(), false),
        crc: Crc::new(),
        started: false,
        finished: false,
        trailers: None,
    }
    .boxed_unsync()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    /// Reading a member's header (the first member, or one after a finished member's trailer).
    Header,
    Deflate,
    /// The CRC-32 and size after a member's deflate data.
    Trailer,
    /// A member is complete: the body may end here, or another member follow.
    Between,
    /// Ended or failed: nothing more is yielded.
    Done,
}

struct Decode {
    inner: ProxyBody,
    /// Input not yet consumed.
    input: Bytes,
    inflate: Decompress,
    state: DecodeState,
    /// A member header split across input frames.
    header: Vec<u8>,
    trailer: Vec<u8>,
    crc: Crc,
    total: u64,
    limit: u64,
    /// The last inflate filled its frame: the inflater may hold output without more input.
    pending: bool,
    inner_done: bool,
    trailers: Option<HeaderMap>,
}

enum Step {
    Out(Bytes),
    NeedInput,
}

fn invalid(reason: &'static str) -> BodyError {
    BodyError(Box::new(GzipError::Invalid(reason)))
}

/// The length of the gzip member header at the start of `h`, or `None` if `h` ends inside it.
fn header_len(h: &[u8]) -> Result<Option<usize>, BodyError> {
    if (h.len() >= 2 && h[..2] != MAGIC) || (h.len() == 1 && h[0] != MAGIC[0]) {
        return Err(invalid(
            "it does not start with the gzip magic bytes (1f 8b)",
        ));
    }
    if h.len() < 10 {
        return Ok(None);
    }
    if h[2] != 8 {
        return Err(invalid("its compression method is not deflate"));
    }
    let flags = h[3];
    if flags & FRESERVED != 0 {
        return Err(invalid("its header sets reserved flags"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = h.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let Some(zero) = h.get(at..).and_then(|s| s.iter().position(|&b| b == 0)) else {
                return Ok(None);
            };
            at += zero + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok((h.len() >= at).then_some(at))
}

impl Decode {
    /// Works through the input held: a decoded frame, or a call for more input.
    fn step(&mut self) -> Result<Step, BodyError> {
        loop {
            if self.input.is_empty() && !(self.state == DecodeState::Deflate && self.pending) {
                return Ok(Step::NeedInput);
            }
            match self.state {
                DecodeState::Header | DecodeState::Between => self.read_header()?,
                DecodeState::Deflate => {
                    if let Some(out) = self.inflate_some()? {
                        return Ok(Step::Out(out));
                    }
                }
                DecodeState::Trailer => self.read_trailer()?,
                DecodeState::Done => return Ok(Step::NeedInput),
            }
        }
    }

    fn read_header(&mut self) -> Result<(), BodyError> {
        if self.state == DecodeState::Between && self.input.first() != Some(&MAGIC[0]) {
            return Err(invalid("data follows the gzip stream"));
        }
        let len = if self.header.is_empty() {
            header_len(&self.input)?
        } else {
            None
        };
        if let Some(len) = len {
            self.input.advance(len);
        } else {
            let had = self.header.len();
            let take = self.input.len().min(MAX_HEADER + 1 - had);
            self.header.extend_from_slice(&self.input[..take]);
            match header_len(&self.header)? {
                Some(len) => {
                    self.input.advance(len - had);
                    self.header.clear();
                }
                None if self.header.len() > MAX_HEADER => {
                    return Err(invalid("its member header is too long"));
                }
                None => self.input.advance(take),
            }
        }
        if self.header.is_empty() {
            self.state = DecodeState::Deflate;
            self.inflate.reset(false);
            self.crc.reset();
        } else {
            self.state = DecodeState::Header;
        }
        Ok(())
    }

    /// Inflates the held input into one frame of at most `MAX_FRAME` bytes (and no more than the
    /// limit leaves, plus one byte to tell that it is exceeded). The frame starts sized for the
    /// input (a few times it: deflate rarely does better on a small frame) and grows, doubling,
    /// up to that bound only while the inflater fills it.
    fn inflate_some(&mut self) -> Result<Option<Bytes>, BodyError> {
        let room = self.limit.saturating_sub(self.total).saturating_add(1);
        let cap = usize::try_from(room).map_or(MAX_FRAME, |r| r.min(MAX_FRAME));
        let guess = self.input.len().saturating_mul(4).saturating_add(1024);
        let mut out = Vec::with_capacity(guess.min(cap));
        loop {
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(&self.input, &mut out, FlushDecompress::None)
                .map_err(|_| invalid("its deflate data is corrupt"))?;
            let consumed = usize::try_from(self.inflate.total_in() - before_in)
                .map_err(|_| invalid("its deflate data is corrupt"))?;
            self.input.advance(consumed);
            if status == Status::StreamEnd {
                self.state = DecodeState::Trailer;
                self.pending = false;
                break;
            }
            if out.len() == out.capacity() && out.capacity() < cap {
                // Full before the bound: the inflater may hold more, input or not.
                let grown = out.capacity().saturating_mul(2).min(cap);
                out.reserve_exact(grown - out.len());
                continue;
            }
            self.pending = out.len() >= cap;
            if self.pending || self.input.is_empty() {
                break;
            }
            if consumed == 0 && out.len() == before_out {
                return Err(invalid("its deflate data is corrupt"));
            }
        }
        self.total += out.len() as u64;
        if self.total > self.limit {
            self.state = DecodeState::Done;
            return Err(BodyError(Box::new(GzipError::TooLarge {
                limit: self.limit,
            })));
        }
        self.crc.update(&out);
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }

    fn read_trailer(&mut self) -> Result<(), BodyError> {
        let take = self.input.len().min(8 - self.trailer.len());
        self.trailer.extend_from_slice(&self.input[..take]);
        self.input.advance(take);
        if self.trailer.len() < 8 {
            return Ok(());
        }
        let t = &self.trailer;
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() || size != self.crc.amount() {
            return Err(invalid("its CRC-32 or length does not match the data"));
        }
        self.trailer.clear();
        self.state = DecodeState::Between;
        Ok(())
    }
}

impl Body for Decode {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.state == DecodeState::Done {
                return Poll::Ready(None);
            }
            match this.step() {
                Ok(Step::Out(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::NeedInput) => {}
                Err(e) => {
                    this.state = DecodeState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.inner_done {
                let ended_whole = this.state == DecodeState::Between;
                this.state = DecodeState::Done;
                if !ended_whole {
                    return Poll::Ready(Some(Err(invalid("the gzip stream ends early"))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.input = data,
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.inner_done = true;
                    }
                },
                Some(Err(e)) => {
                    this.state = DecodeState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.inner_done = true,
            }
        }
    }
}

struct Encode {
    inner: ProxyBody,
    deflate: Compress,
    crc: Crc,
    /// Whether the member header went out.
    started: bool,
    finished: bool,
    trailers: Option<HeaderMap>,
}

/// The member header: deflate, no flags, no time, fastest compression, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

impl Encode {
    /// `input` deflated, then flushed (`Sync`) or the stream finished (`Finish`).
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64 + HEADER.len());
        if !self.started {
            out.extend_from_slice(&HEADER);
            self.started = true;
        }
        self.crc.update(input);
        let mut at = 0;
        loop {
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(&input[at..], &mut out, flush)
                .map_err(|e| BodyError(Box::new(e)))?;
            at += usize::try_from(self.deflate.total_in() - before)
                .map_err(|e| BodyError(Box::new(e)))?;
            let flushed = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => out.len() < out.capacity(),
            };
            if at == input.len() && flushed {
                return Ok(out);
            }
            out.reserve(out.capacity().max(1024));
        }
    }

    fn finish(&mut self) -> Result<Bytes, BodyError> {
        let mut out = self.deflate(&[], FlushCompress::Finish)?;
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.finished = true;
        Ok(Bytes::from(out))
    }
}

impl Body for Encode {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let out = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => this.deflate(&data, FlushCompress::Sync).map(Bytes::from),
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.finish()
                    }
                },
                Some(Err(e)) => {
                    this.finished = true;
                    Err(e)
                }
                None => this.finish(),
            };
            return Poll::Ready(Some(out.map(Frame::data)));
        }
    }
}

#[cfg(test)]
mod tests;
