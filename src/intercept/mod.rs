//! Tunnels: callers that keep their `https://` Salesforce URLs send `CONNECT host:443`, answered
//! by terminating the TLS in the tunnel with a certificate from the interception CA; callers
//! whose proxy agent tunnels `http://` URLs too (Node's `https-proxy-agent`, curl `-p`) send
//! `CONNECT host:80` and speak plain HTTP inside. Either way every request inside goes through
//! the same stack as an absolute-form `https://host/...` (or `http://host/...`) request.
//!
//! The CONNECT itself is identified and routed like any request (`layer::identify`,
//! `layer::route`): only a host some route serves for this caller gets a tunnel, and nothing is
//! dialled for it — the requests inside go to the org's instance like any other. sfproxy never
//! opens a blind tunnel. The inside of a tunnel is served by `server::serve_connection`, as the
//! proxy port is, on the task of the connection that asked for it.

pub mod ca;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http::{Request, Response, Uri};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use moka::future::Cache;
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::io::AsyncWriteExt;
use tower::{Service, ServiceExt};

use crate::{
    body::{self, ProxyBody},
    error::ProxyError,
    intercept::ca::{InterceptCa, LEAF_LIFETIME, LEAF_RENEW_BEFORE},
    layer::identify::{Caller, ClientAddr},
    server::{self, Peek, Rewind, Serving},
};

/// Hosts with a leaf in memory; a leaf for every routed host fits many times over.
const MAX_LEAVES: u64 = 10_000;

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
    pub inside: Inside,
}

/// What a tunnel carries, by the port it was asked for.
#[derive(Clone, Debug)]
pub enum Inside {
    /// Port 443: TLS, terminated with a leaf of the interception CA.
    Tls(Arc<Intercept>),
    /// Port 80: plain HTTP.
    Plain,
}

impl Inside {
    fn port(&self) -> u16 {
        match self {
            Inside::Tls(_) => 443,
            Inside::Plain => 80,
        }
    }
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

/// Serves the tunnel a granted CONNECT opened, once its 200 is sent: TLS with the host's leaf on
/// port 443, plain HTTP on port 80, as the first bytes must confirm; then HTTP/1.1 or HTTP/2, each
/// request through the stack `current()` returns, with the limits and drain of `serving`.
pub async fn serve_tunnel<S>(
    upgrade: OnUpgrade,
    grant: TunnelGrant,
    peer: SocketAddr,
    serving: &mut Serving,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
) where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let TunnelGrant {
        host,
        caller,
        inside,
    } = grant;
    let port = inside.port();
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%peer, %host, %error, "the tunnel closed before it opened");
            return;
        }
    };
    let mut io = Rewind::new(TokioIo::new(upgraded));
    // One deadline for the first bytes and the TLS handshake: a caller cannot stretch the time
    // before its first request head by taking each step slowly.
    let deadline = tokio::time::Instant::now() + serving.header_timeout();
    let tls = match tokio::time::timeout_at(deadline, starts_with_tls(&mut io)).await {
        Ok(Ok(tls)) => tls,
        _ => {
            tracing::debug!(
                %peer, %host, port,
                "tunnel closed: nothing sent within header_timeout, or gone"
            );
            return;
        }
    };
    let tunnel = Tunnel {
        host: host.clone(),
        caller,
    };
    match (inside, tls) {
        (Inside::Tls(intercept), true) => {
            let Some(stream) = accept_tls(&intercept, io, &host, peer, deadline).await else {
                return;
            };
            tracing::debug!(%peer, %host, port, "tunnel open");
            let service = inside_tunnel("https", tunnel, peer, current);
            server::serve_connection(Rewind::new(stream), peer, serving, service).await;
        }
        (Inside::Plain, false) => {
            tracing::debug!(%peer, %host, port, "tunnel open");
            let service = inside_tunnel("http", tunnel, peer, current);
            server::serve_connection(io, peer, serving, service).await;
        }
        (Inside::Tls(_), false) => {
            let error = ProxyError::BadRequest(format!(
                "the tunnel to {host}:443 expected TLS, but the caller sent plain HTTP: send \
                 http:// URLs through the proxy without a tunnel, or CONNECT to {host}:80 for \
                 plain HTTP"
            ));
            tracing::warn!(
                %peer, %host, port, code = error.code(),
                "plain HTTP in a tunnel that expected TLS; answered 400"
            );
            let _ = io.write_all(&server::raw_answer(&error)).await;
            let _ = io.shutdown().await;
        }
        (Inside::Plain, true) => {
            tracing::warn!(
                %peer, %host, port,
                "TLS in a tunnel to port 80, which carries plain HTTP; closed (CONNECT to port 443 \
                 for https, with [proxy.intercept])"
            );
        }
    }
}

/// Whether the tunnel starts with a TLS handshake record (`0x16 0x03`): its first bytes decide.
async fn starts_with_tls(io: &mut impl Peek) -> std::io::Result<bool> {
    let mut start = [0u8; 2];
    let n = io.peek(&mut start, 1).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if start[0] != 0x16 {
        return Ok(false);
    }
    Ok(io.peek(&mut start, 2).await? == 2 && start[1] == 0x03)
}

/// The TLS of the tunnel, terminated with the host's leaf by `deadline`; `None` (logged) when
/// the caller does not complete it.
async fn accept_tls<I>(
    intercept: &Intercept,
    io: I,
    host: &str,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<tokio_rustls::server::TlsStream<I>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let leaf = match intercept.leaf(host).await {
        Ok(leaf) => leaf,
        Err(error) => {
            tracing::error!(%host, %error, "cannot issue a certificate for the tunnel");
            return None;
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
            return None;
        }
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        // The caller's side: typically it does not trust the sfproxy CA. Not a server error.
        Ok(Err(error)) => {
            tracing::warn!(
                %peer, %host, %error,
                "the caller did not complete TLS in the tunnel; does it trust the sfproxy CA?"
            );
            None
        }
        Err(_) => {
            tracing::warn!(%peer, %host, "the caller did not finish TLS in the tunnel in time");
            None
        }
    }
}

/// The requests inside a tunnel: each as if sent in absolute form to `scheme://host/...` (same
/// routing, same log line), from the caller identified on the CONNECT.
fn inside_tunnel<S>(
    scheme: &'static str,
    tunnel: Tunnel,
    peer: SocketAddr,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Send
+ 'static
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        request.extensions_mut().insert(tunnel.clone());
        if let Ok(uri) = absolute(scheme, &tunnel.host, request.uri()) {
            *request.uri_mut() = uri;
        }
        current().oneshot(request.map(body::boxed))
    })
}

/// `{scheme}://{host}{path and query}`.
fn absolute(scheme: &str, host: &str, uri: &Uri) -> Result<Uri, http::Error> {
    let path = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    Uri::builder()
        .scheme(scheme)
        .authority(host)
        .path_and_query(path)
        .build()
}
