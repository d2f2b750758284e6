//! The one place the request path is assembled, outermost layer first.

use std::{convert::Infallible, sync::Arc};

use http::{Request, Response};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use crate::{
    body::ProxyBody,
    config::Config,
    intercept::Intercept,
    layer::{
        identify::IdentifyLayer, limits::LimitsLayer, rescue::RescueLayer, route::RouteLayer,
        session::SessionLayer, trace::TraceLayer,
    },
    salesforce::{cache::SessionCache, token::TokenClient},
    upstream::{self, Upstream},
};

/// The whole proxy as one service: every request in, a response out, never an error.
pub type ProxyService = BoxCloneSyncService<Request<ProxyBody>, Response<ProxyBody>, Infallible>;

/// The stack for `config`. `sessions` is passed in because it outlives the stack: a reload builds
/// a new stack around the same sessions.
pub fn build(
    config: &Config,
    sessions: SessionCache,
) -> Result<(ProxyService, TokenClient), String> {
    let client = upstream::build_client(&config.proxy)?;
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
        .service(Upstream::new(client, config.proxy.request_timeout));
    Ok((BoxCloneSyncService::new(service), tokens))
}
