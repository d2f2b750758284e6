//! The last stage: the request, rewritten for the org's instance, sent over TLS.
//!
//! The destination is never taken from the request: scheme and authority always come from the
//! session's instance URL, and only the (route-rewritten) path and query travel on. Hop-by-hop
//! headers — `Connection` and what it names, the proxy's own `Proxy-*` headers among them — are
//! stripped both ways, as RFC 9110 §7.6.1 requires of a proxy: the request's by the session
//! layer (before it sets the session), the answer's here. Requests to an instance share one
//! HTTP/2 connection ([`h2`]); an instance that does not offer HTTP/2 is served by the pooled
//! client the token requests use.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderName, Request, Response, Uri, Version, header, uri::PathAndQuery};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tower::Service;

mod h2;
mod stream;

use self::h2::{Broken, Failure, H2Connections};

use crate::{
    body::ProxyBody,
    config::{InstanceUrl, ProxySettings},
    error::ProxyError,
    layer::route::RouteMatch,
    metrics,
};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the request goes: the route's path on the instance its session is valid for; set by
/// the session layer.
#[derive(Debug, Clone)]
pub struct Destination {
    pub target: RouteMatch,
    pub instance: InstanceUrl,
}

/// Reads the extra trust anchors of `proxy.ca_file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::config::read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE", path.display()));
    }
    Ok(certs)
}

/// TLS to Salesforce: webpki roots plus `ca_file`, TLS 1.2+.
pub fn tls_config(settings: &ProxySettings) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    Ok(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// The pooled https-only client, HTTP/1.1 and HTTP/2: token requests, and instances that do not
/// speak HTTP/2.
pub fn build_client(settings: &ProxySettings) -> Result<HttpClient, String> {
    Ok(pooled_client(tls_config(settings)?))
}

pub fn pooled_client(tls: ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// An error and its sources on one line: "client error (Connect): tcp connect error: refused".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// What went wrong with a connection, in words a caller may read: the failure's class without
/// the socket layer's addresses, ports and OS error texts (the log keeps those). `peer` names the
/// other side: "instance", "token endpoint".
pub fn failure_class(error: &(dyn std::error::Error + 'static), peer: &str) -> String {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(error) = next {
        // An `io::Error` hides the error it wraps from `source()`, and h2's the `io::Error` it
        // holds: look inside them too.
        let h2 = error.downcast_ref::<::h2::Error>();
        let io = error
            .downcast_ref::<std::io::Error>()
            .or_else(|| h2.and_then(::h2::Error::get_io));
        let tls = error
            .downcast_ref::<rustls::Error>()
            .or_else(|| io.and_then(|e| e.get_ref()?.downcast_ref::<rustls::Error>()));
        if let Some(tls) = tls {
            return match tls {
                rustls::Error::InvalidCertificate(_) => {
                    format!("the {peer}'s TLS certificate is not trusted")
                }
                _ => format!("the TLS handshake with the {peer} failed"),
            };
        }
        if let Some(io) = io {
            match io.kind() {
                ErrorKind::ConnectionRefused => return format!("connection refused by the {peer}"),
                ErrorKind::TimedOut => return "timed out".to_owned(),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return format!("the {peer} closed the connection"),
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    return format!("the {peer} is unreachable");
                }
                _ => {}
            }
        }
        if let Some(h2) = h2 {
            // The reason only: a GOAWAY's debug data is the peer's own text, of any length.
            if h2.is_go_away() || h2.is_reset() {
                let reason = h2
                    .reason()
                    .map_or_else(|| "no reason".to_owned(), |r| r.to_string());
                return format!("the {peer} ended the stream or connection ({reason})");
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return format!("the {peer} closed the connection");
            }
        }
        // hyper-util's connector names its resolver's failures so.
        if error.to_string().starts_with("dns error") {
            return "DNS lookup failed".to_owned();
        }
        next = error.source();
    }
    format!("the connection to the {peer} failed")
}

/// The hop-by-hop headers every message loses, besides those `Connection` names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

/// What sfproxy sets itself on the way to Salesforce: a `Connection` list never removes these
/// (the session layer replaces the caller's own anyway), so no caller can strip the session.
fn is_proxy_set(name: &HeaderName) -> bool {
    matches!(name.as_str(), "authorization" | "x-sfdc-session" | "host")
}

/// Removes hop-by-hop headers: `Connection`, every header it names (but the credentials and
/// `Host`: `is_proxy_set`), and the fixed list. `Expect` goes too: the proxy already answered
/// the caller's `100-continue` by reading the body, and forwards it whole. The session layer
/// strips the caller's request before it adds the session; upstream strips again, finding
/// nothing. Most messages carry none: one pass over the names finds that, without allocating.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    if found.is_empty() {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !is_proxy_set(name))
        .collect();
    for name in named.iter().chain(&found) {
        headers.remove(name);
    }
}

/// The URI sent to Salesforce: always the instance's origin; only path and query come from the
/// caller.
pub fn upstream_uri(instance: &InstanceUrl, path: PathAndQuery) -> Result<Uri, ProxyError> {
    // From parts, not `Uri::builder()`: its closures cost ~150 instructions per request.
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    parts.authority = Some(instance.0.clone());
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).map_err(|e| ProxyError::Internal(format!("upstream URI: {e}")))
}

#[derive(Clone)]
pub struct Upstream {
    /// Behind `Arc`s: the stack is cloned for every request.
    pooled: Arc<HttpClient>,
    h2: Arc<H2Connections>,
    timeout: Duration,
}

impl Upstream {
    /// `pooled`: the client for instances without HTTP/2 (shared with the token client);
    /// `tls`: its TLS settings, for the HTTP/2 connections.
    pub fn new(pooled: HttpClient, tls: &ClientConfig, timeout: Duration) -> Self {
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
        let RouteMatch { route, path } = target;
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
            let handles = org.metrics.get(&org.name);
            handles
                .upstream_duration
                .record(started.elapsed().as_secs_f64());
            let (mut parts, body) = response.into_parts();
            if let Some((used, limit)) = parts
                .headers
                .get("sforce-limit-info")
                .and_then(|v| v.to_str().ok())
                .and_then(metrics::parse_api_usage)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    const HOP_BY_HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    ];

    /// What a `Connection` list must never remove.
    const PROXY_SET: &[&str] = &["authorization", "x-sfdc-session", "host"];

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(HOP_BY_HOP).prop_map(str::to_owned),
            proptest::sample::select(PROXY_SET).prop_map(str::to_owned),
            proptest::sample::select(&["accept", "content-type", "x-custom"][..])
                .prop_map(str::to_owned),
            "[a-z][a-z0-9-]{0,12}",
        ]
    }

    proptest! {
        /// Whatever the caller sends, no hop-by-hop header and nothing `Connection` names
        /// survives but the credentials and `Host`, and every other header is kept as it was.
        #[test]
        fn rewriting_headers_strips_exactly_the_hop_by_hop_ones(
            headers in proptest::collection::vec((header_name(), "[ -~]{0,20}"), 0..12),
            named in proptest::collection::vec(header_name(), 0..4),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                    map.append(n, v);
                }
            }
            if !named.is_empty() {
                map.append(header::CONNECTION, HeaderValue::from_str(&named.join(", ")).unwrap());
            }
            let before = map.clone();
            // Every name any `Connection` header lists, the generated ones among `headers` too.
            let named: Vec<String> = before
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect();
            strip_hop_by_hop(&mut map);
            let named: Vec<String> =
                named.into_iter().filter(|n| !PROXY_SET.contains(&n.as_str())).collect();
            for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
                prop_assert!(!map.contains_key(name), "{name} survived");
            }
            for (name, value) in &before {
                let dropped = HOP_BY_HOP.contains(&name.as_str())
                    || named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()));
                if !dropped {
                    prop_assert!(map.get_all(name).iter().any(|v| v == value), "{name} lost");
                }
            }
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("accept", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn a_connection_list_cannot_remove_the_credentials_or_host() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Authorization, x-sfdc-session, HOST, x-other"),
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer 00D!x"));
        headers.insert("x-sfdc-session", HeaderValue::from_static("00D!x"));
        headers.insert("host", HeaderValue::from_static("acme.my.salesforce.com"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "host", "x-sfdc-session"]);
    }

    #[test]
    fn failures_are_told_by_class_without_the_socket_details() {
        use std::io::{Error, ErrorKind};
        let refused = Error::new(
            ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(
            failure_class(&refused, "instance"),
            "connection refused by the instance"
        );
        let untrusted = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            failure_class(&untrusted, "token endpoint"),
            "the token endpoint's TLS certificate is not trusted"
        );
        let timed_out = Error::new(ErrorKind::TimedOut, "10.0.0.1:443");
        assert_eq!(failure_class(&timed_out, "instance"), "timed out");
        let other = Error::other("something at 10.0.0.1:443");
        assert_eq!(
            failure_class(&other, "instance"),
            "the connection to the instance failed"
        );
    }
}
