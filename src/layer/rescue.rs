//! Where errors become answers: the one edge at which a [`ProxyError`] turns into a response.
//!
//! Everything inside returns typed errors; this layer logs each refusal once, with its code, and
//! answers with the status and Salesforce-shaped body of `error.rs`: JSON in the REST shape, or a
//! SOAP fault to a request on a SOAP path (a toolkit reads nothing else). A panic below is caught and
//! answered 500 `PROXY_INTERNAL` rather than dropping the caller's connection without a word.
//! What is refused before a request is read (a connection over the limit, a tunnel that speaks
//! the wrong protocol) gets the same answer written raw: [`raw_answer`].

use std::{
    convert::Infallible,
    panic::AssertUnwindSafe,
    task::{Context, Poll},
};

use futures_util::{
    FutureExt,
    future::{CatchUnwind, Map},
};
use http::{Request, Response};
use tower::{Layer, Service};

use crate::{
    body::ProxyBody, context::Answer, error::ProxyError, salesforce::soap::api::SOAP_PREFIX,
};

#[derive(Clone, Default)]
pub(crate) struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

#[derive(Clone)]
pub(crate) struct Rescue<S> {
    inner: S,
}

/// What the inner service ended with: its answer, its error, or a panic.
type Outcome = std::thread::Result<Result<Response<ProxyBody>, ProxyError>>;

impl<S> Service<Request<ProxyBody>> for Rescue<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    /// Named, not boxed: every request passes here.
    type Future = Map<
        CatchUnwind<AssertUnwindSafe<S::Future>>,
        fn(Outcome) -> Result<Response<ProxyBody>, Infallible>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let answer = if is_soap_call(&request) {
            answer_soap as fn(Outcome) -> _
        } else {
            answer_json
        };
        AssertUnwindSafe(self.inner.call(request))
            .catch_unwind()
            .map(answer)
    }
}

/// A `POST` with [`SOAP_PREFIX`] in its path: a SOAP toolkit's call, in any form (forward,
/// gateway with a prefix, inside a tunnel), told before the route is known, so that a refusal
/// before routing is a fault too.
fn is_soap_call(request: &Request<ProxyBody>) -> bool {
    request.method() == http::Method::POST && request.uri().path().contains(SOAP_PREFIX)
}

fn answer_json(outcome: Outcome) -> Result<Response<ProxyBody>, Infallible> {
    Ok(match failure(outcome) {
        Ok(response) => response,
        Err(error) => {
            log(&error, error.status());
            error.into_response()
        }
    })
}

fn answer_soap(outcome: Outcome) -> Result<Response<ProxyBody>, Infallible> {
    Ok(match failure(outcome) {
        Ok(response) => response,
        Err(error) => {
            log(&error, error.soap_status());
            error.into_soap_response()
        }
    })
}

/// The answer, or the error it failed with (a panic included).
fn failure(outcome: Outcome) -> Answer {
    match outcome {
        Ok(answer) => answer,
        Err(_) => Err(ProxyError::Internal("a request handler panicked".into())),
    }
}

/// A refusal, logged once with its code and the status sent, and counted.
fn log(error: &ProxyError, sent: http::StatusCode) {
    metrics::counter!(crate::metrics::REFUSALS, "code" => error.code()).increment(1);
    let (code, status) = (error.code(), sent.as_u16());
    if error.status().is_server_error() {
        tracing::warn!(code, status, error = %error, "refused");
    } else {
        tracing::info!(code, status, error = %error, "refused");
    }
}

/// `error` as a whole HTTP/1.1 answer written on a raw connection, before (or instead of) any
/// request is read, with `connection: close`; counted as a refusal.
pub(crate) fn raw_answer(error: &ProxyError) -> Vec<u8> {
    metrics::counter!(crate::metrics::REFUSALS, "code" => error.code()).increment(1);
    let body = error.to_json();
    let retry = if error.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {retry}connection: close\r\n\r\n{body}",
        error.status().as_u16(),
        error.status().canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}
