//! The one place the request path is assembled, outermost layer first, and where what the
//! config describes meets what runs: the metric handles of its routes and orgs, and the
//! interception CA's leaves, kept across a reload that keeps the CA.

use std::{collections::HashMap, sync::Arc};

use tower::ServiceBuilder;

use crate::{
    config::Config,
    intercept::Intercept,
    layer::{
        identify::{Identify, IdentifyLayer},
        limits::{Limits, LimitsLayer},
        logins::{Desk, Logins, LoginsKept, LoginsLayer},
        replay::{Replay, ReplayLayer, ResendRefused},
        rescue::{Rescue, RescueLayer},
        route::{RouteLayer, RouteTable, Router},
        session::{SessionLayer, Sessions},
        trace::{Trace, TraceLayer},
    },
    metrics::{OrgMetrics, RouteHandles, RouteMetrics},
    salesforce::{
        cache::SessionCache, soap::envelope::Limits as EnvelopeLimits, token::TokenClient,
    },
    upstream::{self, Upstream},
};

/// The whole proxy as one service: every request in, a response out, never an error. Named, not
/// boxed: it is cloned for every request, and a boxed service would also box each future again.
pub(crate) type ProxyService =
    Trace<Rescue<Limits<Identify<Router<Logins<Sessions<Replay<Upstream, ResendRefused>>>>>>>>;

/// A built stack, and what of it the app keeps besides the service.
pub(crate) struct Built {
    pub(crate) service: ProxyService,
    pub(crate) tokens: TokenClient,
    /// The routes with their metric handles: warm-up logins are counted through them too.
    pub(crate) routes: RouteTable,
    /// The interception in use, for the next reload to keep.
    pub(crate) intercept: Option<Arc<Intercept>>,
}

/// The stack for `config`. `sessions` is passed in because it outlives the stack: a reload builds
/// a new stack around the same sessions. `running`: the interception of the stack this one
/// replaces, kept when the CA is the same, so callers see the same leaf for a host after a
/// reload (and none is issued again).
pub(crate) fn build(
    config: &Config,
    sessions: SessionCache,
    running: Option<&Arc<Intercept>>,
    logins_kept: &LoginsKept,
) -> Result<Built, String> {
    let routes = route_table(config);
    let intercept = config.proxy.intercept.as_ref().map(|ca| match running {
        Some(running) if running.ca().same_ca(ca) => running.clone(),
        _ => Arc::new(Intercept::new(ca.clone())),
    });
    let tls = upstream::client::tls_config(&config.proxy)?;
    let client = upstream::client::pooled_client(tls.clone());
    let tokens = TokenClient::new(client.clone());
    let envelopes = EnvelopeLimits {
        max_header_bytes: config.proxy.max_header_bytes,
        max_body: config.proxy.max_body,
    };
    let clients: Arc<[crate::config::Client]> = config.clients.clone().into();
    let desk = config.logins.as_ref().map(|logins| {
        Desk::new(
            logins,
            logins_kept,
            clients.clone(),
            sessions.clone(),
            tokens.clone(),
            envelopes,
        )
    });
    let logins_clients = desk.as_ref().map(|_| clients.clone());
    let service = ServiceBuilder::new()
        // First, so the request id, log line and metrics cover every answer, refusals included.
        .layer(TraceLayer)
        // Every error raised below becomes a Salesforce-shaped answer here, and only here.
        .layer(RescueLayer)
        // Sizes first: nothing is done for a request that is too large to serve.
        .layer(LimitsLayer::new(
            config.proxy.max_header_bytes,
            config.proxy.max_body,
        ))
        // Who before where: an unknown caller learns nothing about the routes.
        .layer(IdentifyLayer::new(
            config.clients.clone(),
            config.logins.is_some(),
        ))
        // Picks org and user; needs the caller, since routes may be limited to some clients.
        .layer(RouteLayer::new(
            routes.clone(),
            intercept.clone(),
            logins_clients,
        ))
        // Legacy logins: after route, which knows the routes with logins = true serving the
        // target; before session, which swaps the real session in for the handed-out one and
        // serves the user's getUserInfo() a login answer needs.
        .layer(LoginsLayer::new(desk))
        // The session of the route's (org, user), where its API reads it; its expiry policy
        // goes down with the request, so the replay below can send it again with a new one.
        .layer(SessionLayer::new(sessions, tokens.clone(), envelopes))
        // Keeps bodies up to replay_limit, to send a request again: once per send when the
        // instance refused it unprocessed, and when the request's own policy says so.
        .layer(ReplayLayer::new(
            config.proxy.replay_limit,
            ResendRefused::default(),
        ))
        .service(Upstream::new(client, &tls, config.proxy.request_timeout));
    Ok(Built {
        service,
        tokens,
        routes,
        intercept,
    })
}

/// Each route of `config` with its metric handles; the routes of an org share the org's.
pub(crate) fn route_table(config: &Config) -> RouteTable {
    let mut orgs: HashMap<&str, Arc<OrgMetrics>> = HashMap::new();
    config
        .routes
        .iter()
        .map(|route| {
            let org = orgs
                .entry(&route.org.name)
                .or_insert_with(|| Arc::new(OrgMetrics::new(&route.org.name)))
                .clone();
            let handles = RouteHandles {
                route: RouteMetrics::new(route.name.clone()),
                org,
            };
            (route.clone(), Arc::new(handles))
        })
        .collect()
}
