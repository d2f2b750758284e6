//! The admin port: `/healthz`, `/readyz` and `/metrics`, on a listener of its own.
//!
//! It is a separate port, not a route, so no caller of the proxy port can reach it and no
//! route can shadow it; it serves no Salesforce data, only state.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;

/// Histograms are folded into their buckets this often, scrape or not. Until then they keep
/// every sample (two per request): at 20,000 requests/s, 5 s of samples held about 2 MB.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn serve(listener: TcpListener, app: Arc<App>, prometheus: Option<PrometheusHandle>) {
    if let Some(handle) = prometheus.clone() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                handle.run_upkeep();
            }
        });
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        let prometheus = prometheus.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let prometheus = prometheus.clone();
            async move {
                Ok::<_, std::convert::Infallible>(answer(&app, prometheus.as_ref(), &request).await)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer<B>(
    app: &App,
    prometheus: Option<&PrometheusHandle>,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "GET only"}));
    }
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
        "/readyz" => match app.readiness().await {
            Ok(()) => json_response(StatusCode::OK, json!({"ready": true})),
            Err(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": reason}),
            ),
        },
        "/metrics" => match prometheus {
            Some(handle) => {
                let mut response = Response::new(Full::new(Bytes::from(handle.render())));
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

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
