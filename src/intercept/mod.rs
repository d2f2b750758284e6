//! Callers that keep their `https://` Salesforce URLs: `CONNECT host:443`, answered by
//! terminating the TLS in the tunnel with a certificate from the interception CA, so every
//! request inside goes through the same stack as an absolute-form `https://host/...` request.
//!
//! The CONNECT itself is identified and routed like any request (`layer::identify`,
//! `layer::route`): only a host some route serves for this caller gets a tunnel, and nothing is
//! dialled for it — the requests inside go to the org's instance like any other. sfproxy never
//! opens a blind tunnel.

pub mod ca;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Uri};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use moka::future::Cache;
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tower::ServiceExt;

use crate::{
    body,
    intercept::ca::{InterceptCa, LEAF_LIFETIME, LEAF_RENEW_BEFORE},
    layer::identify::{Caller, ClientAddr},
    stack::ProxyService,
};

/// Hosts with a leaf in memory; a leaf for every routed host fits many times over.
const MAX_LEAVES: u64 = 10_000;
/// How long a caller may take to finish the TLS handshake inside its tunnel.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The interception CA and the leaves it issued, one per host, made on first use.
pub struct Intercept {
    ca: Arc<InterceptCa>,
    leaves: Cache<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Intercept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercept").field("ca", &self.ca).finish()
    }
}

impl Intercept {
    pub fn new(ca: Arc<InterceptCa>) -> Self {
        Self {
            ca,
            // Renewed a day before it expires: a leaf is dropped from the cache by then.
            leaves: Cache::builder()
                .max_capacity(MAX_LEAVES)
                .time_to_live(LEAF_LIFETIME - LEAF_RENEW_BEFORE)
                .build(),
        }
    }

    /// The leaf for `host`; concurrent first tunnels to a host share one issuance.
    async fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, Arc<String>> {
        self.leaves
            .try_get_with(host.to_owned(), async { self.ca.leaf(host) })
            .await
    }
}

/// An accepted CONNECT, as the route layer grants it: the server then opens the tunnel.
#[derive(Clone, Debug)]
pub struct TunnelGrant {
    pub host: String,
    pub caller: Caller,
    pub intercept: Arc<Intercept>,
}

/// Set on every request that arrives inside a tunnel: the caller identified on the CONNECT, and
/// the host the tunnel is for (which decides the route, whatever `Host` the request carries).
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub host: String,
    pub caller: Caller,
}

/// Always the one leaf: the tunnel is for one host, whatever SNI the caller sends.
#[derive(Debug)]
struct OneLeaf(Arc<CertifiedKey>);

impl ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Serves the tunnel a granted CONNECT opened: TLS with the host's leaf, then HTTP/1.1 or
/// HTTP/2 (by ALPN), each request through the stack `current()` returns.
pub async fn serve_tunnel(
    upgrade: OnUpgrade,
    grant: TunnelGrant,
    peer: SocketAddr,
    current: impl Fn() -> ProxyService + Clone + Send + Sync + 'static,
) {
    let host = grant.host.clone();
    let leaf = match grant.intercept.leaf(&host).await {
        Ok(leaf) => leaf,
        Err(error) => {
            tracing::error!(%host, %error, "cannot issue a certificate for the tunnel");
            return;
        }
    };
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%peer, %host, %error, "the tunnel closed before it opened");
            return;
        }
    };
    let mut tls = match ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneLeaf(leaf))),
        Err(error) => {
            tracing::error!(%error, "TLS setup for the tunnel");
            return;
        }
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let accepted =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(TokioIo::new(upgraded))).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        // The caller's side: typically it does not trust the sfproxy CA. Not a server error.
        Ok(Err(error)) => {
            tracing::warn!(
                %peer, %host, %error,
                "the caller did not complete TLS in the tunnel; does it trust the sfproxy CA?"
            );
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, %host, "the caller did not finish TLS in the tunnel in time");
            return;
        }
    };
    tracing::debug!(%peer, %host, "tunnel open");
    let tunnel = Tunnel {
        host: host.clone(),
        caller: grant.caller,
    };
    let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        request.extensions_mut().insert(tunnel.clone());
        // As if sent in absolute form to https://host/...: same routing, same log line.
        if let Ok(uri) = absolute(&tunnel.host, request.uri()) {
            *request.uri_mut() = uri;
        }
        current().oneshot(request.map(body::boxed))
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), per_request)
        .await
    {
        tracing::debug!(%peer, %host, %error, "tunnel connection ended with an error");
    }
}

/// `https://{host}{path and query}`.
fn absolute(host: &str, uri: &Uri) -> Result<Uri, http::Error> {
    let path = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    Uri::builder()
        .scheme("https")
        .authority(host)
        .path_and_query(path)
        .build()
}
