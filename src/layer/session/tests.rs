//! The session layer over the replay layer and a fake instance, with sessions minted by the
//! stand-in org: where the session goes, and when a request is sent again with a new one.

use std::sync::Mutex;

use http::{HeaderValue, StatusCode, header, uri::PathAndQuery};
use http_body_util::BodyExt;
use tower::util::BoxCloneService;

use super::*;
use crate::{
    config::Route,
    layer::replay::{ReplayLayer, ResendRefused},
    metrics::{OrgMetrics, RouteHandles, RouteMetrics},
    mock_org::MockOrg,
};

const EXPIRED: &str =
    r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
const NOT_FOR_REST: &str = r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#;
const BULK_EXPIRED: &str = "<error><exceptionCode>InvalidSessionId</exceptionCode></error>";

struct TestOrg {
    mock: MockOrg,
    cache: SessionCache,
    tokens: TokenClient,
    route: Arc<Route>,
    metrics: Arc<RouteHandles>,
}

async fn org() -> TestOrg {
    let (mock, tokens, org) = crate::salesforce::fixture::standin().await;
    let route = Arc::new(Route {
        name: "erp".into(),
        hosts: Vec::new(),
        path_prefix: "/".into(),
        strip_prefix: false,
        org,
        user: "u".into(),
        clients: None,
        logins: false,
    });
    let metrics = Arc::new(RouteHandles {
        route: RouteMetrics::new(route.name.clone()),
        org: Arc::new(OrgMetrics::new(&route.org.name)),
    });
    TestOrg {
        mock,
        cache: SessionCache::default(),
        tokens,
        route,
        metrics,
    }
}

impl TestOrg {
    async fn session(&self) -> (Arc<Session>, Source) {
        let org = &self.route.org;
        self.cache
            .get(org, "u", &self.tokens, &self.metrics.org)
            .await
            .unwrap()
    }
}

/// What one send carried.
#[derive(Debug, Clone)]
struct Sent {
    authorization: Option<HeaderValue>,
    sfdc_session: Option<HeaderValue>,
    destination: bool,
    body: bytes::Bytes,
}

/// An instance that answers the sends numbered in `expire` (from 1) with `status` and
/// `error`, the others 200.
fn instance(
    expire: &'static [usize],
    status: StatusCode,
    error: &'static str,
    seen: Arc<Mutex<Vec<Sent>>>,
) -> BoxCloneService<Request<ProxyBody>, Response<ProxyBody>, ProxyError> {
    BoxCloneService::new(tower::service_fn(move |request: Request<ProxyBody>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let number = {
                let mut seen = seen.lock().unwrap();
                seen.push(Sent {
                    authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
                    sfdc_session: parts.headers.get("x-sfdc-session").cloned(),
                    destination: parts.extensions.get::<Destination>().is_some(),
                    body,
                });
                seen.len()
            };
            let mut response = Response::new(body::empty());
            if expire.contains(&number) {
                response = Response::new(body::full(error));
                *response.status_mut() = status;
            }
            Ok(response)
        }
    }))
}

struct Served {
    answer: Answer,
    sent: Vec<Sent>,
    note: Option<&'static str>,
}

async fn serve_one(
    org: &TestOrg,
    (expire, status, error): (&'static [usize], StatusCode, &'static str),
    path: &'static str,
    body: ProxyBody,
    limit: usize,
) -> Served {
    let seen = Arc::default();
    let stack = SessionLayer::new(
        org.cache.clone(),
        org.tokens.clone(),
        crate::salesforce::soap::envelope::Limits {
            max_header_bytes: 16 * 1024,
            max_body: 1 << 30,
        },
    )
    .layer(
        ReplayLayer::new(limit, ResendRefused::default()).layer(instance(
            expire,
            status,
            error,
            Arc::clone(&seen),
        )),
    );
    let notes = Arc::new(Notes::default());
    let mut request = Request::new(body);
    request.extensions_mut().insert(RouteMatch {
        route: org.route.clone(),
        path: PathAndQuery::from_static(path),
        metrics: org.metrics.clone(),
    });
    request.extensions_mut().insert(notes.clone());
    let headers = request.headers_mut();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer mine"),
    );
    headers.insert("x-sfdc-session", HeaderValue::from_static("mine"));
    // What the caller's `Connection` names goes before the session is put on.
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("authorization"),
    );
    let answer = stack.oneshot(request).await;
    let sent = seen.lock().unwrap().clone();
    Served {
        answer,
        sent,
        note: notes.session(),
    }
}

const REST: &str = "/services/data/v61.0/limits";
const EXPIRES_FIRST: (&[usize], StatusCode, &str) = (&[1], StatusCode::UNAUTHORIZED, EXPIRED);

fn status(answer: &Answer) -> Option<StatusCode> {
    answer.as_ref().ok().map(|r| r.status())
}

#[tokio::test]
async fn an_expired_session_is_replayed_once_with_a_new_one() {
    let org = org().await;
    let (old, _) = org.session().await;
    let served = serve_one(&org, EXPIRES_FIRST, REST, body::full("payload"), 1024).await;
    assert_eq!(status(&served.answer), Some(StatusCode::OK));
    assert_eq!(served.note, Some("replayed"));
    let (new, source) = org.session().await;
    assert_eq!(source, Source::Cache, "the replay's session is cached");
    assert!(!Arc::ptr_eq(&old, &new));
    let auth: Vec<_> = served
        .sent
        .iter()
        .map(|s| s.authorization.clone())
        .collect();
    assert_eq!(auth, [Some(old.token.bearer()), Some(new.token.bearer())]);
    assert!(
        served
            .sent
            .iter()
            .all(|s| s.destination && s.body == "payload")
    );
    assert!(served.sent.iter().all(|s| s.sfdc_session.is_none()));
    assert_eq!(org.mock.token_requests(), 2);
}

#[tokio::test]
async fn a_new_session_expiring_again_at_once_is_kept_and_not_replayed() {
    let org = org().await;
    org.session().await;
    let served = serve_one(&org, EXPIRES_FIRST, REST, body::empty(), 1024).await;
    assert_eq!(served.note, Some("replayed"));
    let (renewed, _) = org.session().await;
    // Moments after that renewal, the new session "expires" too: the cache keeps it.
    let served = serve_one(&org, EXPIRES_FIRST, REST, body::empty(), 1024).await;
    assert_eq!(status(&served.answer), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(served.sent.len(), 1, "not replayed with the same session");
    assert_eq!(served.note, Some("cache"));
    assert!(Arc::ptr_eq(&org.session().await.0, &renewed));
    assert_eq!(org.mock.token_requests(), 2);
}

#[tokio::test]
async fn a_session_its_own_login_minted_is_not_replayed() {
    let org = org().await;
    let served = serve_one(&org, EXPIRES_FIRST, REST, body::empty(), 1024).await;
    assert_eq!(served.sent.len(), 1, "not replayed");
    assert_eq!(served.note, Some("minted"));
    let answer = served.answer.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, EXPIRED, "the answer goes back intact");
    assert_eq!(
        org.session().await.1,
        Source::Minted,
        "but its session is dropped"
    );
}

#[tokio::test]
async fn a_body_over_replay_limit_is_sent_once_and_its_session_dropped() {
    let org = org().await;
    org.session().await;
    let served = serve_one(&org, EXPIRES_FIRST, REST, body::full("x".repeat(100)), 64).await;
    assert_eq!(status(&served.answer), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(served.sent.len(), 1, "not replayed");
    assert_eq!(served.note, Some("cache"));
    assert_eq!(
        org.session().await.1,
        Source::Minted,
        "its session was dropped"
    );
}

#[tokio::test]
async fn a_session_not_valid_for_rest_is_not_an_expiry() {
    let org = org().await;
    let (old, _) = org.session().await;
    let not_for_rest = (&[1][..], StatusCode::UNAUTHORIZED, NOT_FOR_REST);
    let served = serve_one(&org, not_for_rest, REST, body::empty(), 1024).await;
    assert_eq!(status(&served.answer), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(served.sent.len(), 1, "not replayed");
    assert!(Arc::ptr_eq(&org.session().await.0, &old), "nor dropped");
}

#[tokio::test]
async fn bulk_v1_gets_the_session_in_its_header_and_its_400_expiry_is_replayed() {
    let org = org().await;
    let (old, _) = org.session().await;
    let bulk_expired = (&[1][..], StatusCode::BAD_REQUEST, BULK_EXPIRED);
    let path = "/services/async/61.0/job";
    let served = serve_one(&org, bulk_expired, path, body::empty(), 1024).await;
    assert_eq!(status(&served.answer), Some(StatusCode::OK));
    let (new, _) = org.session().await;
    let sessions: Vec<_> = served.sent.iter().map(|s| s.sfdc_session.clone()).collect();
    assert_eq!(sessions, [Some(old.token.raw()), Some(new.token.raw())]);
    assert_eq!(served.sent[1].authorization, Some(new.token.bearer()));
    // A REST 400 is not read for an expiry.
    let served = serve_one(&org, bulk_expired, REST, body::empty(), 1024).await;
    assert_eq!(status(&served.answer), Some(StatusCode::BAD_REQUEST));
    assert_eq!(served.sent.len(), 1);
}

#[test]
fn revoke_is_told_however_its_path_is_written() {
    for path in [
        "/services/oauth2/revoke",
        "/services/oauth2/revoke/",
        "/services/OAuth2/Revoke",
        "/services/oauth2/revok%65",
        "/services%2Foauth2%2frevoke",
    ] {
        assert!(super::is_revoke(path), "{path}");
    }
    for path in [
        "/services/oauth2/token",
        "/services/oauth2/revokes",
        "/services/data/v61.0/oauth2/revoke",
        "/",
    ] {
        assert!(!super::is_revoke(path), "{path}");
    }
}
