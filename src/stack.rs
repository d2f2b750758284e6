//! The one place the request path is assembled, outermost layer first.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::{
    config::Config,
    intercept::Intercept,
    layer::{
        identify::{Identify, IdentifyLayer},
        limits::{Limits, LimitsLayer},
        rescue::{Rescue, RescueLayer},
        route::{RouteLayer, Router},
        session::{SessionLayer, Sessions},
        trace::{Trace, TraceLayer},
    },
    salesforce::{cache::SessionCache, token::TokenClient},
    upstream::{self, Upstream},
};

/// The whole proxy as one service: every request in, a response out, never an error. Named, not
/// boxed: it is cloned for every request, and a boxed service would also box each future again.
pub type ProxyService = Trace<Rescue<Limits<Identify<Router<Sessions<Upstream>>>>>>;

/// The stack for `config`. `sessions` is passed in because it outlives the stack: a reload builds
/// a new stack around the same sessions.
pub fn build(
    config: &Config,
    sessions: SessionCache,
) -> Result<(ProxyService, TokenClient), String> {
    let tls = upstream::client::tls_config(&config.proxy)?;
    let client = upstream::client::pooled_client(tls.clone());
    let tokens = TokenClient::new(client.clone());
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
        .layer(IdentifyLayer::new(config.clients.clone()))
        // Picks org and user; needs the caller, since routes may be limited to some clients.
        .layer(RouteLayer::new(
            config.routes.clone(),
            config
                .proxy
                .intercept
                .clone()
                .map(|ca| Arc::new(Intercept::new(ca))),
        ))
        // The session of the route's (org, user); it wraps upstream so it can replay once.
        .layer(SessionLayer::new(
            sessions,
            tokens.clone(),
            config.proxy.replay_limit,
        ))
        .service(Upstream::new(client, &tls, config.proxy.request_timeout));
    Ok((service, tokens))
}
