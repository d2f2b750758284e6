//! The one place the request path is assembled, outermost layer first.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::{
    config::Config,
    intercept::Intercept,
    layer::{
        identify::{Identify, IdentifyLayer},
        limits::{Limits, LimitsLayer},
        replay::{Replay, ReplayLayer, ResendRefused},
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
pub type ProxyService =
    Trace<Rescue<Limits<Identify<Router<Sessions<Replay<Upstream, ResendRefused>>>>>>>;

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
        // The session of the route's (org, user), where its API reads it; its expiry policy
        // goes down with the request, so the replay below can send it again with a new one.
        .layer(SessionLayer::new(sessions, tokens.clone()))
        // Keeps bodies up to replay_limit, to send a request again: once per send when the
        // instance refused it unprocessed, and when the request's own policy says so.
        .layer(ReplayLayer::new(
            config.proxy.replay_limit,
            ResendRefused::default(),
        ))
        .service(Upstream::new(client, &tls, config.proxy.request_timeout));
    Ok((service, tokens))
}
