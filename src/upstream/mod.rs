//! The last stage: the request, rewritten for the org's instance, sent over TLS.
//!
//! The destination is never taken from the request: scheme and authority always come from the
//! session's instance URL, and only the (route-rewritten) path and query travel on. Hop-by-hop
//! headers — `Connection` and what it names, the proxy's own `Proxy-*` headers among them — are
//! stripped both ways, as RFC 9110 §7.6.1 requires of a proxy: the request's by the session
//! layer (before it sets the session), the answer's here. Requests to an instance share one
//! HTTP/2 connection ([`h2`]); an instance that does not offer HTTP/2 is served by the pooled
//! client the token requests use.

pub(crate) mod client;
pub(crate) mod failure;
mod h2;
pub(crate) mod hop;
mod stream;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, Uri, Version, header, uri::PathAndQuery};
use rustls::ClientConfig;
use tower::Service;

use crate::{
    body::ProxyBody,
    config::InstanceUrl,
    context::{Destination, RouteMatch},
    error::ProxyError,
    salesforce::limit_info,
    upstream::{
        client::{CONNECT_TIMEOUT, HttpClient},
        h2::{Broken, Failure, H2Connections},
        hop::{is_hop_by_hop, strip_hop_by_hop},
    },
};

/// The URI sent to Salesforce: always the instance's origin; only path and query come from the
/// caller.
pub(crate) fn upstream_uri(instance: &InstanceUrl, path: PathAndQuery) -> Result<Uri, ProxyError> {
    // From parts, not `Uri::builder()`: its closures cost ~150 instructions per request.
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    parts.authority = Some(instance.0.clone());
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).map_err(|e| ProxyError::Internal(format!("upstream URI: {e}")))
}

#[derive(Clone)]
pub(crate) struct Upstream {
    /// Behind `Arc`s: the stack is cloned for every request.
    pooled: Arc<HttpClient>,
    h2: Arc<H2Connections>,
    timeout: Duration,
}

impl Upstream {
    /// `pooled`: the client for instances without HTTP/2 (shared with the token client);
    /// `tls`: its TLS settings, for the HTTP/2 connections.
    pub(crate) fn new(pooled: HttpClient, tls: &ClientConfig, timeout: Duration) -> Self {
        Self {
            pooled: Arc::new(pooled),
            h2: Arc::new(H2Connections::new(tls, CONNECT_TIMEOUT)),
            timeout,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<Request<ProxyBody>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = BoxFuture<Result<Self::Response, ProxyError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        let Some(Destination { target, instance }) = request.extensions_mut().remove() else {
            return Box::pin(std::future::ready(Err(ProxyError::Internal(
                "upstream reached without a route and a session".into(),
            ))));
        };
        let RouteMatch {
            route,
            metrics,
            path,
        } = target;
        match upstream_uri(&instance, path) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        }
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        // The caller's hop-by-hop headers went in the session layer, before the session was
        // set (a `Connection` naming `authorization` must not reach it); nothing sfproxy adds
        // is one, so there is nothing left to strip here.
        debug_assert!(!headers.keys().any(is_hop_by_hop));
        // The instance's host goes in the URI: hyper-util writes it as `Host` for HTTP/1.1
        // and as `:authority` for HTTP/2, where a second, `Host` header is refused.
        headers.remove(header::HOST);
        let (timeout, pooled, h2) = (self.timeout, self.pooled.clone(), self.h2.clone());
        let started = std::time::Instant::now();
        Box::pin(async move {
            let org = &route.org;
            let sent = h2.send(&pooled, &instance, request);
            let response = match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(response)) => response,
                Ok(Err(failure)) => {
                    let (org, instance) = (org.name.clone(), instance.to_string());
                    return Err(match failure {
                        Failure::Connect(why) => unreachable(org, instance, "cannot connect", why),
                        Failure::NoAnswer(why) => unreachable(org, instance, "no answer", why),
                        Failure::Refused(reason) => ProxyError::UpstreamRefused {
                            org,
                            instance,
                            reason,
                        },
                        Failure::HeadersTooLarge { size, limit } => {
                            ProxyError::InstanceHeadersTooLarge {
                                org,
                                instance,
                                size,
                                limit,
                            }
                        }
                    });
                }
                Err(_) => {
                    return Err(ProxyError::UpstreamTimeout {
                        org: org.name.clone(),
                        instance: instance.to_string(),
                        after: timeout,
                    });
                }
            };
            let handles = metrics.org.get();
            handles
                .upstream_duration
                .record(started.elapsed().as_secs_f64());
            let (mut parts, body) = response.into_parts();
            if let Some((used, limit)) = parts
                .headers
                .get(&limit_info::HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(limit_info::api_usage)
            {
                handles.api_usage.set(used as f64);
                handles.api_limit.set(limit as f64);
            }
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// A 502 whose body names the failure's class; the log line keeps the socket's details.
fn unreachable(org: String, instance: String, what: &str, why: Broken) -> ProxyError {
    tracing::warn!(%instance, detail = why.detail.as_str(), "{what}: {}", why.reason);
    ProxyError::UpstreamUnreachable {
        org,
        instance,
        reason: format!("{what}: {}", why.reason),
    }
}
