//! The shared tier as the rest of the proxy sees it: up or not, and every command bounded.
//!
//! Redis makes logins cheaper; it is never what a request depends on. Each command gets
//! `timeout`; one that fails, times out or answers something that is not what sfproxy stored
//! marks the tier down, and from then on no request waits for Redis: the process keeps its own
//! sessions, single flight, failure memory and budget, as without `[shared]`. A health tick
//! (once a second, from the app) reconnects while the tier is down — a fresh connection, so a
//! half-open socket is never reused — and PINGs while it is up. Each change is logged once.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use redis::{RedisResult, aio::MultiplexedConnection};
use rustls::ClientConfig;

use crate::{config::SharedSettings, metrics, shared::connect};

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A connection attempt may take this long, at least: a TLS handshake is several round trips.
const MIN_CONNECT_TIME: Duration = Duration::from_secs(1);

pub(crate) struct SharedTier {
    pub(crate) settings: SharedSettings,
    tls: Option<Arc<ClientConfig>>,
    connection: ArcSwapOption<MultiplexedConnection>,
    state: AtomicU8,
}

impl SharedTier {
    /// Not connected yet: the first health tick connects (start never waits for Redis).
    pub(crate) fn new(settings: SharedSettings, tls: Option<ClientConfig>) -> Arc<Self> {
        Arc::new(Self {
            tls: tls.filter(|_| settings.tls).map(Arc::new),
            settings,
            connection: ArcSwapOption::empty(),
            state: AtomicU8::new(CONNECTING),
        })
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// `command` on the connection within `timeout`; `None` when the tier is down or this
    /// command fails (which marks it down). `what` names the command in the log line.
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, command: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        let connection = self.connection.load_full()?;
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, command((*connection).clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.mark_down(&format!("{what}: {error}"));
                None
            }
            Err(_) => {
                self.mark_down(&format!("{what}: no answer within {timeout:?}"));
                None
            }
        }
    }

    /// Marks the tier down, logging the change (not every failure after it).
    pub(crate) fn mark_down(&self, reason: &str) {
        let before = self.state.swap(DOWN, Ordering::AcqRel);
        if before != DOWN {
            self.connection.store(None);
            tracing::warn!(
                redis = %self.settings.url, reason,
                "shared tier unavailable: this process carries on with its own sessions, \
                 logins, failure memory and budget"
            );
            ::metrics::gauge!(metrics::SHARED_TIER_UP).set(0.0);
        }
    }

    /// The health check: while down (or not yet connected) a fresh connection; while up, a PING.
    pub(crate) async fn tick(&self) {
        if self.is_up() {
            let _: Option<String> = self
                .run("PING", |mut c| async move {
                    redis::cmd("PING").query_async(&mut c).await
                })
                .await;
        } else {
            let within = (self.settings.timeout * 4).max(MIN_CONNECT_TIME);
            match connect::open(&self.settings, self.tls.as_ref(), within).await {
                Ok(connection) => {
                    self.connection.store(Some(Arc::new(connection)));
                    let before = self.state.swap(UP, Ordering::AcqRel);
                    if before == DOWN {
                        tracing::info!(
                            redis = %self.settings.url,
                            "shared tier back: sessions, logins and the budget are shared again"
                        );
                    } else {
                        tracing::info!(redis = %self.settings.url, "shared tier connected");
                    }
                }
                Err(reason) => {
                    if self.state.load(Ordering::Acquire) == CONNECTING {
                        self.mark_down(&reason);
                    }
                    tracing::debug!(redis = %self.settings.url, reason, "shared tier still unavailable");
                }
            }
        }
        ::metrics::gauge!(metrics::SHARED_TIER_UP).set(if self.is_up() { 1.0 } else { 0.0 });
    }
}
