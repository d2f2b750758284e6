//! Size limits, checked before anything else is done for the request, and the one watch on the
//! request body.
//!
//! The header section must fit `max_header_bytes` (431), and the body `max_body` (413): a
//! declared `Content-Length` over the limit is refused at once; a body that streams past it
//! (chunked) is cut where it crosses the limit, and the request fails with the same 413 instead
//! of an upstream error. A body that breaks off (the caller left mid-upload) makes the request
//! fail as `PROXY_CALLER_GONE` (499), not as the upstream error it causes further down. Slow and
//! oversized header sections hyper itself refuses earlier, in `server.rs`.
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
use http::{Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::{
    body::{BodyError, ProxyBody},
    error::ProxyError,
    framing::FramingDoubt,
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
        if let Err(error) = check_head(&request) {
            return Either::Right(Box::pin(std::future::ready(Err(error))));
        }
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

/// The method and the headers that say who and where: see the module doc.
fn check_head<B>(request: &Request<B>) -> Result<(), ProxyError> {
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
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() {
            return Err(ProxyError::BadRequest(
                "two Host headers: send exactly one (RFC 9112 section 3.2)".into(),
            ));
        }
        check_host(host.as_bytes())
            .map_err(|why| ProxyError::BadRequest(format!("malformed Host header: {why}")))?;
    }
    if headers
        .get_all(header::PROXY_AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(ProxyError::BadRequest(
            "two Proxy-Authorization headers: send one".into(),
        ));
    }
    Ok(())
}

/// A `Host` value (or a target's authority) whose port, if any, is a number up to 65535 and
/// whose name does not end in a dot: `acme.my.salesforce.com.` names the same host under another
/// spelling, which only invites a mismatch between what routes see and what is logged.
pub fn check_host(value: &[u8]) -> Result<(), &'static str> {
    // The port follows the last ':' outside an IPv6 literal's brackets.
    let name_end = match value.iter().rposition(|&b| b == b':' || b == b']') {
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
    };
    if value[..name_end].ends_with(b".") {
        return Err("the host name ends with a dot; send it without");
    }
    Ok(())
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

    #[test]
    fn only_the_apis_methods_are_forwarded() {
        let head = |method: &str, uri: &str| {
            let request = Request::builder().method(method).uri(uri).body(()).unwrap();
            check_head(&request).map_err(|e| e.code())
        };
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert_eq!(head(method, "/services/data"), Ok(()), "{method}");
        }
        // An authority asks for a tunnel; the route layer judges its form and port.
        assert_eq!(head("CONNECT", "acme.my.salesforce.com:443"), Ok(()));
        assert_eq!(head("CONNECT", "http://acme.my.salesforce.com/"), Ok(()));
        for (method, uri) in [
            ("TRACE", "/services/data"),
            ("TRACE", "http://acme.my.salesforce.com/"),
            ("CONNECT", "/services/data"),
            ("PROPFIND", "/"),
            ("get", "/"),
        ] {
            assert_eq!(
                head(method, uri),
                Err("PROXY_METHOD_NOT_ALLOWED"),
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn hosts_and_credentials_must_be_single_and_well_formed() {
        let head = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri("/services/data");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            check_head(&builder.body(()).unwrap()).map_err(|e| e.to_string())
        };
        for good in [
            "acme.my.salesforce.com",
            "acme.my.salesforce.com:8080",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:3128",
        ] {
            assert_eq!(head(&[("host", good)]), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("acme.my.salesforce.com:", "port"),
            ("acme.my.salesforce.com:http", "port"),
            ("acme.my.salesforce.com:65536", "port"),
            ("acme.my.salesforce.com:123456", "port"),
            ("[::1]:", "port"),
            ("acme.my.salesforce.com.", "dot"),
            ("acme.my.salesforce.com.:443", "dot"),
        ] {
            let err = head(&[("host", bad)]).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = head(&[("host", "a.example"), ("host", "a.example")]).unwrap_err();
        assert!(err.contains("two Host headers"), "{err}");
        let err = head(&[
            ("proxy-authorization", "Basic ZXJwOnM="),
            ("proxy-authorization", "Basic d21zOnM="),
        ])
        .unwrap_err();
        assert!(err.contains("two Proxy-Authorization"), "{err}");
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
