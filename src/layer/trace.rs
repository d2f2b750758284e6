//! Outermost layer: a span per request, the request id, and the one log line per request.
//!
//! Inner layers record who called and which route, org, user and session served the request
//! into this span, so the line written here when the answer leaves says all of it. The path is
//! logged without its query string: SOQL in `?q=` can carry personal data.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};

use crate::body::ProxyBody;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Callers' ids longer than this are replaced, not echoed.
const MAX_REQUEST_ID: usize = 128;

#[derive(Clone, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
}

/// The caller's `x-request-id` when it is a short printable token, else a new UUID.
fn request_id(request: &Request<ProxyBody>) -> HeaderValue {
    request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4().to_string();
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-"))
        })
}

impl<S> Service<Request<ProxyBody>> for Trace<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let id = request_id(&request);
        let span = tracing::info_span!(
            "request",
            id = id.to_str().unwrap_or("-"),
            method = %request.method(),
            path = request.uri().path(),
            client = Empty,
            route = Empty,
            org = Empty,
            user = Empty,
            session = Empty,
        );
        let start = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let Ok(mut response) = future.await;
                tracing::info!(
                    status = response.status().as_u16(),
                    duration_ms = start.elapsed().as_secs_f64() * 1000.0,
                    "request"
                );
                response.headers_mut().insert(X_REQUEST_ID.clone(), id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
