//! The one body type that travels the stack, and the bounded buffering the replay layer (to keep
//! a request) and the session layer (to read an expiry answer) need.
//!
//! Request and response bodies are boxed once at the edges so every layer shares one concrete
//! type. Buffering is always bounded: a body is kept whole only up to a limit (so a request can be
//! replayed, or a 401 inspected); past it the bytes already read are spliced back in front of the
//! rest and the body streams on, so a 150 MB Bulk upload never sits in memory. `gzip` inflates
//! and deflates bodies as they stream (a SOAP envelope is rewritten inside its gzip).

pub(crate) mod gzip;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody, combinators::UnsyncBoxBody};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read failure (caller gone, upstream cut off). A named type rather than `BoxError`
/// inside `ProxyBody`: a trait object there trips rustc's "Send is not general enough" in the
/// stack's boxed futures.
#[derive(Debug)]
pub(crate) struct BodyError(pub(crate) BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The body type of every request and response inside the stack.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes a hyper body (caller's request or Salesforce's answer).
pub(crate) fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(|e| BodyError(e.into())).boxed_unsync()
}

/// `head`, then every frame of `rest`: bytes read ahead spliced back in front of the body they
/// came from. The size hint is `rest`'s plus `head`'s length.
pub(crate) fn prepend(head: Bytes, rest: ProxyBody) -> ProxyBody {
    if head.is_empty() {
        return rest;
    }
    Prepend {
        head: Some(head),
        rest,
    }
    .boxed_unsync()
}

struct Prepend {
    head: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Prepend {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match this.head.take() {
            Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let n = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(n));
        }
        hint.set_lower(rest.lower().saturating_add(n));
        hint
    }
}

/// A body after an attempt to hold it in memory.
pub(crate) enum Buffered {
    /// The whole body, no larger than the limit: it can be sent again.
    Complete(Bytes),
    /// Larger than the limit: what was read, followed by the rest, streaming.
    Streaming(ProxyBody),
}

/// Reads `body` into memory if it ends within `limit` bytes; otherwise returns it intact, streaming.
pub(crate) async fn buffer_up_to(mut body: ProxyBody, limit: usize) -> Result<Buffered, BodyError> {
    let mut held = BytesMut::new();
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.data_ref() {
            Some(data) if held.len() + data.len() <= limit => held.extend_from_slice(data),
            Some(_) => {
                let mut prefix: Vec<Result<Frame<Bytes>, BodyError>> = Vec::with_capacity(2);
                if !held.is_empty() {
                    prefix.push(Ok(Frame::data(held.freeze())));
                }
                prefix.push(Ok(frame));
                let rest = BodyStream::new(body);
                let stream = futures_util::stream::iter(prefix).chain(rest);
                return Ok(Buffered::Streaming(StreamBody::new(stream).boxed_unsync()));
            }
            // Trailers are rare on Salesforce calls; keep them in order after the data.
            None => frames.push(frame),
        }
    }
    if frames.is_empty() {
        return Ok(Buffered::Complete(held.freeze()));
    }
    let mut all: Vec<Result<Frame<Bytes>, BodyError>> = vec![Ok(Frame::data(held.freeze()))];
    all.extend(frames.into_iter().map(Ok));
    Ok(Buffered::Streaming(
        StreamBody::new(futures_util::stream::iter(all)).boxed_unsync(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BodyError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn small_body_is_held_whole() {
        let got = buffer_up_to(chunked(&["ab", "cd"]), 4).await.unwrap();
        assert!(matches!(got, Buffered::Complete(b) if b == "abcd"));
    }

    #[tokio::test]
    async fn large_body_streams_every_byte_in_order() {
        let got = buffer_up_to(chunked(&["ab", "cd", "ef"]), 3).await.unwrap();
        let Buffered::Streaming(body) = got else {
            panic!("a body over the limit must stream");
        };
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "abcdef");
    }

    #[tokio::test]
    async fn prepend_puts_the_head_first_and_adds_it_to_the_size() {
        let body = prepend(Bytes::from_static(b"ab"), full("cde"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcde");
        let streaming = prepend(Bytes::from_static(b"x"), chunked(&["y", "z"]));
        assert_eq!(streaming.size_hint().lower(), 1);
        assert_eq!(streaming.collect().await.unwrap().to_bytes(), "xyz");
        let none = prepend(Bytes::new(), full("q"));
        assert_eq!(none.collect().await.unwrap().to_bytes(), "q");
    }
}
