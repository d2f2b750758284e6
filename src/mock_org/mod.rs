//! A Salesforce stand-in: the OAuth 2.0 JWT bearer token endpoint plus enough of the REST,
//! Bulk 1.0 and Apex REST surface to exercise a proxy end to end.
//!
//! The proxy's hard parts are token minting, noticing expired sessions and streaming bodies;
//! none of them can be tested against a real org in CI. This module serves real TLS (h2 and
//! HTTP/1.1 via ALPN) on a local port, verifies JWT assertions the way Salesforce documents it,
//! answers with Salesforce's exact error shapes, and records what it saw, so tests and
//! `sfproxy demo` can assert on behaviour instead of mocks. Failures can be injected into the
//! token endpoint to test caching, back-off and timeouts.

mod rest;
mod token;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
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

#[derive(Clone, Debug)]
pub struct MockUser {
    pub username: String,
    /// false → invalid_grant "user hasn't approved this consumer".
    pub approved: bool,
    /// false → its sessions get 401 "This session is not valid for use with the REST API".
    pub rest_api: bool,
}

/// What the next token request(s) answer instead of a session.
#[derive(Clone, Debug)]
pub enum TokenFailure {
    /// A Salesforce-shaped OAuth error, e.g. 400 invalid_grant / ip restricted.
    OAuth {
        status: u16,
        error: String,
        description: String,
    },
    /// Anything else, e.g. a 503 HTML page or a 200 without an access_token.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// Close the connection without an answer (HTTP/2: reset the stream).
    Drop,
}

/// One REST request as the org saw it (token requests are not recorded).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path_and_query: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The presented token was a live session (even if its user may not use the REST API).
    pub session_valid: bool,
    /// Came over HTTP/2 (else HTTP/1.1).
    pub http2: bool,
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
    /// 1.0: 400 `InvalidSessionId`), fresh ones included: a Salesforce that accepts no session.
    pub fn set_refuse_sessions(&self, refuse: bool) {
        self.state.inner().refuse_sessions = refuse;
    }

    /// Overrides the instance_url in token responses (default: `self.url()`).
    pub fn set_instance_url(&self, url: Option<String>) {
        self.state.inner().instance_url = url;
    }

    /// Every REST request seen (not token requests), in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.inner().requests.clone()
    }

    pub fn live_sessions(&self) -> usize {
        self.state.inner().sessions.len()
    }

    /// Makes every REST answer wait `delay` (None: answer at once).
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

/// Shared between the handle and every connection task.
struct State {
    consumer_key: String,
    audience: String,
    users: Vec<MockUser>,
    decoding_key: jsonwebtoken::DecodingKey,
    url: String,
    /// Signs the `signature` field of token responses, like Salesforce does with the app secret.
    hmac_key: aws_lc_rs::hmac::Key,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Caller connections open now (TCP accepted, not yet closed).
    open_connections: usize,
    accepted_connections: usize,
    http1_only: bool,
    /// Request bodies whose sender went away before the end.
    aborted_bodies: usize,
    /// `/download` answers still being streamed.
    open_downloads: usize,
    /// Every REST answer waits this long first (many callers in flight at once).
    api_delay: Option<Duration>,
    /// Live sessions: access token → index into `State::users`.
    sessions: HashMap<String, usize>,
    token_requests: usize,
    failures: VecDeque<TokenFailure>,
    instance_url: Option<String>,
    /// Frozen or deactivated users: their logins are refused.
    frozen: HashSet<String>,
    /// Every session is answered as dead (`set_refuse_sessions`).
    refuse_sessions: bool,
    requests: Vec<SeenRequest>,
    api_usage: u64,
}

impl State {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not take every later assertion down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type MockResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// Why a handler gives up on a request; hyper then drops the connection (or resets the stream).
/// A concrete type rather than a boxed error keeps the service future provably `'static`.
#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error("mock org dropped the connection on purpose")]
    DroppedOnPurpose,
    #[error("reading the request body: {0}")]
    Body(#[from] hyper::Error),
    #[error("system random number generator failed")]
    Random,
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

/// Counts something in `Inner` for as long as it lives (a connection, a streaming answer).
struct Counted {
    state: Arc<State>,
    field: fn(&mut Inner) -> &mut usize,
}

impl Counted {
    fn new(state: &Arc<State>, field: fn(&mut Inner) -> &mut usize) -> Self {
        *field(&mut state.inner()) += 1;
        Self {
            state: Arc::clone(state),
            field,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut inner = self.state.inner();
        let count = (self.field)(&mut inner);
        *count = count.saturating_sub(1);
    }
}

async fn dispatch(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    tracing::debug!(method = %req.method(), path = req.uri().path(), "mock org request");
    if req.uri().path() == "/services/oauth2/token" {
        token::handle(state, req).await
    } else {
        rest::handle(state, req).await
    }
}

/// What was learned from a request body read as a stream: it may be far too big to keep.
struct BodySummary {
    len: usize,
    sha256_hex: String,
    /// The body itself when it is at most the `keep` limit given to `read_body`.
    kept: Option<Vec<u8>>,
}

async fn read_body(mut body: Incoming, keep: usize) -> Result<BodySummary, hyper::Error> {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut len = 0usize;
    let mut kept = Some(Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        hash.update(&data);
        len = len.saturating_add(data.len());
        if len > keep {
            kept = None;
        } else if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&data);
        }
    }
    let sha256_hex = hash
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(BodySummary {
        len,
        sha256_hex,
        kept,
    })
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> MockResponse {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

fn respond_json(status: u16, value: &serde_json::Value) -> MockResponse {
    respond(status, "application/json;charset=UTF-8", value.to_string())
}

#[cfg(test)]
mod tests;
