//! Where errors become answers: the one edge at which a [`ProxyError`] turns into a response.
//!
//! Everything inside returns typed errors; this layer logs each refusal once, with its code, and
//! answers with the status and Salesforce-shaped body of `error.rs`. A panic below is caught and
//! answered 500 `PROXY_INTERNAL` rather than dropping the caller's connection without a word.

use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::{body::ProxyBody, error::ProxyError};

#[derive(Clone, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;
    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

#[derive(Clone)]
pub struct Rescue<S> {
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for Rescue<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            // A layer that cannot take requests is answered per request, in `call`.
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let future = AssertUnwindSafe(self.inner.call(request)).catch_unwind();
        Box::pin(async move {
            let error = match future.await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) => error,
                Err(_) => ProxyError::Internal("a request handler panicked".into()),
            };
            let status = error.status();
            metrics::counter!(crate::metrics::REFUSALS, "code" => error.code()).increment(1);
            if status.is_server_error() {
                tracing::warn!(code = error.code(), status = status.as_u16(), error = %error, "refused");
            } else {
                tracing::info!(code = error.code(), status = status.as_u16(), error = %error, "refused");
            }
            Ok(error.into_response())
        })
    }
}
