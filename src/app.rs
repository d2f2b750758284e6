//! The running proxy: the active config and its stack, swapped atomically on SIGHUP, and what
//! outlives a reload — the session cache, the bound ports, readiness.
//!
//! A reload builds the new stack completely before swapping it in, so an invalid file changes
//! nothing; requests in flight finish on the stack they started on. It reads its files on a
//! blocking thread, never on the runtime that accepts connections and serves the admin port: a
//! slow disk or a network mount must not stall them. Sessions are keyed by their
//! org's settings, so orgs whose login settings did not change keep their sessions; the
//! interception leaves are kept while the CA is the same, and the shared tier's connection
//! while `[shared]` is the same.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;

use crate::{
    admin,
    config::{Config, Org, ProxySettings},
    intercept::Intercept,
    layer::{logins::LoginsKept, route::RouteTable},
    metrics::{self, OrgMetrics},
    salesforce::{cache::SessionCache, token::TokenClient},
    server,
    shared::tier::SharedTier,
    stack::{self, ProxyService},
    upstream::client::tls_config,
    workers::Workers,
};

/// How often warm sessions are looked at.
const WARM_TICK: Duration = Duration::from_secs(1);
/// After a failed warm-up mint, wait this long before trying that (org, user) again: a broken
/// org must not spend Salesforce's 3,600 logins per hour.
const WARM_RETRY: Duration = Duration::from_secs(30);
/// A warm session is renewed once this share of its `session_ttl` has passed.
const WARM_RENEW_AT: f64 = 0.75;
/// How often the shared tier's health is checked.
const SHARED_TICK: Duration = Duration::from_secs(1);

/// One loaded config and the stack built from it.
pub(crate) struct Active {
    pub(crate) config: Arc<Config>,
    pub(crate) service: ProxyService,
    pub(crate) tokens: TokenClient,
    /// The config's routes with the metric handles the stack attached.
    pub(crate) routes: RouteTable,
    pub(crate) intercept: Option<Arc<Intercept>>,
}

pub struct App {
    path: PathBuf,
    sessions: SessionCache,
    active: ArcSwap<Active>,
    /// The settings the process started with: ports and connection limits change only on restart.
    started: ProxySettings,
    /// Bound and not draining: what a load balancer must know.
    serving: AtomicBool,
    /// Warm (org, user) pairs that have had a session since start. Readiness needs each once;
    /// a later expiry and renewal does not make the proxy unready.
    warmed: Mutex<HashSet<(String, String)>>,
    /// What legacy logins keep across reloads: the key made at start, the failure memory.
    logins_kept: LoginsKept,
}

impl App {
    /// Loads and validates the config and builds its stack. The error is one printable line.
    pub fn load(path: &Path) -> Result<Arc<App>, String> {
        let sessions = SessionCache::default();
        let logins_kept = LoginsKept::new()?;
        let active = build(path, &sessions, None, &logins_kept)?;
        sessions.set_shared(shared_tier(&active.config)?);
        Ok(Arc::new(App {
            logins_kept,
            started: active.config.proxy.clone(),
            path: path.to_owned(),
            sessions,
            active: ArcSwap::from_pointee(active),
            serving: AtomicBool::new(false),
            warmed: Mutex::default(),
        }))
    }

    pub(crate) fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    pub(crate) fn service(&self) -> ProxyService {
        self.active.load().service.clone()
    }

    /// Re-reads the config file, off the async threads; on any error the running config stays.
    pub(crate) async fn reload(&self) -> Result<(), String> {
        let (path, sessions) = (self.path.clone(), self.sessions.clone());
        let running = self.active.load().intercept.clone();
        let kept = self.logins_kept.clone();
        let built =
            tokio::task::spawn_blocking(move || build(&path, &sessions, running.as_ref(), &kept))
                .await
                .unwrap_or_else(|e| Err(format!("the reload stopped: {e}")));
        let outcome = built.map(|next| {
            // The ports and connection settings are those the process started with.
            let (old, new) = (&self.started, &next.config.proxy);
            for (key, changed) in [
                ("proxy.listen", old.listen != new.listen),
                ("proxy.admin_listen", old.admin_listen != new.admin_listen),
                (
                    "proxy.max_connections",
                    old.max_connections != new.max_connections,
                ),
                (
                    "proxy.header_timeout",
                    old.header_timeout != new.header_timeout,
                ),
                ("proxy.workers", old.workers != new.workers),
            ] {
                if changed {
                    tracing::warn!(
                        key,
                        "differs from the running value; takes effect on restart"
                    );
                }
            }
            self.keep_or_replace_shared(&next.config);
            self.active.store(Arc::new(next));
        });
        let result = if outcome.is_ok() { "ok" } else { "error" };
        ::metrics::counter!(metrics::CONFIG_RELOADS, "result" => result).increment(1);
        match &outcome {
            Ok(()) => tracing::info!(config = %self.path.display(), "config reloaded"),
            Err(error) => tracing::error!(
                config = %self.path.display(), %error,
                "config reload refused; the previous config keeps serving"
            ),
        }
        outcome
    }

    /// A reload keeps the connection to the shared tier unless `[shared]` (or the trust it
    /// connects with) changed.
    fn keep_or_replace_shared(&self, next: &Config) {
        let running = self.active.load();
        let same = match (&running.config.shared, &next.shared) {
            (Some(old), Some(new)) => {
                old.same_as(new) && running.config.proxy.ca_certs == next.proxy.ca_certs
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match shared_tier(next) {
            Ok(tier) => {
                match &tier {
                    Some(tier) => {
                        tracing::info!(
                            redis = %tier.settings.url, "[shared] changed: connecting anew"
                        );
                        // At once, not at the next health tick: misses meanwhile log in alone.
                        let tier = tier.clone();
                        tokio::spawn(async move { tier.tick().await });
                    }
                    None => tracing::info!(
                        "[shared] removed: this process keeps its own sessions from now on"
                    ),
                }
                self.sessions.set_shared(tier);
            }
            Err(error) => tracing::error!(%error, "[shared] changed but cannot be used"),
        }
    }

    /// Checks the shared tier once a second: reconnects it while down, PINGs it while up.
    async fn watch_shared(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SHARED_TICK).await;
            if let Some(tier) = self.sessions.shared() {
                tier.tick().await;
            }
        }
    }

    /// Ready while the proxy port is bound and not draining, once every warm (org, user) has
    /// had a session.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        if !self.serving.load(Ordering::Acquire) {
            return Err("the proxy port is not bound, or the proxy is stopping".into());
        }
        let active = self.active();
        for (org, user, _) in warm_pairs(&active.routes) {
            let warmed = self
                .warmed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&(org.name.clone(), user.clone()));
            if !warmed && self.sessions.peek(&org, &user).await.is_none() {
                return Err(format!(
                    "warming: no session yet for org {} user {user}",
                    org.name
                ));
            }
        }
        Ok(())
    }

    /// Mints sessions of warm orgs at start and renews them before they age out.
    async fn keep_warm(self: Arc<Self>) {
        let mut retry_after: HashMap<(String, String), Instant> = HashMap::new();
        loop {
            let active = self.active();
            for (org, user, metrics) in warm_pairs(&active.routes) {
                let key = (org.name.clone(), user.clone());
                if retry_after.get(&key).is_some_and(|at| Instant::now() < *at) {
                    continue;
                }
                // No session: the shared single-flight path, so a caller arriving meanwhile
                // waits for this login instead of starting its own. An ageing one: replaced
                // while callers keep using it.
                let outcome = match self.sessions.peek(&org, &user).await {
                    None => self
                        .sessions
                        .get(&org, &user, &active.tokens, &metrics)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Some(s)
                        if s.minted_at.elapsed().as_secs_f64()
                            < s.ttl.as_secs_f64() * WARM_RENEW_AT =>
                    {
                        Ok(())
                    }
                    Some(current) => self
                        .sessions
                        .refresh(&org, &user, &active.tokens, &current)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                };
                match outcome {
                    Ok(()) => {
                        retry_after.remove(&key);
                        self.warmed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key);
                    }
                    Err(error) => {
                        tracing::warn!(org = %org.name, user, %error, retry_in = ?WARM_RETRY, "warm-up login failed");
                        retry_after.insert(key, Instant::now() + WARM_RETRY);
                    }
                }
            }
            tokio::time::sleep(WARM_TICK).await;
        }
    }
}

/// Loads the config at `path` and builds its stack; `running`: the interception to keep if the
/// CA did not change; `logins_kept`: what legacy logins keep across reloads.
fn build(
    path: &Path,
    sessions: &SessionCache,
    running: Option<&Arc<Intercept>>,
    logins_kept: &LoginsKept,
) -> Result<Active, String> {
    let config = Config::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let built = stack::build(&config, sessions.clone(), running, logins_kept)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Active {
        config: Arc::new(config),
        service: built.service,
        tokens: built.tokens,
        routes: built.routes,
        intercept: built.intercept,
    })
}

impl admin::Readiness for App {
    fn readiness(&self) -> impl std::future::Future<Output = Result<(), String>> + Send {
        self.ready()
    }
}

/// The shared tier `[shared]` asks for (not connected yet), with the proxy's TLS trust.
fn shared_tier(config: &Config) -> Result<Option<Arc<SharedTier>>, String> {
    let Some(settings) = &config.shared else {
        return Ok(None);
    };
    let tls = match settings.tls {
        true => Some(tls_config(&config.proxy)?),
        false => None,
    };
    Ok(Some(SharedTier::new(settings.clone(), tls)))
}

/// Every (org, user) a route names, for orgs with `warm = true`, with the org's metrics.
fn warm_pairs(routes: &RouteTable) -> Vec<(Arc<Org>, String, Arc<OrgMetrics>)> {
    let mut pairs: Vec<(Arc<Org>, String, Arc<OrgMetrics>)> = Vec::new();
    for (route, metrics) in routes.iter() {
        let already = pairs
            .iter()
            .any(|(o, u, _)| o.name == route.org.name && *u == route.user);
        if route.org.warm && !already {
            pairs.push((route.org.clone(), route.user.clone(), metrics.org.clone()));
        }
    }
    pairs
}

/// Where the ports ended up (port 0 in the config picks a free one).
pub struct Bound {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Binds the ports, then serves until SIGTERM/SIGINT, reloading on SIGHUP. `ready` runs once the
/// ports are bound, before serving.
pub async fn run(app: Arc<App>, ready: impl FnOnce(&Bound)) -> Result<(), String> {
    let config = app.active().config.clone();
    // Metrics are kept only when something can scrape them: without an admin port the facade
    // records nothing, and nothing accumulates.
    let prometheus = config
        .proxy
        .admin_listen
        .and_then(|_| metrics::install().ok());
    let listener = server::bind(config.proxy.listen)
        .await
        .map_err(|e| e.to_string())?;
    let admin = match config.proxy.admin_listen {
        Some(addr) => Some(server::bind(addr).await.map_err(|e| e.to_string())?),
        None => None,
    };
    let bound = Bound {
        proxy: listener.local_addr().map_err(|e| e.to_string())?,
        admin: admin.as_ref().and_then(|l| l.local_addr().ok()),
    };
    if let Some(listener) = admin {
        tokio::spawn(admin::serve(listener, app.clone(), prometheus));
    }
    let workers = Workers::start(config.proxy.workers)
        .map_err(|e| format!("cannot start the serving threads: {e}"))?;
    // Signal handlers before "ready": a signal right after start must not kill the process.
    let stop = server::stop_signal().map_err(|e| format!("cannot handle signals: {e}"))?;
    let hangups = hangup_signals()?;
    // The first connection before "ready", bounded: replicas started together must share their
    // first logins, yet a Redis that is down delays the start by a second at most.
    if let Some(tier) = app.sessions.shared() {
        tier.tick().await;
    }
    tokio::spawn(app.clone().watch_shared());
    tokio::spawn(app.clone().keep_warm());
    tokio::spawn(reload_on(hangups, app.clone()));
    app.serving.store(true, Ordering::Release);
    tracing::info!(
        listen = %bound.proxy,
        admin = bound.admin.map(|a| a.to_string()),
        routes = config.routes.len(),
        workers = config.proxy.workers,
        config = %app.path.display(),
        "sfproxy ready"
    );
    ready(&bound);
    let current = {
        let app = app.clone();
        move || app.service()
    };
    let grace = {
        let app = app.clone();
        move || app.active().config.proxy.shutdown_grace
    };
    let draining = {
        let app = app.clone();
        async move {
            stop.await;
            // Unready from the first moment of the drain, so load balancers stop sending.
            app.serving.store(false, Ordering::Release);
        }
    };
    server::serve(listener, &workers, &config.proxy, current, draining, grace).await;
    tracing::info!("sfproxy stopped");
    Ok(())
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Result<Hangups, String> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))
}

#[cfg(not(unix))]
fn hangup_signals() -> Result<Hangups, String> {
    Ok(())
}

#[cfg(unix)]
async fn reload_on(mut hangups: Hangups, app: Arc<App>) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = app.reload().await;
    }
}

#[cfg(not(unix))]
async fn reload_on(_hangups: Hangups, _app: Arc<App>) {}
