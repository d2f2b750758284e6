//! Which route serves the request: the first, in file order, whose host, path prefix and
//! clients all match.
//!
//! The target host is the authority of an absolute-form request (`GET http://host/...` through
//! `HTTP_PROXY`), else the `Host` header (gateway use). The route decides the org and user; the
//! destination itself is never taken from the request (upstream uses the org's instance URL), so
//! the worst a crafted target can do is pick a route the caller is already allowed to use.
//! Targets that would be read differently here and at Salesforce — dot segments, user info — are
//! refused rather than guessed at, and so is an `https://` target outside a tunnel: sfproxy would
//! not speak TLS to that caller, and serving it anyway would hide that its URLs are wrong.
//!
//! Here: the layer and the choice. Beside it: `target` (reading and checking the target, and
//! the rules by which a route matches it), `connect` (whether a CONNECT gets a tunnel).

mod connect;
mod target;
#[cfg(test)]
mod tests;

use std::{
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use http::{Method, Request, Response, uri::PathAndQuery};
use tower::{Layer, Service};

use self::{
    connect::grant_tunnel,
    target::{check_path, target_host},
};
use crate::{
    body::ProxyBody,
    config::{Client, Route},
    context::{Caller, LoginRoutes, Notes, Provisional, RouteMatch, Unidentified},
    error::ProxyError,
    intercept::Intercept,
    metrics::RouteHandles,
};

/// The routes in file order, each with the metric handles the stack attached to it: a match
/// hands them on with the route, so no stage looks them up.
pub(crate) type RouteTable = Arc<[(Arc<Route>, Arc<RouteHandles>)]>;

#[derive(Clone)]
pub(crate) struct RouteLayer {
    routes: RouteTable,
    intercept: Option<Arc<Intercept>>,
    /// The clients, when legacy logins are on (their networks open tunnels for them).
    logins: Option<Arc<[Client]>>,
}

impl RouteLayer {
    /// `intercept`: the CA that lets CONNECT open tunnels to port 443; `None` refuses those
    /// (tunnels to port 80 carry plain HTTP and need none). `logins`: the clients, when legacy
    /// logins are answered.
    pub(crate) fn new(
        routes: RouteTable,
        intercept: Option<Arc<Intercept>>,
        logins: Option<Arc<[Client]>>,
    ) -> Self {
        Self {
            routes,
            intercept,
            logins,
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            routes: self.routes.clone(),
            intercept: self.intercept.clone(),
            clients: self.logins.clone(),
            logins: self.logins.is_some(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Router<S> {
    inner: S,
    routes: RouteTable,
    intercept: Option<Arc<Intercept>>,
    clients: Option<Arc<[Client]>>,
    logins: bool,
}

impl<S> Service<Request<ProxyBody>> for Router<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<ProxyBody>, ProxyError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        if request.method() == Method::CONNECT {
            if self.logins {
                note_client(&request);
            }
            return Either::Left(ready(grant_tunnel(
                &self.routes,
                self.intercept.as_ref(),
                self.clients.as_deref(),
                &request,
            )));
        }
        let chosen = choose(&self.routes, &request);
        // With legacy logins on, the logins stage notes the client and route of the requests it
        // looks at: a login or a handed-out id names them.
        let (chosen, noted_below) = match self.logins {
            false => (chosen, false),
            true => {
                let chosen = with_logins(&self.routes, &mut request, chosen);
                let noted_below = request.extensions().get::<LoginRoutes>().is_some();
                if !noted_below {
                    note_client(&request);
                }
                (chosen, noted_below)
            }
        };
        match chosen {
            Ok(matched) => {
                if !noted_below {
                    if let Some(notes) = request.extensions().get::<Arc<Notes>>() {
                        notes.set_route(matched.route.clone(), matched.metrics.clone());
                    }
                }
                request.extensions_mut().insert(matched);
                Either::Right(self.inner.call(request))
            }
            Err(error) => Either::Left(ready(Err(error))),
        }
    }
}

/// With legacy logins on, the client is noted here rather than by identify, for the requests
/// the logins stage does not look at.
fn note_client(request: &Request<ProxyBody>) {
    if let (Some(notes), Some(caller)) = (
        request.extensions().get::<Arc<Notes>>(),
        request.extensions().get::<Caller>(),
    ) {
        notes.set_client(caller.name.clone());
    }
}

/// With legacy logins on: a caller chosen a route without `logins` goes on as without them.
/// Otherwise the routes with `logins = true` serving the target go on the request
/// ([`LoginRoutes`]); a caller that no route admits, or that is [`Unidentified`], gets the first
/// of them, [`Provisional`]ly, for the logins stage to admit or refuse. Without one, an
/// unidentified caller gets the 407 identify held back.
fn with_logins(
    routes: &[(Arc<Route>, Arc<RouteHandles>)],
    request: &mut Request<ProxyBody>,
    chosen: Result<RouteMatch, ProxyError>,
) -> Result<RouteMatch, ProxyError> {
    let unidentified = request.extensions_mut().remove::<Unidentified>();
    if unidentified.is_none() && chosen.as_ref().is_ok_and(|m| !m.route.logins) {
        return chosen;
    }
    let candidates = match (login_routes(routes, request), unidentified.as_ref()) {
        (Ok(candidates), _) => candidates,
        // An unknown caller learns nothing of the target before it is identified.
        (Err(_), Some(Unidentified { refusal })) => {
            return Err(ProxyError::AuthRequired(refusal.clone()));
        }
        (Err(error), None) => return Err(error),
    };
    let Some(first) = candidates.first().cloned() else {
        return match unidentified {
            Some(Unidentified { refusal }) => Err(ProxyError::AuthRequired(refusal)),
            None => chosen,
        };
    };
    request.extensions_mut().insert(LoginRoutes(candidates));
    match chosen {
        Ok(matched) if unidentified.is_none() => Ok(matched),
        _ => {
            request.extensions_mut().insert(Provisional);
            Ok(first)
        }
    }
}

fn login_routes(
    routes: &[(Arc<Route>, Arc<RouteHandles>)],
    request: &Request<ProxyBody>,
) -> Result<Vec<RouteMatch>, ProxyError> {
    let host = target_host(request)?;
    let path = request.uri().path();
    check_path(path)?;
    routes
        .iter()
        .filter(|(route, _)| route.logins && route.serves_host(&host) && route.matches_path(path))
        .map(|(route, metrics)| {
            Ok(RouteMatch {
                route: route.clone(),
                metrics: metrics.clone(),
                path: forward_path(route, request)?,
            })
        })
        .collect()
}

fn choose(
    routes: &[(Arc<Route>, Arc<RouteHandles>)],
    request: &Request<ProxyBody>,
) -> Result<RouteMatch, ProxyError> {
    let Some(caller) = request.extensions().get::<Caller>() else {
        // Unidentified (legacy logins): no route admits it as it is.
        let host = target_host(request)?;
        return Err(ProxyError::NoRoute {
            host: host.into_owned(),
            path: request.uri().path().to_owned(),
        });
    };
    let host = target_host(request)?;
    let path = request.uri().path();
    check_path(path)?;
    let mut served_for_others = false;
    for (route, metrics) in routes {
        if !(route.serves_host(&host) && route.matches_path(path)) {
            continue;
        }
        if !route.admits(&caller.name) {
            served_for_others = true;
            continue;
        }
        return Ok(RouteMatch {
            route: route.clone(),
            metrics: metrics.clone(),
            path: forward_path(route, request)?,
        });
    }
    if served_for_others {
        Err(ProxyError::ClientForbidden {
            client: caller.name.to_string(),
            host: host.into_owned(),
            path: path.to_owned(),
        })
    } else {
        Err(ProxyError::NoRoute {
            host: host.into_owned(),
            path: path.to_owned(),
        })
    }
}

fn forward_path<B>(route: &Route, request: &Request<B>) -> Result<PathAndQuery, ProxyError> {
    if !route.strip_prefix {
        if let Some(kept) = request.uri().path_and_query() {
            return Ok(kept.clone());
        }
    }
    let path = request.uri().path();
    let kept = if route.strip_prefix {
        let rest = path
            .strip_prefix(route.path_prefix.trim_end_matches('/'))
            .unwrap_or(path);
        if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        }
    } else {
        path.to_owned()
    };
    let full = match request.uri().query() {
        Some(query) => format!("{kept}?{query}"),
        None => kept,
    };
    full.parse()
        .map_err(|_| ProxyError::BadRequest("malformed request target".into()))
}
