//! CONNECT: whether a tunnel is granted, and what it will carry. A tunnel is for one routed host
//! and the caller identified on the CONNECT; the route of each request inside is chosen again
//! when it arrives.

use std::sync::Arc;

use http::{Request, Response, Uri, Version};

use super::target::target_host;
use crate::{
    body::{self, ProxyBody},
    config::{Client, Route},
    context::{Caller, ClientAddr, Inside, Tunnel, TunnelGrant, Unidentified},
    error::ProxyError,
    intercept::Intercept,
    metrics::RouteHandles,
};

/// CONNECT: a tunnel (200 with a [`TunnelGrant`]) when the target is `host:443` with
/// interception on or `host:80`, and some route serves the host for this caller (or, with legacy
/// logins on, for legacy callers from its address); nothing is dialled either way.
pub(super) fn grant_tunnel(
    routes: &[(Arc<Route>, Arc<RouteHandles>)],
    intercept: Option<&Arc<Intercept>>,
    clients: Option<&[Client]>,
    request: &Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    if request.extensions().get::<Tunnel>().is_some() {
        return Err(ProxyError::ConnectRefused(
            "CONNECT inside a tunnel is not supported: send the requests themselves",
        ));
    }
    // An HTTP/2 stream as a tunnel would share its connection's slot with every other stream.
    if request.version() == Version::HTTP_2 {
        return Err(ProxyError::ConnectRefused(
            "CONNECT over HTTP/2 is not supported: open tunnels over HTTP/1.1, or send http:// \
             URLs through the proxy without a tunnel",
        ));
    }
    let port = connect_port(request.uri())?;
    let inside = match (port, intercept) {
        (80, _) => Inside::Plain,
        (443, Some(intercept)) => Inside::Tls(intercept.clone()),
        (443, None) => return Err(ProxyError::ConnectUnsupported),
        (port, _) => {
            return Err(ProxyError::TunnelPortRefused {
                host: target_host(request)?.into_owned(),
                port,
            });
        }
    };
    let host = target_host(request)?.into_owned();
    let caller = request.extensions().get::<Caller>();
    let served = caller.is_some_and(|caller| {
        routes
            .iter()
            .any(|(r, _)| r.serves_host(&host) && r.admits(&caller.name))
    });
    let caller = match (served, clients) {
        (true, _) => caller.cloned(),
        (false, Some(clients)) if opens_for_logins(routes, clients, &host, request) => None,
        (false, _) => {
            if let Some(Unidentified { refusal }) = request.extensions().get::<Unidentified>() {
                return Err(ProxyError::AuthRequired(refusal.clone()));
            }
            return Err(ProxyError::NoRoute {
                host,
                path: "(CONNECT)".to_owned(),
            });
        }
    };
    let mut response = Response::new(body::empty());
    response.extensions_mut().insert(TunnelGrant {
        host,
        caller,
        inside,
    });
    Ok(response)
}

/// Whether a route with `logins = true` serves `host` for a client whose networks hold the
/// caller's address (any address, for a client without networks): legacy clients behind
/// `HTTPS_PROXY` rarely send `Proxy-Authorization`, and each request inside names its caller.
fn opens_for_logins(
    routes: &[(Arc<Route>, Arc<RouteHandles>)],
    clients: &[Client],
    host: &str,
    request: &Request<ProxyBody>,
) -> bool {
    let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>() else {
        return false;
    };
    let source = peer.ip().to_canonical();
    routes.iter().any(|(route, _)| {
        route.logins
            && route.serves_host(host)
            && clients.iter().any(|client| {
                route.admits(&client.name)
                    && (client.networks.is_empty()
                        || client.networks.iter().any(|n| n.contains(&source)))
            })
    })
}

/// The port of a CONNECT target, which must be authority-form `host:port` (RFC 9110 §9.3.6):
/// no scheme, no path, no user information, a port.
fn connect_port(uri: &Uri) -> Result<u16, ProxyError> {
    let bad = |why: &str| {
        // Never echoed with user information in it: that part may be a password.
        let target = uri.to_string();
        let target = if target.contains('@') {
            String::new()
        } else {
            format!(" {target:?}")
        };
        Err(ProxyError::BadRequest(format!(
            "CONNECT needs a host:port target (e.g. acme.my.salesforce.com:443), not{target}: \
             {why}"
        )))
    };
    let Some(authority) = uri.authority() else {
        return bad("a path, not an authority");
    };
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty()) {
        return bad("a URL, not an authority");
    }
    if authority.as_str().contains('@') {
        return bad("user information");
    }
    match authority.port_u16() {
        Some(port) => Ok(port),
        None => bad("no port"),
    }
}
