//! Sessions end to end: one token request however many callers miss at once, and the replay
//! when Salesforce says a session expired — once, with the body intact, never in a loop; and
//! nothing a caller sends can strip the session or make each request cost a login.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sfproxy::mock_org::{MockUser, TokenFailure};
use support::{Org, Proxy, USER, curl, header, route};

const HOST: &str = "acme.my.salesforce.com";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start(org: &Org, proxy_extra: &str) -> Proxy {
    Proxy::start(&(org.config(proxy_extra, "") + &route("erp", &[HOST], USER, "")))
}

fn url(path: &str) -> String {
    format!("http://{HOST}{path}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_cold_callers_share_one_token_request() {
    let org = Org::start().await;
    // The instance under another name than the token host (as Salesforce's are), so the token
    // request's connection cannot serve the burst.
    let instance = format!(
        "instance_url = \"https://127.0.0.1:{}\"",
        org.mock.addr().port()
    );
    let proxy =
        Proxy::start(&(org.config("workers = 2", &instance) + &route("erp", &[HOST], USER, "")));
    // A slow login, so every caller arrives while the one token request is in flight.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(500)));
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let uri: http::Uri = format!("http://{}/services/data/v61.0/limits", proxy.addr)
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let request = http::Request::get(uri.clone())
                .header("host", HOST)
                .body(Empty::new())
                .unwrap();
            tokio::spawn(async move {
                let response = client.request(request).await.expect("proxy answers");
                let status = response.status();
                response.into_body().collect().await.expect("body");
                status
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        org.mock.token_requests(),
        1,
        "one token request for 1,000 misses"
    );
    assert_eq!(org.mock.requests().len(), 1000);
    assert!(
        org.mock
            .requests()
            .iter()
            .all(|r| r.session_valid && r.http2)
    );
    assert_eq!(
        org.mock.accepted_connections(),
        3,
        "1,000 requests arriving at once share one HTTP/2 connection to the instance per \
         serving thread (2), besides the token request's"
    );
    proxy.wait_for_events("request", 1000).await;
    proxy.settle().await;
    let lines = proxy.events("request");
    assert_eq!(lines.len(), 1000, "one line per request");
    let minted = lines.iter().filter(|e| e["session"] == "minted").count();
    assert_eq!(minted, 1, "exactly one request logged the mint");
    eprintln!("1,000 cold requests answered in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_session_is_renewed_and_the_request_replayed_once() {
    let org = Org::start().await;
    let proxy = start(&org, "");
    let limits = url("/services/data/v61.0/limits");
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);
    assert_eq!(org.mock.token_requests(), 1);

    org.mock.expire_sessions();
    let reply = curl(&["-x", &proxy.url(), &limits]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(org.mock.token_requests(), 2, "one new token");
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 3, "the expired attempt and its single replay");
    assert!(!seen[1].session_valid);
    assert!(seen[2].session_valid);
    let auth = org.seen_authorizations();
    assert_eq!(auth[0], auth[1], "the expired session was tried first");
    assert_ne!(auth[1], auth[2], "the replay used the new session");
    proxy.settle().await;
    assert_eq!(
        proxy.events("request").last().unwrap()["session"],
        "replayed"
    );

    // The new session is cached: the next call needs no login.
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);
    assert_eq!(org.mock.token_requests(), 2);

    // An XML-speaking caller gets the same treatment (Salesforce answers the 401 in XML). On a
    // proxy of its own: a session refused moments after the last renewal is kept (see
    // `sessions_refused_at_once_cost_one_renewal_not_a_login_per_request`).
    let org = Org::start().await;
    let proxy = start(&org, "");
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);
    org.mock.expire_sessions();
    let reply = curl(&["-x", &proxy.url(), "-H", "Accept: application/xml", &limits]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(org.mock.token_requests(), 2);
    assert_eq!(
        org.mock.requests().len(),
        3,
        "the expired attempt and its replay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_401_goes_back_to_the_caller() {
    let org = Org::start().await;
    let proxy = start(&org, "");
    let limits = url("/services/data/v61.0/limits");
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);

    // The next login yields a session the API does not accept: the replay fails too.
    org.mock.expire_sessions();
    org.mock.fail_next_token_requests(
        1,
        TokenFailure::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: format!(
                r#"{{"access_token":"00Dbogus!AR","instance_url":"{}","token_type":"Bearer"}}"#,
                org.mock.url()
            ),
        },
    );
    let reply = curl(&["-x", &proxy.url(), &limits]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()[0]["errorCode"], "INVALID_SESSION_ID");
    assert_eq!(org.mock.requests().len(), 3, "sent twice, never more");
    assert_eq!(org.mock.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_not_valid_for_rest_is_not_replayed() {
    let org = Org::with_users(vec![MockUser {
        username: USER.into(),
        approved: true,
        rest_api: false,
    }])
    .await;
    let proxy = start(&org, "");
    let reply = curl(&["-x", &proxy.url(), &url("/services/data/v61.0/limits")]).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("not valid for use with the REST API"));
    assert_eq!(org.mock.requests().len(), 1);
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_body_is_replayed_intact() {
    let org = Org::start().await;
    let proxy = start(&org, "");
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("body");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let echo = url("/services/apexrest/echo");

    assert_eq!(curl(&["-x", &proxy.url(), &echo]).await.status, 200);
    org.mock.expire_sessions();
    let reply = curl(&["-x", &proxy.url(), "--data-binary", &data, &echo]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["bodyLen"], 100_000);
    assert_eq!(echoed["bodySha256"], hex(&support::sha256(&body)));
    let posts: Vec<_> = org
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2, "the POST was sent twice in all");
    assert!(posts.iter().all(|p| p.body_len == 100_000));

    // Sent chunked and kept whole (for a replay): the instance gets it with its length.
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    let reply = curl(
        &[
            &["-x", &proxy.url(), "--data-binary", &data][..],
            &chunked,
            &[&echo],
        ]
        .concat(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = org.mock.requests().pop().unwrap();
    assert_eq!((sent.method.as_str(), sent.body_len), ("POST", 100_000));
    assert!(
        sent.http2,
        "over HTTP/1.1 hyper would add the length itself"
    );
    assert_eq!(
        header(&sent.headers, "content-length").as_deref(),
        Some("100000")
    );
    assert_eq!(header(&sent.headers, "transfer-encoding"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_replay_limit_stream_and_are_not_replayed() {
    let org = Org::start().await;
    let proxy = start(&org, "replay_limit = \"64KiB\"");
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = dir.path().join("body");
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());
    let echo = url("/services/apexrest/echo");

    // Streams through whole (chunked too), byte for byte.
    for extra in [None, Some("Transfer-Encoding: chunked")] {
        let proxy_url = proxy.url();
        let mut args = vec!["-x", proxy_url.as_str(), "--data-binary", &data];
        if let Some(header) = extra {
            args.extend(["-H", header]);
        }
        args.push(&echo);
        let reply = curl(&args).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["bodyLen"], 8_000_000);
        assert_eq!(reply.json()["bodySha256"], hex(&support::sha256(&body)));
    }
    assert_eq!(org.mock.token_requests(), 1);

    // Expired: too big to replay, so the 401 goes back, but the dead session is dropped.
    org.mock.expire_sessions();
    let seen_before = org.mock.requests().len();
    let reply = curl(&["-x", &proxy.url(), "--data-binary", &data, &echo]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(org.mock.requests().len(), seen_before + 1, "not replayed");
    let reply = curl(&["-x", &proxy.url(), &echo]).await;
    assert_eq!(reply.status, 200, "the caller's retry gets a new session");
    assert_eq!(org.mock.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_v1_gets_the_session_header_and_its_expiry_is_replayed() {
    let org = Org::start().await;
    let proxy = start(&org, "");
    let job = url("/services/async/61.0/job");
    let xml = "<?xml version=\"1.0\"?><jobInfo/>";
    let args = |p: &str| {
        vec![
            "-x".to_owned(),
            p.to_owned(),
            "-H".to_owned(),
            "Content-Type: application/xml".to_owned(),
            "-H".to_owned(),
            "X-SFDC-Session: callers-stale-session".to_owned(),
            "-d".to_owned(),
            xml.to_owned(),
            job.clone(),
        ]
    };
    let proxy_url = proxy.url();
    let owned = args(&proxy_url);
    let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
    assert_eq!(curl(&argv).await.status, 200);
    let seen = org.mock.requests();
    let session = support::header(&seen[0].headers, "x-sfdc-session").unwrap();
    assert!(
        session.starts_with("00D"),
        "the proxy's session, not the caller's"
    );

    org.mock.expire_sessions();
    let reply = curl(&argv).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(org.mock.token_requests(), 2);
    assert_eq!(org.mock.requests().len(), 3);
}

/// Sends `total` GETs for `path` to the proxy for `host`, `workers` at a time over kept-alive
/// connections, each with `extra` headers; returns the statuses.
async fn hammer(
    proxy: &Proxy,
    host: &'static str,
    path: &str,
    extra: &'static [(&'static str, &'static str)],
    total: usize,
    workers: usize,
) -> Vec<u16> {
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{}{path}", proxy.addr).parse().unwrap();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in (worker..total).step_by(workers) {
                    let mut request = http::Request::get(uri.clone()).header("host", host);
                    for (name, value) in extra {
                        request = request.header(*name, *value);
                    }
                    let response = client
                        .request(request.body(Empty::new()).unwrap())
                        .await
                        .expect("proxy answers");
                    statuses.push(response.status().as_u16());
                    response.into_body().collect().await.expect("body");
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.unwrap());
    }
    statuses
}

/// The hole of issue 13: `Connection` naming the header sfproxy puts the session in had the
/// upstream stage strip it, so every request got 401, a login and a replay, until the login
/// budget locked every client of the user out. The caller's hop-by-hop headers now go before the
/// session is added.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_header_cannot_strip_the_session_or_spend_the_login_budget() {
    const OTHER_HOST: &str = "wms.my.salesforce.com";
    let org = Org::start().await;
    let proxy = Proxy::start(
        &(org.config("", "")
            + &route("erp", &[HOST], USER, "")
            + &route("wms", &[OTHER_HOST], USER, "")),
    );
    // Another client of the same user, served all along.
    let other = {
        let url = proxy.url();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let target = format!("http://{OTHER_HOST}/services/data/v61.0/limits");
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(curl(&["-x", &url, &target]).await.status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        });
        (done, task)
    };

    let requests = 300;
    let rest = hammer(
        &proxy,
        HOST,
        "/services/data/v61.0/limits",
        &[("connection", "keep-alive, authorization")],
        requests,
        8,
    )
    .await;
    let bulk = hammer(
        &proxy,
        HOST,
        "/services/async/61.0/job",
        &[
            ("connection", "keep-alive, X-SFDC-Session"),
            ("x-sfdc-session", "callers-own"),
        ],
        requests,
        8,
    )
    .await;
    other.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let other = other.1.await.unwrap();

    let tokens = org.mock.token_requests();
    eprintln!(
        "FIGURES: {} requests naming the session header in Connection: {} answered 200, {tokens} \
         token request(s); the other client: {} of {} answered 200",
        2 * requests,
        rest.iter().chain(&bulk).filter(|s| **s == 200).count(),
        other.iter().filter(|s| **s == 200).count(),
        other.len(),
    );
    assert!(rest.iter().all(|s| *s == 200), "{rest:?}");
    assert!(bulk.iter().all(|s| *s == 200), "{bulk:?}");
    assert!(tokens <= 2, "{tokens} token requests");
    assert!(
        !other.is_empty() && other.iter().all(|s| *s == 200),
        "{other:?}"
    );

    // Every request reached the stand-in once, with the proxy's live session where it belongs.
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 2 * requests + other.len(), "nothing replayed");
    assert!(
        seen.iter().all(|r| r.session_valid),
        "a dead session was sent"
    );
    let session = |r: &sfproxy::mock_org::SeenRequest, name| {
        header(&r.headers, name).filter(|v| v.contains("00D"))
    };
    for r in &seen {
        assert!(session(r, "authorization").is_some(), "{r:?}");
        if r.path_and_query.starts_with("/services/async/") {
            assert!(session(r, "x-sfdc-session").is_some(), "{r:?}");
        }
        assert_eq!(header(&r.headers, "connection"), None, "{r:?}");
    }
    // And after the loop, both clients are still served.
    for host in [HOST, OTHER_HOST] {
        let target = format!("http://{host}/services/data/v61.0/limits");
        assert_eq!(curl(&["-x", &proxy.url(), &target]).await.status, 200);
    }
}

/// Defence in depth, with a Salesforce that refuses every session: a session is renewed once,
/// the replay's answer goes back whatever it is, a request whose own login minted its session
/// is not replayed, and a session refused again moments after the last renewal is kept: not a
/// login per request.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_refused_at_once_cost_one_renewal_not_a_login_per_request() {
    let org = Org::start().await;
    let proxy = start(&org, "");
    let limits = url("/services/data/v61.0/limits");
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);
    assert_eq!(org.mock.token_requests(), 1);

    org.mock.set_refuse_sessions(true);
    // The cached session is refused: renewed once, replayed once, and the replay's 401 goes
    // back: sent twice, never a third time.
    let reply = curl(&["-x", &proxy.url(), &limits]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()[0]["errorCode"], "INVALID_SESSION_ID");
    assert_eq!(
        org.mock.requests().len(),
        3,
        "the first attempt and one replay"
    );
    assert_eq!(org.mock.token_requests(), 2);

    // The new session is refused too, moments after it was minted: it is kept, and each caller
    // gets its 401 after one attempt, with no login.
    // Well within the 12 s the session is kept for at the default budget (0.5 s here); a
    // machine so slow that they take longer may see the one renewal the spacing then allows.
    let requests = 100;
    let limits_path = "/services/data/v61.0/limits";
    let started = std::time::Instant::now();
    let statuses = hammer(&proxy, HOST, limits_path, &[], requests, 4).await;
    let took = started.elapsed();
    eprintln!("{requests} refused requests in {took:?}");
    let spacing_passed = usize::from(took >= Duration::from_secs(12));
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        org.mock.requests().len() <= 3 + requests + spacing_passed,
        "none replayed"
    );
    assert!(
        org.mock.token_requests() <= 2 + spacing_passed,
        "no login per request"
    );

    // Salesforce takes sessions again: the kept one serves at once.
    org.mock.set_refuse_sessions(false);
    assert_eq!(curl(&["-x", &proxy.url(), &limits]).await.status, 200);
    assert_eq!(org.mock.token_requests(), 2);

    // A cold proxy: the session its first request's own login minted is refused, and the
    // answer goes back without a replay; the next session is kept like above.
    let cold = start(&org, "");
    org.mock.set_refuse_sessions(true);
    let (tokens, seen) = (org.mock.token_requests(), org.mock.requests().len());
    let reply = curl(&["-x", &cold.url(), &limits]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(org.mock.requests().len(), seen + 1, "not replayed");
    assert_eq!(org.mock.token_requests(), tokens + 1);
    let statuses = hammer(&cold, HOST, limits_path, &[], requests, 4).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        org.mock.requests().len(),
        seen + 1 + requests,
        "none replayed"
    );
    let cold_tokens = org.mock.token_requests() - tokens;
    assert_eq!(cold_tokens, 2, "{cold_tokens} token requests");
    eprintln!(
        "FIGURES: a Salesforce refusing every session: {} requests on a warm proxy → 1 renewal \
         (the first, replayed once); {} on a cold one → {cold_tokens} token requests, none \
         replayed",
        1 + requests,
        1 + requests,
    );
}
