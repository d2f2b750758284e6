//! What the logins stage works with: the desk (key, clients, sessions, the failure memory), what
//! it keeps across reloads, who a request comes from, and the stages below it.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Request, Response};
use tower::Service;

use super::failures::Failures;
use crate::{
    body::ProxyBody,
    config::{Client, LoginsSettings},
    error::ProxyError,
    salesforce::{
        cache::SessionCache, login::sealed::LoginsKey, soap::envelope::Limits, token::TokenClient,
    },
};

/// What answering legacy logins takes: the key, the clients and their secrets, the sessions.
pub(crate) struct Desk {
    pub(crate) key: Arc<LoginsKey>,
    pub(crate) session_ttl: Duration,
    pub(crate) clients: Arc<[Client]>,
    pub(crate) cache: SessionCache,
    pub(crate) tokens: TokenClient,
    pub(crate) envelopes: Limits,
    pub(super) failures: Arc<Failures>,
    pub(super) max_failures_per_minute: u32,
}

impl Desk {
    /// `settings`' key, or the one `kept` made when the config names none.
    pub(crate) fn new(
        settings: &LoginsSettings,
        kept: &LoginsKept,
        clients: Arc<[Client]>,
        cache: SessionCache,
        tokens: TokenClient,
        envelopes: Limits,
    ) -> Self {
        Self {
            key: settings
                .key
                .clone()
                .unwrap_or_else(|| kept.made_key.clone()),
            session_ttl: settings.session_ttl,
            clients,
            cache,
            tokens,
            envelopes,
            failures: kept.failures.clone(),
            max_failures_per_minute: settings.max_failures_per_minute,
        }
    }
}

/// What the logins stage keeps across reloads: the key made at start, for a config that names
/// none (the ids handed out then end with the process), and the wrong-password memory.
#[derive(Clone)]
pub(crate) struct LoginsKept {
    pub(crate) made_key: Arc<LoginsKey>,
    pub(crate) failures: Arc<Failures>,
}

impl LoginsKept {
    pub(crate) fn new() -> Result<Self, String> {
        Ok(Self {
            made_key: Arc::new(LoginsKey::generate()?),
            failures: Arc::default(),
        })
    }
}

/// The stages below: where a login's `getUserInfo()` and every request admitted here go.
pub(super) trait Below:
    Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Below for S where
    S: Service<
            Request<ProxyBody>,
            Response = Response<ProxyBody>,
            Error = ProxyError,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// Who the request says it comes from, besides what it carries.
pub(super) struct From {
    pub(super) source: IpAddr,
    /// The client its own `Proxy-Authorization` named, which a login or id must agree with.
    pub(super) proxy_client: Option<Arc<str>>,
}

impl From {
    /// Whether a request from here may act as `client`: from its networks (when it has any), and
    /// not under another client's `Proxy-Authorization`. The Err is why not, for the log.
    pub(super) fn may_be(&self, client: &Client) -> Result<(), &'static str> {
        if !client.networks.is_empty() && !client.networks.iter().any(|n| n.contains(&self.source))
        {
            return Err("the source address is outside the client's networks");
        }
        if self
            .proxy_client
            .as_ref()
            .is_some_and(|named| *named != client.name)
        {
            return Err("Proxy-Authorization names another client");
        }
        Ok(())
    }
}

/// Unix seconds now: a handed-out id's clock.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
