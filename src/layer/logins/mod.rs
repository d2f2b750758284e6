//! Legacy logins, answered here: SOAP `login()` and the token endpoint's password and
//! client-credentials grants ([`login`]), and the session ids sfproxy hands out at them, read
//! wherever Salesforce reads a session ([`admit`]).
//!
//! Only requests the route stage found a route with `logins = true` for ([`LoginRoutes`]) are
//! looked at; the rest pass straight through. On those, what the request carries names the
//! caller: a login's password is a client's secret, a handed-out id names its client and route.
//! A caller the route does not admit as it is ([`Provisional`]) goes no further without one, and
//! gets Salesforce's own `INVALID_SESSION_ID`, on which a legacy client logs in again; so does
//! any session id sfproxy did not seal. The real session never leaves sfproxy: the session stage
//! below swaps it in.

mod admit;
mod desk;
mod failures;
mod login;
mod user_info;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use http::{Method, Request, Response, header};
use tower::{Layer, Service};

use self::desk::{Below, From};
pub(crate) use self::desk::{Desk, LoginsKept};
use crate::{
    body::ProxyBody,
    context::{Answer, Caller, ClientAddr, LoginRoutes, Notes, Provisional, RouteMatch, Tunnel},
    error::ProxyError,
    salesforce::{
        credential::Api,
        soap::{api::soap_api, call},
    },
};

/// The token endpoint, on the login hosts and every instance.
const TOKEN_PATH: &str = "/services/oauth2/token";

/// `None`: legacy logins are off, and every request passes straight through.
#[derive(Clone)]
pub(crate) struct LoginsLayer {
    desk: Option<Arc<Desk>>,
}

impl LoginsLayer {
    pub(crate) fn new(desk: Option<Desk>) -> Self {
        Self {
            desk: desk.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for LoginsLayer {
    type Service = Logins<S>;
    fn layer(&self, inner: S) -> Logins<S> {
        Logins {
            inner,
            desk: self.desk.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Logins<S> {
    inner: S,
    desk: Option<Arc<Desk>>,
}

type Boxed = Pin<Box<dyn Future<Output = Answer> + Send>>;

impl<S: Below> Service<Request<ProxyBody>> for Logins<S> {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Either<S::Future, Boxed>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        let Some(desk) = &self.desk else {
            return Either::Left(self.inner.call(request));
        };
        let Some(LoginRoutes(candidates)) = request.extensions_mut().remove::<LoginRoutes>() else {
            return Either::Left(self.inner.call(request));
        };
        let inner = self.inner.clone();
        Either::Right(Box::pin(serve(inner, desk.clone(), candidates, request)))
    }
}

/// [`look_at`], and the caller the route stage identified noted for the log when what the
/// request carried named none (a refusal, say).
async fn serve<S: Below>(
    inner: S,
    desk: Arc<Desk>,
    candidates: Vec<RouteMatch>,
    request: Request<ProxyBody>,
) -> Answer {
    let provisional = request.extensions().get::<Provisional>().is_some();
    let identified = match provisional {
        true => None,
        false => request.extensions().get::<Caller>().map(|c| c.name.clone()),
    };
    let notes = request.extensions().get::<Arc<Notes>>().cloned();
    let answer = look_at(inner, desk, candidates, request).await;
    if let (Some(notes), Some(client)) = (notes, identified) {
        // A no-op when the stage noted the client a login or id named.
        notes.set_client(client);
    }
    answer
}

async fn look_at<S: Below>(
    inner: S,
    desk: Arc<Desk>,
    candidates: Vec<RouteMatch>,
    mut request: Request<ProxyBody>,
) -> Answer {
    let provisional = request.extensions_mut().remove::<Provisional>().is_some();
    let source = request
        .extensions()
        .get::<ClientAddr>()
        .map(|ClientAddr(peer)| peer.ip().to_canonical())
        .ok_or_else(|| ProxyError::Internal("request without a peer address".into()))?;
    // The client named by the request's own Proxy-Authorization, or by its tunnel's CONNECT.
    let named = request.headers().contains_key(header::PROXY_AUTHORIZATION)
        || request
            .extensions()
            .get::<Tunnel>()
            .is_some_and(|tunnel| tunnel.caller.is_some());
    let proxy_client = match named {
        true => request.extensions().get::<Caller>().map(|c| c.name.clone()),
        false => None,
    };
    let from = From {
        source,
        proxy_client,
    };
    let matched = request
        .extensions()
        .get::<RouteMatch>()
        .cloned()
        .ok_or_else(|| ProxyError::Internal("logins reached without a route".into()))?;
    let path = matched.path.path();
    let bulk_v1 = Api::of(path) == Api::BulkV1;
    if request.method() == Method::POST
        && path.trim_end_matches('/').eq_ignore_ascii_case(TOKEN_PATH)
    {
        return login::token(inner, &desk, &from, &candidates, request).await;
    }
    let presented = match soap_api(request.method(), path) {
        Some(api) => {
            let (opened, mut soap) = call::open(request, api, &desk.envelopes).await?;
            if soap
                .operation
                .as_ref()
                .is_some_and(crate::salesforce::login::soap::is_login)
            {
                return login::soap(inner, &desk, &from, &candidates, opened, soap).await;
            }
            request = opened;
            let presented = soap.presented.take();
            request.extensions_mut().insert(soap);
            presented
        }
        None => admit::from_headers(request.headers_mut()),
    };
    match presented {
        Some(presented) => {
            let (client, chosen) = admit::admit(&desk, &from, &candidates, &presented, bulk_v1)?;
            enter(&mut request, client, chosen);
        }
        None if provisional => {
            tracing::warn!(
                source = %from.source,
                "refused: no session id sfproxy handed out, on a route with logins = true; \
                 answered INVALID_SESSION_ID so the client logs in"
            );
            return Err(ProxyError::InvalidSession { bulk_v1 });
        }
        None => {
            if let Some(notes) = request.extensions().get::<Arc<Notes>>() {
                notes.set_route(matched.route.clone(), matched.metrics.clone());
            }
        }
    }
    let mut inner = inner;
    tower::ServiceExt::ready(&mut inner)
        .await?
        .call(request)
        .await
}

/// The caller and route a handed-out id named, on the request for the stages below.
fn enter(request: &mut Request<ProxyBody>, client: Arc<str>, chosen: RouteMatch) {
    if let Some(notes) = request.extensions().get::<Arc<Notes>>() {
        notes.set_client(client.clone());
        notes.set_route(chosen.route.clone(), chosen.metrics.clone());
    }
    request.extensions_mut().insert(Caller { name: client });
    request.extensions_mut().insert(chosen);
}
