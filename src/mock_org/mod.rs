//! A Salesforce stand-in: the OAuth 2.0 JWT bearer token endpoint plus enough of the REST,
//! Bulk 1.0, Apex REST and SOAP (Partner, Enterprise, Tooling, Metadata, Apex web services)
//! surface to exercise a proxy end to end.
//!
//! The proxy's hard parts are token minting, noticing expired sessions and streaming bodies;
//! none of them can be tested against a real org in CI. This module serves real TLS (h2 and
//! HTTP/1.1 via ALPN) on a local port, verifies JWT assertions the way Salesforce documents it,
//! answers with Salesforce's exact error shapes, and records what it saw, so tests and
//! `sfproxy demo` can assert on behaviour instead of mocks. Failures can be injected into the
//! token endpoint to test caching, back-off and timeouts.
//!
//! Legacy logins (a SOAP `login`, an OAuth password or client-credentials grant) are never
//! served: sfproxy must answer them itself, so each one that arrives is counted
//! ([`MockOrg::legacy_logins`]), logged as an error and refused.

mod rest;
mod soap;
mod state;
mod token;

use state::{Counted, HandlerError, Inner, MockResponse, State};
pub use state::{MockUser, SeenRequest, SeenSoapCall, TokenFailure};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::pki::KeyAndCert;

/// How the stand-in org is set up; see the field comments for what each one drives.
#[derive(Clone, Debug)]
pub struct MockOrgConfig {
    pub consumer_key: String,
    /// The connected app's uploaded certificate: JWT signatures are verified against its key.
    pub certificate_pem: String,
    pub users: Vec<MockUser>,
    /// The `aud` the org expects, e.g. "https://login.salesforce.com".
    pub audience: String,
    /// Server certificate chain and key, e.g. the server half of `pki::tls_ca_and_server`.
    pub tls: KeyAndCert,
    /// Usually 127.0.0.1:0.
    pub listen: SocketAddr,
}

/// A running stand-in org. Dropping it (or awaiting `shutdown`) stops the server.
pub struct MockOrg {
    state: Arc<State>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl MockOrg {
    /// Binds `config.listen` and serves until dropped. Fails on a bad TLS key/certificate or an
    /// uploaded certificate that does not hold an RSA key.
    pub async fn start(config: MockOrgConfig) -> std::io::Result<MockOrg> {
        let decoding_key =
            jsonwebtoken::DecodingKey::from_rsa_pem(config.certificate_pem.as_bytes())
                .map_err(|e| invalid_input(format!("connected app certificate: {e}")))?;
        let tls = tls_config(&config.tls)?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let url = format!("https://localhost:{}", addr.port());
        let mut hmac_secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut hmac_secret)
            .map_err(|_| std::io::Error::other("system random number generator failed"))?;
        let state = Arc::new(State {
            consumer_key: config.consumer_key,
            audience: config.audience,
            users: config.users,
            decoding_key,
            url,
            hmac_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &hmac_secret),
            inner: Mutex::new(Inner::default()),
        });
        let mut http1 = tls.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptors = Acceptors {
            both: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            http1: tokio_rustls::TlsAcceptor::from(Arc::new(http1)),
        };
        let server = tokio::spawn(accept_loop(listener, acceptors, Arc::clone(&state)));
        tracing::info!(%addr, "mock Salesforce org listening");
        Ok(MockOrg {
            state,
            addr,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "https://localhost:{port}" (the certificate covers localhost and 127.0.0.1).
    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    /// Every POST to /services/oauth2/token, successful or not.
    pub fn token_requests(&self) -> usize {
        self.state.inner().token_requests
    }

    /// Every session issued so far becomes invalid.
    pub fn expire_sessions(&self) {
        self.state.inner().sessions.clear();
    }

    /// The next `n` token requests answer `failure` (queued after failures already pending).
    pub fn fail_next_token_requests(&self, n: usize, failure: TokenFailure) {
        let mut inner = self.state.inner();
        inner.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Freezes (or unfreezes) a user: its logins get invalid_grant "inactive user", as
    /// Salesforce answers for a frozen or deactivated user.
    pub fn set_user_frozen(&self, username: &str, frozen: bool) {
        let mut inner = self.state.inner();
        if frozen {
            inner.frozen.insert(username.to_owned());
        } else {
            inner.frozen.remove(username);
        }
    }

    /// Answers every REST request as if its session were dead (401 `INVALID_SESSION_ID`; Bulk
    /// 1.0: 400 `InvalidSessionId`; SOAP: the 500 `sf:INVALID_SESSION_ID` fault), fresh ones
    /// included: a Salesforce that accepts no session.
    pub fn set_refuse_sessions(&self, refuse: bool) {
        self.state.inner().refuse_sessions = refuse;
    }

    /// Overrides the instance_url in token responses (default: `self.url()`).
    pub fn set_instance_url(&self, url: Option<String>) {
        self.state.inner().instance_url = url;
    }

    /// Every API request seen (REST, Bulk 1.0, SOAP; not token requests), in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.inner().requests.clone()
    }

    pub fn live_sessions(&self) -> usize {
        self.state.inner().sessions.len()
    }

    /// The sessions valid now (access tokens, sorted), to compare with what calls carried.
    pub fn live_session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.inner().sessions.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every call to a SOAP endpoint, in order, whatever it was answered.
    pub fn soap_calls(&self) -> Vec<SeenSoapCall> {
        self.state.inner().soap_calls.clone()
    }

    /// SOAP `logout` / `invalidateSessions` calls that reached the org: a proxy must never let
    /// one through (each is also logged as an error and faulted; the session is not ended).
    pub fn soap_session_enders(&self) -> usize {
        self.state.inner().soap_session_enders
    }

    /// Legacy logins that reached the org: SOAP `login` calls (Partner, Enterprise, Tooling) and
    /// `/services/oauth2/token` requests with a `password` or `client_credentials` grant.
    /// sfproxy must never forward one: each is logged as an error and refused (the SOAP fault
    /// `sf:PROXY_TEST_FAILURE`; OAuth 400 `invalid_grant`), and no session is issued. Token
    /// requests among them are also counted by [`MockOrg::token_requests`].
    pub fn legacy_logins(&self) -> usize {
        self.state.inner().legacy_logins.len()
    }

    /// What each legacy login was, in order: `soap:partner`, `soap:enterprise`, `soap:tooling`,
    /// `oauth:password` or `oauth:client_credentials`.
    pub fn legacy_login_kinds(&self) -> Vec<String> {
        self.state.inner().legacy_logins.clone()
    }

    /// Every access token the org minted, in order, expired ones included: the sessions a
    /// caller's requests may legitimately carry (compare with [`SeenRequest::session`]).
    pub fn issued_sessions(&self) -> Vec<String> {
        self.state.inner().issued_sessions.clone()
    }

    /// A record created over REST (`POST /services/data/vXX.X/sobjects/{Object}`) as the org
    /// holds it now: `{"Id", fields...}`; None once deleted or for an id it never created.
    pub fn rest_record(&self, id: &str) -> Option<serde_json::Value> {
        self.state
            .inner()
            .rest_records
            .get(id)
            .map(|r| serde_json::Value::Object(r.fields.clone()))
    }

    /// `/services/oauth2/revoke` requests that reached the org: a proxy must never let one
    /// through (each is logged as an error and answered 500; nothing is revoked).
    pub fn revokes(&self) -> usize {
        self.state.inner().revokes
    }

    /// The org id (18 characters), as in identity URLs and `getUserInfo`.
    pub fn org_id(&self) -> String {
        token::ORG_ID.to_owned()
    }

    /// A configured user's id (18 characters, stable for the username), as in identity URLs and
    /// `getUserInfo`.
    pub fn user_id(&self, username: &str) -> Option<String> {
        let index = self
            .state
            .users
            .iter()
            .position(|u| u.username == username)?;
        Some(token::user_id(index))
    }

    /// Makes every REST and SOAP answer wait `delay` (None: answer at once).
    pub fn set_api_delay(&self, delay: Option<Duration>) {
        self.state.inner().api_delay = delay;
    }

    /// Forgets failures queued by `fail_next_token_requests` (ends a simulated outage).
    pub fn clear_token_failures(&self) {
        self.state.inner().failures.clear();
    }

    /// Connections open to the stand-in right now.
    pub fn open_connections(&self) -> usize {
        self.state.inner().open_connections
    }

    /// Offers only HTTP/1.1 by ALPN on connections accepted from now on (as some servers do).
    pub fn set_http1_only(&self, only: bool) {
        self.state.inner().http1_only = only;
    }

    /// Connections accepted since the start, closed ones included.
    pub fn accepted_connections(&self) -> usize {
        self.state.inner().accepted_connections
    }

    /// Request bodies cut off by their sender (a proxy that cancelled an upload).
    pub fn aborted_bodies(&self) -> usize {
        self.state.inner().aborted_bodies
    }

    /// `/download` answers still streaming (a proxy that cancelled a download closes them).
    pub fn open_downloads(&self) -> usize {
        self.state.inner().open_downloads
    }

    /// The daily API usage counter reported in `Sforce-Limit-Info`.
    pub fn api_usage(&self) -> u64 {
        self.state.inner().api_usage
    }

    /// Stops accepting and closes every open connection; returns once the port is released.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // A cancelled task reports JoinError::Cancelled, which is the expected outcome.
            let _ = server.await;
        }
    }
}

impl Drop for MockOrg {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn invalid_input(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

fn tls_config(tls: &KeyAndCert) -> std::io::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_input(format!("TLS certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid_input(
            "TLS certificate PEM holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| invalid_input(format!("TLS key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid_input(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid_input(format!("TLS certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS offering `h2` and `http/1.1` by ALPN, and offering `http/1.1` only.
struct Acceptors {
    both: tokio_rustls::TlsAcceptor,
    http1: tokio_rustls::TlsAcceptor,
}

async fn accept_loop(listener: TcpListener, acceptors: Acceptors, state: Arc<State>) {
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE; spinning would only make it worse.
                tracing::warn!(error = %e, "mock org accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = {
            let mut inner = state.inner();
            inner.accepted_connections += 1;
            if inner.http1_only {
                acceptors.http1.clone()
            } else {
                acceptors.both.clone()
            }
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let _open = Counted::new(&state, |inner| &mut inner.open_connections);
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "mock org TLS handshake failed");
                    return;
                }
            };
            let state_for_requests = Arc::clone(&state);
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state_for_requests);
                async move { dispatch(&state, req).await }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "mock org connection ended");
            }
        });
    }
}

async fn dispatch(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    tracing::debug!(method = %req.method(), path = req.uri().path(), "mock org request");
    let path = req.uri().path();
    if path == "/services/oauth2/token" {
        token::handle(state, req).await
    } else if path == "/services/oauth2/revoke" {
        token::revoke(state, req).await
    } else if soap::is_soap_path(path) {
        soap::handle(state, req).await
    } else {
        rest::handle(state, req).await
    }
}

#[cfg(test)]
mod tests;
