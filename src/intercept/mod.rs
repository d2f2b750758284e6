//! The interception CA at work: a certificate for each host a tunnel is opened to, issued on
//! first use and kept, and the TLS of a tunnel terminated with it.
//!
//! Callers that keep their `https://` Salesforce URLs send `CONNECT host:443`; the server
//! (`server::tunnel`) opens the tunnel and hands its bytes here when they start with a TLS
//! handshake. sfproxy never opens a blind tunnel: what is decrypted is served as requests, through
//! the same stack as the proxy port.

pub mod ca;

use std::{net::SocketAddr, sync::Arc};

use moka::future::Cache;
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::intercept::ca::{InterceptCa, LEAF_LIFETIME, LEAF_RENEW_BEFORE};

/// Hosts with a leaf in memory; a leaf for every routed host fits many times over.
const MAX_LEAVES: u64 = 10_000;

/// The interception CA and the leaves it issued, one per host, made on first use.
pub(crate) struct Intercept {
    ca: Arc<InterceptCa>,
    leaves: Cache<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Intercept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercept").field("ca", &self.ca).finish()
    }
}

impl Intercept {
    pub(crate) fn new(ca: Arc<InterceptCa>) -> Self {
        Self {
            ca,
            // Renewed a day before it expires: a leaf is dropped from the cache by then.
            leaves: Cache::builder()
                .max_capacity(MAX_LEAVES)
                .time_to_live(LEAF_LIFETIME - LEAF_RENEW_BEFORE)
                .build(),
        }
    }

    /// The CA the leaves are issued by.
    pub(crate) fn ca(&self) -> &InterceptCa {
        &self.ca
    }

    /// The leaf for `host`; concurrent first tunnels to a host share one issuance.
    async fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, Arc<String>> {
        self.leaves
            .try_get_with(host.to_owned(), async { self.ca.leaf(host) })
            .await
    }

    /// The TLS of the tunnel, terminated with the host's leaf by `deadline`; `None` (logged) when
    /// the caller does not complete it.
    pub(crate) async fn accept<I>(
        &self,
        io: I,
        host: &str,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> Option<tokio_rustls::server::TlsStream<I>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let leaf = match self.leaf(host).await {
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
}

/// Always the one leaf: the tunnel is for one host, whatever SNI the caller sends.
#[derive(Debug)]
struct OneLeaf(Arc<CertifiedKey>);

impl ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
