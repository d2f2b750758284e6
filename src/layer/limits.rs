//! Size limits, checked before anything else is done for the request, and the one watch on the
//! request body.
//!
//! The header section must fit `max_header_bytes` (431), and the body `max_body` (413): a
//! declared `Content-Length` over the limit is refused at once; a body that streams past it
//! (chunked) is cut where it crosses the limit, and the request fails with the same 413 instead
//! of an upstream error. A body that breaks off (the caller left mid-upload) makes the request
//! fail as `PROXY_CALLER_GONE` (499), not as the upstream error it causes further down. Slow and
//! oversized header sections hyper itself refuses earlier, in `server.rs`.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::{
    body::{BodyError, ProxyBody},
    error::ProxyError,
};

#[derive(Clone)]
pub struct LimitsLayer {
    max_header_bytes: usize,
    max_body: u64,
}

impl LimitsLayer {
    pub fn new(max_header_bytes: usize, max_body: u64) -> Self {
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
pub struct Limits<S> {
    inner: S,
    max_header_bytes: usize,
    max_body: u64,
}

/// The header section's size as it travelled: request line, and each `name: value\r\n`.
fn header_bytes<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    // The target's length as `Uri` displays it, without building the string.
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1);
    let line = request.method().as_str().len() + target + 12;
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
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
        if header_bytes(&request) > max_header_bytes {
            return Either::Right(Box::pin(std::future::ready(Err(
                ProxyError::HeadersTooLarge {
                    limit: max_header_bytes,
                },
            ))));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
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
        let why = crate::upstream::error_chain(error);
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
mod tests {
    use super::*;
    use crate::body;

    fn watched(body: ProxyBody, limit: u64) -> (Watched, Arc<OnceLock<BodyFault>>) {
        let fault = Arc::new(OnceLock::new());
        let watched = Watched {
            inner: body,
            seen: 0,
            limit,
            fault: fault.clone(),
        };
        (watched, fault)
    }

    #[test]
    fn the_header_section_counts_the_target_as_it_travelled() {
        for target in [
            "/services/data/v61.0/limits",
            "/services/data/v61.0/query?q=SELECT+Id+FROM+Account",
            "http://acme.my.salesforce.com/services/data?x=1",
            "https://acme.my.salesforce.com:8443/",
            "acme.my.salesforce.com:443",
            "*",
        ] {
            let request = Request::builder()
                .uri(target)
                .header("accept", "*/*")
                .body(())
                .unwrap();
            let expected =
                "GET".len() + request.uri().to_string().len() + 12 + "accept".len() + 3 + 4;
            assert_eq!(header_bytes(&request), expected, "{target}");
        }
    }

    #[tokio::test]
    async fn a_body_past_the_limit_fails_and_says_so() {
        let (body, fault) = watched(body::full("0123456789"), 4);
        assert!(body.collect().await.is_err());
        assert!(matches!(fault.get(), Some(BodyFault::TooLarge)));

        let (body, fault) = watched(body::full("0123"), 4);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123");
        assert!(fault.get().is_none());
    }

    #[tokio::test]
    async fn a_broken_body_is_recorded() {
        let broken = http_body_util::StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err(BodyError("connection reset".into())),
        ]))
        .boxed_unsync();
        let (body, fault) = watched(broken, 100);
        assert!(body.collect().await.is_err());
        assert!(matches!(fault.get(), Some(BodyFault::Broken(why)) if why.contains("reset")));
    }
}
