//! The pooled HTTP client to Salesforce over TLS (webpki roots plus `proxy.ca_file`, TLS 1.2+):
//! token requests, and the instances that do not offer HTTP/2.

use std::{sync::Arc, time::Duration};

use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, RootCertStore};

use crate::{body::ProxyBody, config::ProxySettings};

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// TLS to Salesforce: webpki roots plus `ca_file`, TLS 1.2+.
pub(crate) fn tls_config(settings: &ProxySettings) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in settings.ca_certs.iter().cloned() {
        roots
            .add(cert)
            .map_err(|e| format!("proxy.ca_file: unusable certificate: {e}"))?;
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
pub(crate) fn build_client(settings: &ProxySettings) -> Result<HttpClient, String> {
    Ok(pooled_client(tls_config(settings)?))
}

pub(crate) fn pooled_client(tls: ClientConfig) -> HttpClient {
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
