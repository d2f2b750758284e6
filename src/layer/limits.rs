//! Size limits, checked before anything else is done for the request, and the one watch on the
//! request body.
//!
//! The header section must fit `max_header_bytes` (431), and the body `max_body` (413): a
//! declared `Content-Length` over the limit is refused at once; a body that streams past it
//! (chunked) is cut where it crosses the limit, and the request fails with the same 413 instead
//! of an upstream error. A body that breaks off (the caller left mid-upload) makes the request
//! fail as `PROXY_CALLER_GONE` (499), not as the upstream error it causes further down. Slow and
//! oversized header sections hyper itself refuses earlier, in `server/connection.rs`.
//!
//! Also first, before the caller is identified: what the request head itself makes unservable.
//! Methods Salesforce's APIs do not use get 405 (`TRACE` would reflect the bearer token; a
//! `CONNECT` in origin form asks for no tunnel), and a head RFC 9112 §3.2 says to refuse
//! gets 400: two `Host`s, a `Host` with a bad port or trailing dots, two `Proxy-Authorization`s.
//!
//! A request framed by both `Content-Length` and `Transfer-Encoding` is refused with 400 and its
//! connection closed, as Envoy does; [`crate::framing`] tells which requests came so.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::{
    body::{BodyError, ProxyBody},
    error::ProxyError,
    framing::FramingDoubt,
};

#[derive(Clone)]
pub(crate) struct LimitsLayer {
    max_header_bytes: usize,
    max_body: u64,
}

impl LimitsLayer {
    pub(crate) fn new(max_header_bytes: usize, max_body: u64) -> Self {
        Self {
            max_header_bytes,
            max_body,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            max_header_bytes: self.max_header_bytes,
            max_body: self.max_body,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Limits<S> {
    inner: S,
    max_header_bytes: usize,
    max_body: u64,
}

/// What the limits look at in a request's header section, read in one pass over it.
struct Head<'a> {
    /// The header section's size as it travelled: request line, and each `name: value\r\n`.
    bytes: usize,
    /// The first `Content-Length`.
    content_length: Option<&'a HeaderValue>,
    /// The first `Host`.
    host: Option<&'a HeaderValue>,
    two_hosts: bool,
    two_credentials: bool,
}

impl<'a> Head<'a> {
    fn read<B>(request: &'a Request<B>) -> Self {
        let uri = request.uri();
        // The target's length as `Uri` displays it, without building the string.
        let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path().len()
            + uri.query().map_or(0, |q| q.len() + 1);
        let mut head = Head {
            bytes: request.method().as_str().len() + target + 12,
            content_length: None,
            host: None,
            two_hosts: false,
            two_credentials: false,
        };
        let mut credentials = false;
        for (name, value) in request.headers() {
            head.bytes += name.as_str().len() + value.len() + 4;
            if name == header::HOST {
                head.two_hosts |= head.host.replace(value).is_some();
            } else if name == header::PROXY_AUTHORIZATION {
                head.two_credentials |= credentials;
                credentials = true;
            } else if name == header::CONTENT_LENGTH && head.content_length.is_none() {
                head.content_length = Some(value);
            }
        }
        head
    }
}

impl<S> Service<Request<ProxyBody>> for Limits<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    /// Left: the inner future as it is, for requests without a body (most); right: a body watched.
    type Future = Either<
        S::Future,
        Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let (max_header_bytes, max_body) = (self.max_header_bytes, self.max_body);
        let head = match check_head(&request) {
            Ok(head) => head,
            Err(error) => return Either::Right(Box::pin(std::future::ready(Err(error)))),
        };
        if head.bytes > max_header_bytes {
            return Either::Right(Box::pin(std::future::ready(Err(
                ProxyError::HeadersTooLarge {
                    limit: max_header_bytes,
                },
            ))));
        }
        let declared = head
            .content_length
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Either::Right(Box::pin(std::future::ready(Err(
                ProxyError::BodyTooLarge { limit: max_body },
            ))));
        }
        // Most requests (GETs) have no body: nothing to watch.
        if request.body().is_end_stream() {
            return Either::Left(self.inner.call(request));
        }
        let fault = Arc::new(OnceLock::new());
        let request = request.map(|body| {
            Watched {
                inner: body,
                seen: 0,
                limit: max_body,
                fault: fault.clone(),
            }
            .boxed_unsync()
        });
        let future = self.inner.call(request);
        Either::Right(Box::pin(async move {
            let outcome = future.await;
            match fault.get() {
                Some(BodyFault::TooLarge) => Err(ProxyError::BodyTooLarge { limit: max_body }),
                Some(BodyFault::Malformed(why)) => Err(ProxyError::BadRequest(format!(
                    "the request body is malformed: {why}"
                ))),
                Some(BodyFault::Broken(why)) => Err(ProxyError::CallerGone(why.clone())),
                None => outcome,
            }
        }))
    }
}

/// The method and the headers that say who and where (see the module doc); the head, read once
/// for these checks and the limits.
fn check_head<B>(request: &Request<B>) -> Result<Head<'_>, ProxyError> {
    match request.extensions().get::<FramingDoubt>() {
        Some(FramingDoubt::Both) => return Err(ProxyError::AmbiguousFraming),
        Some(FramingDoubt::Lost) => return Err(ProxyError::FramingLost),
        None => {}
    }
    let method = request.method();
    let forwarded = matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    );
    if !forwarded {
        // A target with an authority asks for a tunnel (the route layer refuses any but
        // `host:port`, and a CONNECT inside a tunnel); `CONNECT /path` is no tunnel request.
        let uri = request.uri();
        let tunnel = *method == Method::CONNECT
            && (uri.authority().is_some()
                || request
                    .extensions()
                    .get::<crate::context::Tunnel>()
                    .is_some());
        if !tunnel {
            return Err(ProxyError::MethodNotAllowed(method.as_str().to_owned()));
        }
    }
    let head = Head::read(request);
    if head.two_hosts {
        return Err(ProxyError::BadRequest(
            "two Host headers: send exactly one (RFC 9112 section 3.2)".into(),
        ));
    }
    if let Some(host) = head.host {
        check_host(host.as_bytes())
            .map_err(|why| ProxyError::BadRequest(format!("malformed Host header: {why}")))?;
    }
    if head.two_credentials {
        return Err(ProxyError::BadRequest(
            "two Proxy-Authorization headers: send one".into(),
        ));
    }
    Ok(head)
}

/// A `Host` value (or a target's authority) whose port, if any, is a number up to 65535 and
/// whose name does not end in a dot: `acme.my.salesforce.com.` names the same host under another
/// spelling, which only invites a mismatch between what routes see and what is logged.
pub(crate) fn check_host(value: &[u8]) -> Result<(), &'static str> {
    let name_end = match short_port(value) {
        Some((port, colon)) => {
            if port > 65535 {
                return Err("the port must be a number from 0 to 65535");
            }
            colon
        }
        // The port follows the last ':' outside an IPv6 literal's brackets.
        None => match last_colon_or_bracket(value) {
            Some(at) if value[at] == b':' => {
                let port = &value[at + 1..];
                // Digits only (no sign, no space), at most 65535: one pass, no string parse.
                let number = port.iter().try_fold(0u32, |n, &b| {
                    (b.is_ascii_digit() && n <= 6553).then(|| n * 10 + u32::from(b - b'0'))
                });
                if port.is_empty() || number.is_none_or(|n| n > 65535) {
                    return Err("the port must be a number from 0 to 65535");
                }
                at
            }
            _ => value.len(),
        },
    };
    if value[..name_end].ends_with(b".") {
        return Err("the host name ends with a dot; send it without");
    }
    Ok(())
}

/// Most values end in `:` and a port of a few digits, all within their last 8 bytes: the port
/// and where that `:` is, read from those bytes at once.
fn short_port(value: &[u8]) -> Option<(u32, usize)> {
    let last = value.last_chunk::<8>()?;
    // After the last ':' of the 8 bytes, 1 to 7 of them: digits, which no ':' or ']' follows.
    let digits = (bytes_equal(u64::from_le_bytes(*last), b':').leading_zeros() / 8) as usize;
    if !(1..8).contains(&digits) {
        return None;
    }
    Some((last_digits(*last, digits)?, value.len() - 1 - digits))
}

/// The high bit of each byte of `word` that is `byte` set, and no other bit.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let x = word ^ u64::from_ne_bytes([byte; 8]);
    // Only a byte that is 0 here neither carries into its high bit nor has it.
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// Where the last `:` or `]` of `value` is: read 8 bytes at a time from the end (host names are
/// a few words long, and most have no port).
fn last_colon_or_bracket(value: &[u8]) -> Option<usize> {
    let mut end = value.len();
    let Some(last) = value.last_chunk::<8>() else {
        return value.iter().rposition(|&b| b == b':' || b == b']');
    };
    let mut word = u64::from_le_bytes(*last);
    loop {
        let marks = bytes_equal(word, b':') | bytes_equal(word, b']');
        if marks != 0 {
            return Some(end - 1 - (marks.leading_zeros() / 8) as usize);
        }
        if end == 8 {
            return None;
        }
        // The word before, or the first 8 bytes (read again in part).
        end = (end - 8).max(8);
        word = u64::from_le_bytes(*value[..end].last_chunk::<8>()?);
    }
}

/// The number the last `digits` (1 to 7) of these 8 bytes write, if they are all ASCII digits.
fn last_digits(bytes: [u8; 8], digits: usize) -> Option<u32> {
    const ZEROS: u64 = u64::from_ne_bytes([b'0'; 8]);
    const HIGH_NIBBLES: u64 = u64::from_ne_bytes([0xf0; 8]);
    const SIXES: u64 = u64::from_ne_bytes([0x06; 8]);
    // In memory order, the most significant digit first; the bytes before the digits read as
    // leading zeros.
    let keep = u64::MAX.checked_shl(8 * (8 - digits as u32)).unwrap_or(0);
    let word = (u64::from_le_bytes(bytes) & keep) | (ZEROS & !keep);
    // 0x30 to 0x39 each: `3` above, and below, nothing past 9 (adding 6 stays under 0x40).
    if word & HIGH_NIBBLES != ZEROS || word.wrapping_add(SIXES) & HIGH_NIBBLES != ZEROS {
        return None;
    }
    // Eight digits to a number as simdjson and fast_float do it: each byte with the one after
    // it makes a two-digit number, then two multiplications weigh the four and add them up.
    let values = word - ZEROS;
    let pairs = values.wrapping_mul(10).wrapping_add(values >> 8);
    let number = (pairs & 0x0000_00ff_0000_00ff)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((pairs >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32)));
    u32::try_from(number >> 32).ok()
}

/// What went wrong with a request body, whoever was reading it at the time.
#[derive(Debug)]
enum BodyFault {
    TooLarge,
    /// Bad chunked framing: the caller is still there to be told.
    Malformed(String),
    /// The body stopped: usually the caller went away.
    Broken(String),
}

impl BodyFault {
    /// hyper reports bad chunked framing as an `InvalidInput` or `InvalidData` I/O error under
    /// the body error, and a caller that left as an unexpected end of the stream.
    fn of(error: &BodyError) -> Self {
        let why = crate::error::error_chain(error);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            let malformed = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                )
            });
            if malformed {
                return Self::Malformed(why);
            }
            source = e.source();
        }
        Self::Broken(why)
    }
}

/// A body that fails once more than `limit` bytes went through, and records in `fault` why it
/// failed, if it did.
struct Watched {
    inner: ProxyBody,
    seen: u64,
    limit: u64,
    fault: Arc<OnceLock<BodyFault>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
struct TooLarge(u64);

impl Body for Watched {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => {
                let _ = self.fault.set(BodyFault::of(&error));
                return Poll::Ready(Some(Err(error)));
            }
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            if self.seen > self.limit {
                let _ = self.fault.set(BodyFault::TooLarge);
                return Poll::Ready(Some(Err(BodyError(Box::new(TooLarge(self.limit))))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
