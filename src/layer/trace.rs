//! Outermost layer: the request id, a span, and the one log line and metrics per request.
//!
//! Inner layers write what they learn — the client, the route with its org and user, where the
//! session came from — into the request's [`Notes`]; the line written here when the answer leaves
//! says all of it, and the request metrics are labelled from it. A request dropped before its
//! answer (the caller left, or the shutdown grace ran out) is still logged and counted, with
//! status 499. The path is logged without its query string: SOQL in `?q=` can carry personal data.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{
    body::{BodyError, ProxyBody},
    context::Notes,
    metrics,
};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Callers' ids longer than this are replaced, not echoed.
const MAX_REQUEST_ID: usize = 128;

/// The request's log line and metrics, written once: when the answer's head is ready, or with
/// status 499 if the request is dropped before that.
struct RequestLine {
    notes: Arc<Notes>,
    method: http::Method,
    path: String,
    start: Instant,
    written: bool,
}

impl RequestLine {
    fn write(&mut self, status: u16) {
        self.written = true;
        let elapsed = self.start.elapsed();
        let chosen = self.notes.route();
        let (route, org, user) = match chosen {
            Some(r) => (&*r.name, r.org.name.as_str(), r.user.as_str()),
            None => (metrics::NO_ROUTE, "", ""),
        };
        let session = self.notes.session().unwrap_or("");
        tracing::info!(
            client = self.notes.client().map_or("", |c| &**c),
            route,
            org,
            user,
            method = %self.method,
            path = self.path,
            status,
            // Microsecond precision: the text log writes it without float formatting.
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            session,
            "request"
        );
        match self.notes.route_metrics() {
            Some(handles) => handles.route.record(status, elapsed.as_secs_f64()),
            None => {
                metrics::requests(metrics::NO_ROUTE, status).increment(1);
                ::metrics::histogram!(metrics::REQUEST_DURATION, "route" => metrics::NO_ROUTE)
                    .record(elapsed.as_secs_f64());
            }
        }
    }
}

impl Drop for RequestLine {
    fn drop(&mut self) {
        if !self.written {
            self.write(crate::error::CLIENT_CLOSED_REQUEST);
        }
    }
}

/// Counts a request in `sfproxy_requests_in_flight` for as long as it lives.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        metrics::requests_in_flight().increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::requests_in_flight().decrement(1.0);
    }
}

/// A response body that holds its request's [`InFlight`] until it is done or dropped.
struct Guarded {
    inner: ProxyBody,
    _in_flight: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Clone, Default)]
pub(crate) struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

#[derive(Clone)]
pub(crate) struct Trace<S> {
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
            let mut text = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
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

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        let id = request_id(&request);
        let span = tracing::info_span!("request", id = id.to_str().unwrap_or("-"));
        let method = request.method().clone();
        // A CONNECT has no path: its target is the authority it asks a tunnel to.
        // User information is never logged: it may hold a password.
        let path = match request.uri().authority() {
            Some(authority) if request.method() == http::Method::CONNECT => authority
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => request.uri().path().to_owned(),
        };
        let notes = Arc::new(Notes::default());
        request.extensions_mut().insert(notes.clone());
        let start = Instant::now();
        let in_flight = InFlight::new();
        let mut line = RequestLine {
            notes,
            method,
            path,
            start,
            written: false,
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let Ok(mut response) = future.await;
                line.write(response.status().as_u16());
                response.headers_mut().insert(X_REQUEST_ID.clone(), id);
                // The request stays in flight until its answer is sent or the caller goes away.
                Ok(response.map(|body| {
                    Guarded {
                        inner: body,
                        _in_flight: in_flight,
                    }
                    .boxed_unsync()
                }))
            }
            .instrument(span),
        )
    }
}
