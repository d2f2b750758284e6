//! The Salesforce session of each request: taken from the cache, injected as the bearer token,
//! and renewed once when Salesforce says it expired.
//!
//! Salesforce never says how long a session lives; it answers 401 `INVALID_SESSION_ID` (Bulk API
//! 1.0: 400 `InvalidSessionId`) when it is gone. (The SOAP API reads the session from the
//! envelope, which the proxy does not touch: SOAP calls are not served with the proxy's session.) Then this
//! layer drops *that* session, mints a new one and sends the request again, once; the second answer
//! goes to the caller whatever it is. To send a body twice it must be kept: bodies up to
//! `replay_limit` are, larger ones stream through and are not replayed (their session is still
//! dropped, so the caller's retry gets a new one). A 401 saying the session "is not valid for use
//! with the REST API" is a setup problem a new token cannot fix: it is passed on, not replayed.
//! The same kept copy sends a request once more when the instance refused it unprocessed.
//!
//! What a caller sends can never take the credentials away: its hop-by-hop headers, and every
//! header its `Connection` names, are stripped here, before the session is added (a
//! `Connection: authorization` would otherwise have the upstream stage strip the bearer, and each
//! request would cost a login). Two more rules bound what an expiry answer can cost: a request
//! whose session was minted by its own login is not replayed (a new session would not be
//! different), and the cache keeps a session that "expires" again within seconds of the last
//! drop ([`SessionCache::invalidate`]), so such a request is answered without a replay.

use std::{
    future::Future,
    io::Read,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, header, request::Parts};
use http_body::Body;
use tower::{Layer, Service, ServiceExt};

use crate::{
    body::{self, Buffered, ProxyBody, buffer_up_to},
    config::Org,
    context::{Destination, Notes, RouteMatch},
    error::{ProxyError, error_chain},
    salesforce::{
        cache::{LoginError, SessionCache, Source},
        token::{Session, TokenClient, TokenError},
    },
    upstream::{failure::failure_class, hop::strip_hop_by_hop},
};

/// Bulk API 1.0 reads the session from `X-SFDC-Session`, not `Authorization`.
const BULK_V1_PREFIX: &str = "/services/async/";
static X_SFDC_SESSION: HeaderName = HeaderName::from_static("x-sfdc-session");
/// Salesforce's expiry answers are tiny; a larger body is something else and streams on.
const MAX_EXPIRY_BODY: usize = 64 * 1024;

/// What the session layer needs besides the request: the cache (shared across reloads), the
/// token client of the current config, and its replay limit.
#[derive(Clone)]
pub struct SessionLayer {
    sessions: Arc<SessionSource>,
}

pub struct SessionSource {
    pub cache: SessionCache,
    pub tokens: TokenClient,
    pub replay_limit: usize,
}

impl SessionLayer {
    pub fn new(cache: SessionCache, tokens: TokenClient, replay_limit: usize) -> Self {
        Self {
            sessions: Arc::new(SessionSource {
                cache,
                tokens,
                replay_limit,
            }),
        }
    }
}

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
pub struct Sessions<S> {
    inner: S,
    sessions: Arc<SessionSource>,
}

impl<S> Service<Request<ProxyBody>> for Sessions<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Readiness is checked on the clone that serves the call (it may call twice).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        Box::pin(serve(self.inner.clone(), self.sessions.clone(), request))
    }
}

async fn serve<S>(
    mut inner: S,
    sessions: Arc<SessionSource>,
    request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
{
    let (mut parts, body) = request.into_parts();
    // Before anything of sfproxy's is added: nothing the caller's `Connection` names can reach
    // the credentials. Identify has read `Proxy-Authorization` already.
    strip_hop_by_hop(&mut parts.headers);
    let matched = parts
        .extensions
        .remove::<RouteMatch>()
        .ok_or_else(|| ProxyError::Internal("session reached without a route".into()))?;
    let notes = parts.extensions.get::<Arc<Notes>>().cloned();
    let note = |source: &'static str| {
        if let Some(notes) = &notes {
            notes.set_session(source);
        }
    };
    let org = &matched.route.org;
    let user = matched.route.user.as_str();
    let path = matched.path.path();
    let (cache, tokens, replay_limit) = (&sessions.cache, &sessions.tokens, sessions.replay_limit);

    let (session, source) = cache
        .get(org, user, tokens, &matched.metrics.org)
        .await
        .map_err(|e| login_error(org, user, &e))?;
    note(source.as_str());

    // The futures of what most requests skip (reading a body, an expiry, a replay) are boxed
    // where they run, so the future of every request is small to move and to keep in flight.
    let body = if body.is_end_stream() {
        Buffered::Complete(Bytes::new())
    } else if body.size_hint().lower() > replay_limit as u64 {
        Buffered::Streaming(body)
    } else {
        Box::pin(buffer_up_to(body, replay_limit))
            .await
            .map_err(|e| ProxyError::CallerGone(error_chain(&e)))?
    };

    let kept = match body {
        Buffered::Complete(bytes) => bytes,
        Buffered::Streaming(body) => {
            let request = with_session(&parts, &matched, body, &session);
            let response = inner.ready().await?.call(request).await?;
            let (response, expired) = inspect(response, path, org, &session).await?;
            if expired {
                Box::pin(cache.invalidate(org, user, &session)).await;
                tracing::warn!(
                    "session expired; the request body is larger than replay_limit, so it was \
                     not replayed"
                );
            }
            return Ok(response);
        }
    };

    let response = send_kept(&mut inner, || {
        with_session(&parts, &matched, body::full(kept.clone()), &session)
    })
    .await?;
    let (response, expired) = inspect(response, path, org, &session).await?;
    if !expired {
        return Ok(response);
    }
    Box::pin(cache.invalidate(org, user, &session)).await;
    if source == Source::Minted {
        tracing::warn!(
            "Salesforce refused the session this request's own login just minted; the answer \
             goes back, not replayed"
        );
        return Ok(response);
    }
    let (fresh, _) = Box::pin(cache.get(org, user, tokens, &matched.metrics.org))
        .await
        .map_err(|e| login_error(org, user, &e))?;
    if Arc::ptr_eq(&fresh, &session) {
        // The cache kept it: it expired again within seconds of the last drop.
        return Ok(response);
    }
    note("replayed");
    metrics::counter!(
        crate::metrics::SESSION_REPLAYS,
        "route" => matched.route.name.to_string()
    )
    .increment(1);
    tracing::info!("session expired; replaying the request once with a new session");
    send_kept(&mut inner, || {
        with_session(&parts, &matched, body::full(kept.clone()), &fresh)
    })
    .await
}

/// Sends a request whose body is kept, and once more if the instance refused it unprocessed
/// (HTTP/2 REFUSED_STREAM, or above a GOAWAY's last stream, as when an instance
/// restarts): nothing of it was acted on. The copy kept for a replay serves; a streamed body
/// is gone, so such a request is answered 502.
async fn send_kept<S>(
    inner: &mut S,
    request: impl Fn() -> Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
{
    match inner.ready().await?.call(request()).await {
        Err(ProxyError::UpstreamRefused { reason, .. }) => {
            tracing::info!(
                reason,
                "the instance refused the request unprocessed; sending it again"
            );
            inner.ready().await?.call(request()).await
        }
        answered => answered,
    }
}

/// The caller's request with this session's credentials, replacing any the caller sent, and its
/// [`Destination`]: the only extension upstream reads.
fn with_session(
    parts: &Parts,
    matched: &RouteMatch,
    body: ProxyBody,
    session: &Session,
) -> Request<ProxyBody> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, session.token.bearer());
    headers.remove(&X_SFDC_SESSION);
    if matched.path.path().starts_with(BULK_V1_PREFIX) {
        headers.insert(X_SFDC_SESSION.clone(), session.token.raw());
    }
    request.extensions_mut().insert(Destination {
        target: matched.clone(),
        instance: session.instance.clone(),
    });
    request
}

/// Whether Salesforce said the session expired; the answer comes back intact either way.
async fn inspect(
    response: Response<ProxyBody>,
    path: &str,
    org: &Org,
    session: &Session,
) -> Result<(Response<ProxyBody>, bool), ProxyError> {
    let status = response.status();
    let may_be_expiry = status == StatusCode::UNAUTHORIZED
        || (status == StatusCode::BAD_REQUEST && path.starts_with(BULK_V1_PREFIX));
    if !may_be_expiry {
        return Ok((response, false));
    }
    Box::pin(read_expiry(response, org, session)).await
}

async fn read_expiry(
    response: Response<ProxyBody>,
    org: &Org,
    session: &Session,
) -> Result<(Response<ProxyBody>, bool), ProxyError> {
    let (parts, body) = response.into_parts();
    match buffer_up_to(body, MAX_EXPIRY_BODY).await {
        Ok(Buffered::Complete(bytes)) => {
            let expired = says_session_expired(&parts.headers, &bytes);
            Ok((Response::from_parts(parts, body::full(bytes)), expired))
        }
        Ok(Buffered::Streaming(body)) => Ok((Response::from_parts(parts, body), false)),
        Err(error) => {
            tracing::warn!(detail = %error_chain(&error), "the instance's answer was cut off");
            Err(ProxyError::UpstreamUnreachable {
                org: org.name.clone(),
                instance: session.instance.to_string(),
                reason: format!(
                    "the answer was cut off: {}",
                    failure_class(&error, "instance")
                ),
            })
        }
    }
}

/// Reads an error body (gzip-decoded if need be) for Salesforce's expired-session codes, by
/// their structure: the `errorCode` of a REST error array (JSON, or XML with an XML `Accept`),
/// Bulk API 1.0's `exceptionCode`. Not a substring of the body: an error that quotes what the
/// caller sent (an entity named `InvalidSessionId`, say) must not cost a login.
fn says_session_expired(headers: &HeaderMap, bytes: &Bytes) -> bool {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let text = if gzip {
        let mut decoded = Vec::new();
        let reader = flate2::read::GzDecoder::new(&bytes[..]).take(MAX_EXPIRY_BODY as u64);
        if std::io::BufReader::new(reader)
            .read_to_end(&mut decoded)
            .is_err()
        {
            return false;
        }
        String::from_utf8_lossy(&decoded).into_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };
    let text = text.trim_start();
    if text.starts_with('[') {
        let Ok(errors) = serde_json::from_str::<Vec<RestError>>(text) else {
            return false;
        };
        return errors
            .iter()
            .any(|e| e.error_code == "INVALID_SESSION_ID" && !e.message.contains(NOT_FOR_REST));
    }
    (text.contains("<errorCode>INVALID_SESSION_ID</errorCode>")
        || text.contains("<exceptionCode>InvalidSessionId</exceptionCode>"))
        && !text.contains(NOT_FOR_REST)
}

/// A session valid for other APIs but not REST: a setup problem no new session cures.
const NOT_FOR_REST: &str = "not valid for use with the REST API";

/// One entry of a REST error array, `{"message":..,"errorCode":..}`.
#[derive(serde::Deserialize)]
struct RestError {
    #[serde(rename = "errorCode", default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

fn login_error(org: &Org, user: &str, error: &Arc<LoginError>) -> ProxyError {
    match &**error {
        LoginError::Failed {
            error: TokenError::Rejected { error, description },
            retry_after,
        } => ProxyError::LoginRejected {
            org: org.name.clone(),
            user: user.to_owned(),
            error: error.clone(),
            description: description.clone(),
            retry_after: Some(*retry_after),
        },
        LoginError::Failed {
            error: TokenError::Unavailable(reason) | TokenError::Transient(reason),
            retry_after,
        } => ProxyError::LoginUnavailable {
            org: org.name.clone(),
            reason: reason.clone(),
            retry_after: Some(*retry_after),
        },
        LoginError::BudgetExceeded { limit, retry_after } => ProxyError::LoginBudgetExceeded {
            org: org.name.clone(),
            user: user.to_owned(),
            limit: *limit,
            retry_after: *retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn expired(body: &str) -> bool {
        says_session_expired(&HeaderMap::new(), &Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn recognises_salesforce_expiry_answers() {
        assert!(expired(
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
        ));
        assert!(expired(
            "<Errors><Error><errorCode>INVALID_SESSION_ID</errorCode></Error></Errors>"
        ));
        assert!(expired(
            "<error><exceptionCode>InvalidSessionId</exceptionCode></error>"
        ));
        assert!(!expired(
            r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#
        ));
        assert!(!expired(r#"[{"errorCode":"NOT_FOUND"}]"#));
        // What an error quotes from the caller's request is not its code.
        assert!(!expired(
            "<error><exceptionCode>InvalidEntity</exceptionCode><exceptionMessage>Entity \
             'InvalidSessionId' is not supported</exceptionMessage></error>"
        ));
        assert!(!expired(
            r#"[{"message":"no such field INVALID_SESSION_ID","errorCode":"INVALID_FIELD"}]"#
        ));
        assert!(!expired(
            "<Errors><Error><errorCode>INVALID_FIELD</errorCode><message>&lt;errorCode&gt;\
             INVALID_SESSION_ID&lt;/errorCode&gt;</message></Error></Errors>"
        ));
    }

    /// An upstream that refuses its first `refusals` requests unprocessed, and records what
    /// each request it was sent carried.
    fn upstream(
        refusals: usize,
        seen: Arc<std::sync::Mutex<Vec<(http::Method, String, Bytes)>>>,
    ) -> impl Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError> {
        tower::service_fn(move |request: Request<ProxyBody>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(|e| ProxyError::Internal(e.to_string()))?
                    .to_bytes();
                let mut seen = seen.lock().unwrap();
                let kept = parts.headers["x-kept"].to_str().unwrap().to_owned();
                seen.push((parts.method, kept, body));
                if seen.len() <= refusals {
                    return Err(ProxyError::UpstreamRefused {
                        org: "acme".into(),
                        instance: "https://acme.my.salesforce.com".into(),
                        reason: "stream error received: refused stream before processing any application logic".into(),
                    });
                }
                Ok(Response::new(body::empty()))
            }
        })
    }

    fn kept_request() -> Request<ProxyBody> {
        let mut request = Request::new(body::full("payload"));
        *request.method_mut() = http::Method::DELETE;
        request
            .headers_mut()
            .insert("x-kept", http::HeaderValue::from_static("yes"));
        request
    }

    #[tokio::test]
    async fn a_request_refused_unprocessed_is_sent_once_more_whole() {
        let seen = Arc::default();
        let mut inner = upstream(1, Arc::clone(&seen));
        let answer = send_kept(&mut inner, kept_request).await;
        assert_eq!(answer.map(|r| r.status()).ok(), Some(StatusCode::OK));
        let seen = seen.lock().unwrap();
        let sent = (
            http::Method::DELETE,
            "yes".to_owned(),
            Bytes::from("payload"),
        );
        assert_eq!(*seen, vec![sent.clone(), sent]);
    }

    #[tokio::test]
    async fn a_request_refused_twice_is_answered_with_the_refusal() {
        let seen = Arc::default();
        let mut inner = upstream(usize::MAX, Arc::clone(&seen));
        let answer = send_kept(&mut inner, kept_request).await;
        let error = answer.expect_err("answered");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(error.code(), "PROXY_UPSTREAM_UNREACHABLE");
        assert_eq!(seen.lock().unwrap().len(), 2, "sent more than twice");
    }

    #[test]
    fn reads_gzip_bodies() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(br#"[{"errorCode":"INVALID_SESSION_ID"}]"#)
            .unwrap();
        let gz = Bytes::from(encoder.finish().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(says_session_expired(&headers, &gz));
    }
}
