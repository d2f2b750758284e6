//! The admin port: `/healthz`, `/readyz` and `/metrics`, on a listener of its own.
//!
//! It is a separate port, not a route, so no caller of the proxy port can reach it and no
//! route can shadow it; it serves no Salesforce data, only state.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    body::{self, ProxyBody},
    server::connection::{ConnectionLimits, Serving, serve_connection},
};

/// Histograms are folded into their buckets this often, scrape or not. Until then they keep
/// every sample (two per request): at 20,000 requests/s, 5 s of samples held about 2 MB.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// An admin request is a line and a few headers; scrapers that take longer are gone.
const LIMITS: ConnectionLimits = ConnectionLimits {
    max_header_bytes: 16 * 1024,
    header_timeout: Duration::from_secs(10),
};

/// What `/readyz` asks: `Err` says why the proxy should not get traffic yet.
pub(crate) trait Readiness: Send + Sync + 'static {
    fn readiness(&self) -> impl Future<Output = Result<(), String>> + Send;
}

pub(crate) async fn serve<R: Readiness>(
    listener: TcpListener,
    ready: Arc<R>,
    prometheus: Option<PrometheusHandle>,
) {
    if let Some(handle) = prometheus.clone() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                handle.run_upkeep();
            }
        });
    }
    // The admin port is not drained: it answers (`/readyz`: not ready) until the process exits.
    // The sender lives as long as this loop: dropped, every connection would read it as a drain.
    let (_undrained, draining) = watch::channel(false);
    let serving = Serving::new(&LIMITS, draining);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ready = ready.clone();
        let prometheus = prometheus.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let ready = ready.clone();
            let prometheus = prometheus.clone();
            async move {
                let answer = answer(&*ready, prometheus.as_ref(), &request).await;
                Ok::<_, Infallible>(answer)
            }
        });
        let mut serving = serving.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &mut serving, service).await;
        });
    }
}

async fn answer<B>(
    ready: &impl Readiness,
    prometheus: Option<&PrometheusHandle>,
    request: &Request<B>,
) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "GET only"}));
    }
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
        "/readyz" => match ready.readiness().await {
            Ok(()) => json_response(StatusCode::OK, json!({"ready": true})),
            Err(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": reason}),
            ),
        },
        "/metrics" => match prometheus {
            Some(handle) => {
                let mut response = Response::new(body::full(handle.render()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            None => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "no metrics recorder in this process"}),
            ),
        },
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics"]}),
        ),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
