//! The Salesforce session of each request: taken from the cache, put where the request's API
//! reads it, and renewed once when Salesforce says it expired.
//!
//! Salesforce never says how long a session lives; it answers 401 `INVALID_SESSION_ID` (Bulk API
//! 1.0: 400 `InvalidSessionId`; SOAP: the 500 fault `sf:INVALID_SESSION_ID`) when it is gone.
//! This layer puts the session on the request (for a SOAP call, in its envelope: [`envelope`]) and hands it down with its [`Expiry`] policy; the
//! replay layer below sends it again when the policy says so: the policy drops *that* session,
//! mints a new one and puts it on the next send, once; the second answer goes to the caller
//! whatever it is. A request whose body streamed (over `replay_limit`) cannot be sent again: its
//! session is still dropped, so the caller's retry gets a new one. A 401 saying the session "is
//! not valid for use with the REST API" is a setup problem a new token cannot fix: it is passed
//! on, not replayed.
//!
//! What a caller sends can never take the credentials away: its hop-by-hop headers, and every
//! header its `Connection` names, are stripped here, before the session is added (a
//! `Connection: authorization` would otherwise have the upstream stage strip the bearer, and each
//! request would cost a login). Two more rules bound what an expiry answer can cost: a request
//! whose session was minted by its own login is not replayed (a new session would not be
//! different), and the cache keeps a session that "expires" again within seconds of the last
//! drop ([`SessionCache::invalidate`]), so such a request is answered without a replay.
//!
//! The session of a route is shared by all its callers, so what would end it is answered here
//! and never sent: OAuth's revoke (`/services/oauth2/revoke`), and SOAP's `logout()` and
//! `invalidateSessions()`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

mod envelope;

use http::{Request, Response, StatusCode, header};
use tower::{Layer, Service, ServiceExt};

use crate::{
    body::{self, Buffered, ProxyBody, buffer_up_to},
    context::{Answer, Destination, Notes, Policy, RouteMatch, Verdict},
    error::{ProxyError, error_chain},
    salesforce::{
        cache::{SessionCache, Source},
        credential::{self, Api},
        expiry::{self, MAX_EXPIRY_BODY},
        soap::{
            api::soap_api,
            envelope::{Limits, Template},
        },
        token::{Session, TokenClient},
    },
    upstream::{failure::failure_class, hop::strip_hop_by_hop},
};

/// What the session layer needs besides the request: the cache (shared across reloads) and the
/// token client of the current config.
#[derive(Clone)]
pub(crate) struct SessionLayer {
    sessions: Arc<SessionSource>,
}

pub(crate) struct SessionSource {
    pub(crate) cache: SessionCache,
    pub(crate) tokens: TokenClient,
    /// How much of a SOAP envelope is read to put the session in it.
    pub(crate) envelopes: Limits,
}

impl SessionLayer {
    pub(crate) fn new(cache: SessionCache, tokens: TokenClient, envelopes: Limits) -> Self {
        Self {
            sessions: Arc::new(SessionSource {
                cache,
                tokens,
                envelopes,
            }),
        }
    }
}

/// OAuth's revoke endpoint, on the login hosts and every instance.
const REVOKE_PATH: &str = "/services/oauth2/revoke";

impl<S> Layer<S> for SessionLayer {
    type Service = Sessions<S>;
    fn layer(&self, inner: S) -> Sessions<S> {
        Sessions {
            inner,
            sessions: self.sessions.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Sessions<S> {
    inner: S,
    sessions: Arc<SessionSource>,
}

impl<S> Service<Request<ProxyBody>> for Sessions<S>
where
    S: Service<(Request<ProxyBody>, Expiry), Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Readiness is checked on the clone that serves the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        Box::pin(serve(self.inner.clone(), self.sessions.clone(), request))
    }
}

async fn serve<S>(
    mut inner: S,
    sessions: Arc<SessionSource>,
    mut request: Request<ProxyBody>,
) -> Answer
where
    S: Service<(Request<ProxyBody>, Expiry), Response = Response<ProxyBody>, Error = ProxyError>,
{
    // Before anything of sfproxy's is added: nothing the caller's `Connection` names can reach
    // the credentials. Identify has read `Proxy-Authorization` already.
    strip_hop_by_hop(request.headers_mut());
    let matched = request
        .extensions_mut()
        .remove::<RouteMatch>()
        .ok_or_else(|| ProxyError::Internal("session reached without a route".into()))?;
    let path = matched.path.path();
    if is_revoke(path) {
        return Ok(revoked(&matched.route.name));
    }
    let (mut request, soap, inflating) = match soap_api(request.method(), path) {
        None => (request, None, None),
        Some(api) => {
            let route = &matched.route.name;
            match envelope::open(request, api, &sessions.envelopes, route).await? {
                envelope::Opened::Call(request, call) => {
                    let call = *call;
                    (request, Some(call.template), Some(call.inflating))
                }
                envelope::Opened::Answered(answer) => return Ok(answer),
            }
        }
    };
    let notes = request.extensions().get::<Arc<Notes>>().cloned();
    let (org, user) = (&matched.route.org, matched.route.user.as_str());
    let (session, source) = sessions
        .cache
        .get(org, user, &sessions.tokens, &matched.metrics.org)
        .await
        .map_err(|e| ProxyError::login(&org.name, user, &e))?;
    let api = match soap {
        Some(_) => Api::Soap,
        None => Api::of(matched.path.path()),
    };
    // On the request itself, where the caller's headers have room, not on each send's copy of
    // them (copied to their length, they would grow for it).
    credential::attach(request.headers_mut(), api, &session.token);
    let expiry = Expiry {
        api,
        soap,
        matched,
        session,
        source,
        notes,
        sessions,
        replayed: false,
    };
    expiry.note(source.as_str());
    let answer = inner.ready().await?.call((request, expiry)).await;
    match inflating {
        Some(inflating) => inflating.judge(answer),
        None => answer,
    }
}

/// Whether `path` is OAuth's revoke endpoint, however it is written: any case, a trailing slash,
/// escapes (a server that normalises paths would take them all for it).
fn is_revoke(path: &str) -> bool {
    // Every request asks: without an escape, a comparison (lengths first) tells.
    if !path.contains('%') {
        return path.trim_end_matches('/').eq_ignore_ascii_case(REVOKE_PATH);
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded
        .trim_end_matches('/')
        .eq_ignore_ascii_case(REVOKE_PATH)
}

/// Revoke's answer, 200 with no body, as Salesforce gives it: the route's session lives on.
fn revoked(route: &str) -> Response<ProxyBody> {
    tracing::info!(
        route,
        "answered the token revoke here: it would end the session every caller of the route \
         shares"
    );
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(0));
    response
}

/// The session layer's replay policy: says where every send goes, and "again", once, with a new
/// session, when Salesforce answers that it expired.
pub(crate) struct Expiry {
    sessions: Arc<SessionSource>,
    matched: RouteMatch,
    api: Api,
    /// A SOAP call's envelope head, which each send writes its session into.
    soap: Option<Template>,
    session: Arc<Session>,
    source: Source,
    notes: Option<Arc<Notes>>,
    /// Replayed once, with a new session (the request carries the first): the next answer goes
    /// back whatever it is.
    replayed: bool,
}

impl Expiry {
    fn note(&self, source: &'static str) {
        if let Some(notes) = &self.notes {
            notes.set_session(source);
        }
    }

    /// Whether Salesforce said the session expired; the answer comes back intact either way.
    async fn read(&self, answer: Answer) -> Result<(Response<ProxyBody>, bool), ProxyError> {
        let (parts, body) = answer?.into_parts();
        match buffer_up_to(body, MAX_EXPIRY_BODY).await {
            Ok(Buffered::Complete(bytes)) => {
                let expired = expiry::says_session_expired(self.api, &parts.headers, &bytes);
                Ok((Response::from_parts(parts, body::full(bytes)), expired))
            }
            Ok(Buffered::Streaming(body)) => Ok((Response::from_parts(parts, body), false)),
            Err(error) => {
                tracing::warn!(detail = %error_chain(&error), "the instance's answer was cut off");
                Err(ProxyError::UpstreamUnreachable {
                    org: self.matched.route.org.name.clone(),
                    instance: self.session.instance.to_string(),
                    reason: format!(
                        "the answer was cut off: {}",
                        failure_class(&error, "instance")
                    ),
                })
            }
        }
    }

    async fn invalidate(&self) {
        let route = &self.matched.route;
        self.sessions
            .cache
            .invalidate(&route.org, &route.user, &self.session)
            .await;
    }

    async fn renew(&mut self, answer: Answer) -> Verdict {
        let (response, expired) = match self.read(answer).await {
            Ok(read) => read,
            Err(error) => return Verdict::Answer(Err(error)),
        };
        if !expired {
            return Verdict::Answer(Ok(response));
        }
        self.invalidate().await;
        if self.source == Source::Minted {
            tracing::warn!(
                "Salesforce refused the session this request's own login just minted; the answer \
                 goes back, not replayed"
            );
            return Verdict::Answer(Ok(response));
        }
        let route = &self.matched.route;
        let (org, user) = (&route.org, route.user.as_str());
        let fresh = match self
            .sessions
            .cache
            .get(org, user, &self.sessions.tokens, &self.matched.metrics.org)
            .await
        {
            Ok((fresh, _)) => fresh,
            Err(error) => return Verdict::Answer(Err(ProxyError::login(&org.name, user, &error))),
        };
        if Arc::ptr_eq(&fresh, &self.session) {
            // The cache kept it: it expired again within seconds of the last drop.
            return Verdict::Answer(Ok(response));
        }
        self.note("replayed");
        metrics::counter!(
            crate::metrics::SESSION_REPLAYS,
            "route" => route.name.to_string()
        )
        .increment(1);
        tracing::info!("session expired; replaying the request once with a new session");
        self.session = fresh;
        self.replayed = true;
        Verdict::Again
    }
}

impl Policy for Expiry {
    /// The [`Destination`], the only extension upstream reads; on the replay, the new session
    /// in place of the one the request carries; a SOAP call's envelope, whole, with this send's
    /// session.
    fn prepare(&self, request: &mut Request<ProxyBody>) {
        if let Some(template) = &self.soap {
            envelope::prepare(template, request, &self.session.token);
        } else if self.replayed {
            credential::attach(request.headers_mut(), self.api, &self.session.token);
        }
        request.extensions_mut().insert(Destination {
            target: self.matched.clone(),
            instance: self.session.instance.clone(),
        });
    }

    fn wants(&self, answer: &Answer) -> bool {
        let may_say = |r: &Response<ProxyBody>| expiry::may_say_expired(r.status(), self.api);
        !self.replayed && answer.as_ref().is_ok_and(may_say)
    }

    async fn judge(&mut self, answer: Answer) -> Verdict {
        self.renew(answer).await
    }

    async fn last(&mut self, answer: Answer) -> Answer {
        let (response, expired) = self.read(answer).await?;
        if expired {
            self.invalidate().await;
            tracing::warn!(
                "session expired; the request body is larger than replay_limit, so it was not \
                 replayed"
            );
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests;
