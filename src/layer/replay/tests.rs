//! The replay layer over a fake upstream: what it sends, and how often, under each policy.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::util::BoxCloneService;

use super::*;
use crate::body::{self, BodyError};

/// What one send carried.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    method: Method,
    kept: Option<HeaderValue>,
    credential: Option<HeaderValue>,
    body: Bytes,
}

type Seen = Arc<Mutex<Vec<Sent>>>;

/// An upstream that refuses unprocessed the sends numbered in `refuse` (from 1), answers 401 to
/// those in `expire` and 200 to the others, and records what each send carried.
fn upstream(
    refuse: &'static [usize],
    expire: &'static [usize],
    seen: Seen,
) -> BoxCloneService<Request<ProxyBody>, Response<ProxyBody>, ProxyError> {
    BoxCloneService::new(tower::service_fn(move |request: Request<ProxyBody>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ProxyError::Internal(e.to_string()))?
                .to_bytes();
            let number = {
                let mut seen = seen.lock().unwrap();
                seen.push(Sent {
                    method: parts.method,
                    kept: parts.headers.get("x-kept").cloned(),
                    credential: parts.headers.get("x-credential").cloned(),
                    body,
                });
                seen.len()
            };
            if refuse.contains(&number) {
                return Err(ProxyError::UpstreamRefused {
                    org: "acme".into(),
                    instance: "https://acme.my.salesforce.com".into(),
                    reason: "refused stream before processing any application logic".into(),
                });
            }
            let mut response = Response::new(body::empty());
            if expire.contains(&number) {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok(response)
        }
    }))
}

/// A request's own policy that never asks for another send.
struct Never;

impl Policy for Never {
    fn wants(&self, _answer: &Answer) -> bool {
        false
    }

    fn judge(&mut self, answer: Answer) -> impl Future<Output = Verdict> + Send {
        std::future::ready(Verdict::Answer(answer))
    }
}

/// An expiry-like policy: puts its credential on every send; on the first 401 takes a new one
/// and asks for one more send. Counts the answers it saw when it could not.
struct Renew {
    credential: usize,
    renewed: bool,
    last: Arc<AtomicUsize>,
}

impl Renew {
    fn new() -> (Self, Arc<AtomicUsize>) {
        let last = Arc::new(AtomicUsize::new(0));
        let policy = Self {
            credential: 1,
            renewed: false,
            last: last.clone(),
        };
        (policy, last)
    }
}

impl Policy for Renew {
    fn prepare(&self, request: &mut Request<ProxyBody>) {
        request
            .headers_mut()
            .insert("x-credential", HeaderValue::from(self.credential));
    }

    fn wants(&self, answer: &Answer) -> bool {
        !self.renewed && matches!(answer, Ok(r) if r.status() == StatusCode::UNAUTHORIZED)
    }

    fn judge(&mut self, _answer: Answer) -> impl Future<Output = Verdict> + Send {
        self.credential += 1;
        self.renewed = true;
        std::future::ready(Verdict::Again)
    }

    fn last(&mut self, answer: Answer) -> impl Future<Output = Answer> + Send {
        self.last.fetch_add(1, Ordering::Relaxed);
        std::future::ready(answer)
    }
}

const LIMIT: usize = 64;

async fn send<P: Policy + Send + 'static>(
    refuse: &'static [usize],
    expire: &'static [usize],
    request: Request<ProxyBody>,
    policy: P,
) -> (Answer, Vec<Sent>) {
    let seen = Seen::default();
    let replay = ReplayLayer::new(LIMIT, ResendRefused::default()).layer(upstream(
        refuse,
        expire,
        seen.clone(),
    ));
    let answer = replay.oneshot((request, policy)).await;
    let seen = seen.lock().unwrap().clone();
    (answer, seen)
}

fn request(method: Method, body: ProxyBody) -> Request<ProxyBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    request
        .headers_mut()
        .insert("x-kept", HeaderValue::from_static("yes"));
    request
}

/// A body in chunks, with no size hint: its size is found out by reading it.
fn chunked(parts: &[&'static str]) -> ProxyBody {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

fn sent(method: Method, credential: Option<usize>, body: &'static str) -> Sent {
    Sent {
        method,
        kept: Some(HeaderValue::from_static("yes")),
        credential: credential.map(HeaderValue::from),
        body: Bytes::from_static(body.as_bytes()),
    }
}

fn status(answer: &Answer) -> Option<StatusCode> {
    answer.as_ref().ok().map(|r| r.status())
}

#[tokio::test]
async fn a_request_refused_unprocessed_is_sent_once_more_whole() {
    let (answer, seen) = send(
        &[1],
        &[],
        request(Method::DELETE, chunked(&["pay", "load"])),
        Never,
    )
    .await;
    assert_eq!(status(&answer), Some(StatusCode::OK));
    let once = sent(Method::DELETE, None, "payload");
    assert_eq!(seen, vec![once.clone(), once]);
}

#[tokio::test]
async fn a_bodyless_request_refused_unprocessed_is_sent_once_more() {
    let (answer, seen) = send(&[1], &[], request(Method::GET, body::empty()), Never).await;
    assert_eq!(status(&answer), Some(StatusCode::OK));
    let once = sent(Method::GET, None, "");
    assert_eq!(seen, vec![once.clone(), once]);
}

#[tokio::test]
async fn a_request_refused_twice_is_answered_with_the_refusal() {
    let (answer, seen) = send(&[1, 2, 3], &[], request(Method::GET, body::empty()), Never).await;
    let error = answer.expect_err("refused");
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error.code(), "PROXY_UPSTREAM_UNREACHABLE");
    assert_eq!(seen.len(), 2, "sent more than twice");
}

#[tokio::test]
async fn the_request_policy_readies_every_send_and_each_of_its_sends_may_be_resent() {
    // Refused, resent: 401; renewed, sent again: refused, resent: 200.
    let (policy, last) = Renew::new();
    let (answer, seen) = send(
        &[1, 3],
        &[2],
        request(Method::POST, body::full("payload")),
        policy,
    )
    .await;
    assert_eq!(status(&answer), Some(StatusCode::OK));
    let first = sent(Method::POST, Some(1), "payload");
    let renewed = sent(Method::POST, Some(2), "payload");
    assert_eq!(seen, vec![first.clone(), first, renewed.clone(), renewed]);
    assert_eq!(last.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn the_request_policy_bounds_its_own_sends() {
    let (policy, _) = Renew::new();
    let (answer, seen) = send(&[], &[1, 2, 3], request(Method::GET, body::empty()), policy).await;
    assert_eq!(status(&answer), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(seen.len(), 2, "one send, and the one the policy asked for");
}

#[tokio::test]
async fn a_body_over_the_limit_is_sent_once_and_the_policy_sees_its_answer() {
    let large: &'static str = "x".repeat(LIMIT + 1).leak();
    // Said to be larger (a size hint), or found to be while read: either way it streams, whole.
    for body in [
        body::full(large),
        chunked(&[&large[..LIMIT], &large[LIMIT..]]),
    ] {
        let (policy, last) = Renew::new();
        let (answer, seen) = send(&[], &[1], request(Method::POST, body), policy).await;
        assert_eq!(status(&answer), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(seen, vec![sent(Method::POST, Some(1), large)]);
        assert_eq!(last.load(Ordering::Relaxed), 1, "the policy saw the 401");
    }
    let (answer, seen) = send(&[1], &[], request(Method::PUT, body::full(large)), Never).await;
    assert_eq!(
        answer.map(|r| r.status()).map_err(|e| e.code()),
        Err("PROXY_UPSTREAM_UNREACHABLE")
    );
    assert_eq!(seen.len(), 1, "a streamed body cannot be sent again");
}

#[tokio::test]
async fn an_answer_no_policy_wants_goes_back_after_one_send() {
    let (policy, last) = Renew::new();
    let (answer, seen) = send(&[], &[], request(Method::GET, body::empty()), policy).await;
    assert_eq!(status(&answer), Some(StatusCode::OK));
    assert_eq!(seen, vec![sent(Method::GET, Some(1), "")]);
    assert_eq!(last.load(Ordering::Relaxed), 0);
}
