//! What a request carries from one stage to the next, in its extensions: defined here and only
//! here, so the stages depend on this module and never on each other.
//!
//! In the order the stages add them: the server sets [`ClientAddr`] (and [`Tunnel`] inside a
//! tunnel), trace sets [`Notes`], identify a [`Caller`], route a [`RouteMatch`] (or answers a
//! CONNECT with a [`TunnelGrant`]), session a [`Destination`]. The session layer also hands the
//! replay layer a [`Policy`] with each request: when to send it again, and what each send carries.
//!
//! With legacy logins on, a caller may be named by what its request carries rather than by its
//! address or `Proxy-Authorization`: identify then marks it [`Unidentified`], route picks a
//! route with `logins = true` for it and marks the match [`Provisional`], and the logins stage
//! names the caller (or refuses it), passing a SOAP call it opened on as a [`SoapCall`].

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use http::{Request, Response, uri::PathAndQuery};

use crate::{
    body::ProxyBody,
    config::{InstanceUrl, Route},
    error::ProxyError,
    intercept::Intercept,
    metrics::RouteHandles,
    salesforce::soap::{
        api::SoapApi,
        envelope::{Operation, Template},
        inflating::Inflating,
    },
};

/// The peer address of the connection, set by the server for every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// The identified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) name: Arc<str>,
}

/// A caller neither its address nor `Proxy-Authorization` names, let on because legacy logins
/// may name it by what its request carries; `refusal` is the 407 it gets if nothing does.
#[derive(Debug, Clone)]
pub(crate) struct Unidentified {
    pub(crate) refusal: String,
}

/// On a [`RouteMatch`] chosen for a caller the route does not (yet) admit: a route with
/// `logins = true` serving the target, for the logins stage to admit the caller to, or refuse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Provisional;

/// Every route with `logins = true` that serves the request's target, in file order, each matched
/// as if chosen: a legacy login's username, or a handed-out session id's route, picks among them.
/// Set by route when there is one.
#[derive(Debug, Clone)]
pub(crate) struct LoginRoutes(pub(crate) Vec<RouteMatch>);

/// A SOAP call whose envelope was opened to its Body before the session stage: the request's
/// body is the envelope's rest.
#[derive(Clone)]
pub(crate) struct SoapCall {
    pub(crate) api: SoapApi,
    pub(crate) template: Template,
    pub(crate) operation: Option<Operation>,
    /// The caller's own `sessionId`, if it sent one: a credential, never logged.
    pub(crate) presented: Option<String>,
    pub(crate) inflating: Inflating,
}

/// What the layers learn about a request, shared through its extensions (replays included), for
/// the one log line and the request metrics.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    client: OnceLock<Arc<str>>,
    route: OnceLock<(Arc<Route>, Arc<RouteHandles>)>,
    session: Mutex<Option<&'static str>>,
}

impl Notes {
    pub(crate) fn set_client(&self, client: Arc<str>) {
        let _ = self.client.set(client);
    }

    pub(crate) fn set_route(&self, route: Arc<Route>, metrics: Arc<RouteHandles>) {
        let _ = self.route.set((route, metrics));
    }

    /// `cache`, `minted` or `replayed`; the last word wins.
    pub(crate) fn set_session(&self, source: &'static str) {
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    pub(crate) fn client(&self) -> Option<&Arc<str>> {
        self.client.get()
    }

    pub(crate) fn route(&self) -> Option<&Arc<Route>> {
        self.route.get().map(|(route, _)| route)
    }

    /// The metric handles of the chosen route.
    pub(crate) fn route_metrics(&self) -> Option<&Arc<RouteHandles>> {
        self.route.get().map(|(_, metrics)| metrics)
    }

    pub(crate) fn session(&self) -> Option<&'static str> {
        *self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The chosen route, its metric handles, and the path and query to send to the instance
/// (`strip_prefix` applied).
#[derive(Debug, Clone)]
pub(crate) struct RouteMatch {
    pub(crate) route: Arc<Route>,
    pub(crate) metrics: Arc<RouteHandles>,
    pub(crate) path: PathAndQuery,
}

/// Where the request goes: the route's path on the instance its session is valid for; set by
/// the session layer, the only extension upstream reads.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) target: RouteMatch,
    pub(crate) instance: InstanceUrl,
}

/// An accepted CONNECT, as the route layer grants it on the answer: the server then opens the
/// tunnel.
#[derive(Clone, Debug)]
pub(crate) struct TunnelGrant {
    pub(crate) host: String,
    /// `None`: opened for legacy logins' callers, who are named inside, request by request.
    pub(crate) caller: Option<Caller>,
    pub(crate) inside: Inside,
}

/// What a tunnel carries, by the port it was asked for.
#[derive(Clone, Debug)]
pub(crate) enum Inside {
    /// Port 443: TLS, terminated with a leaf of the interception CA.
    Tls(Arc<Intercept>),
    /// Port 80: plain HTTP.
    Plain,
}

impl Inside {
    pub(crate) fn port(&self) -> u16 {
        match self {
            Inside::Tls(_) => 443,
            Inside::Plain => 80,
        }
    }
}

/// Set on every request that arrives inside a tunnel: the caller identified on the CONNECT, and
/// the host the tunnel is for (which decides the route, whatever `Host` the request carries).
#[derive(Clone, Debug)]
pub(crate) struct Tunnel {
    pub(crate) host: String,
    /// `None`: each request inside names its caller (legacy logins).
    pub(crate) caller: Option<Caller>,
}

/// An answer from the stages below, as a replay [`Policy`] judges it.
pub(crate) type Answer = Result<Response<ProxyBody>, ProxyError>;

/// What a [`Policy`] says of an answer.
pub(crate) enum Verdict {
    /// Pass this answer on (whole, if the policy read its body).
    Answer(Answer),
    /// Drop this answer and send the kept request once more.
    Again,
}

/// When the replay layer sends a request once more, and what every send of it carries. The
/// replay layer keeps the request and follows its policies, knowing nothing of why; the policy
/// knows why, and nothing of how the request is kept.
pub(crate) trait Policy {
    /// Readies one send: `request` is a copy of the kept request (method, URI, version,
    /// headers, body), without extensions.
    fn prepare(&self, _request: &mut Request<ProxyBody>) {}

    /// Cheap and synchronous, asked of every answer: whether it may call for another send. Most
    /// answers do not, and go back at once, without [`judge`](Policy::judge)'s future.
    fn wants(&self, answer: &Answer) -> bool;

    /// Judges an answer `wants` picked, when the request can be sent again. A policy bounds its
    /// own sends: the replay layer sends again as often as it says `Again`.
    fn judge(&mut self, answer: Answer) -> impl Future<Output = Verdict> + Send;

    /// Sees an answer `wants` picked when the request cannot be sent again (its body streamed
    /// on, over the replay limit), to act on it; gives it back.
    fn last(&mut self, answer: Answer) -> impl Future<Output = Answer> + Send {
        std::future::ready(answer)
    }
}
