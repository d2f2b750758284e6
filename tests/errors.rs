//! Every answer the proxy makes itself, produced for real through the binary: the status, the
//! `Content-Type`, the Salesforce-shaped body `[{"errorCode":..,"message":..}]` with a message that
//! says what failed, the one `refused` log event with its code, what the stand-in org saw (or did
//! not see), and that the proxy keeps serving afterwards without ever showing a token.
//!
//! | status | errorCode                    | test                                              |
//! |--------|------------------------------|---------------------------------------------------|
//! | 400    | PROXY_BAD_REQUEST            | `caller_mistakes_are_refused_before_any_login`    |
//! | 403    | PROXY_NO_ROUTE               | `caller_mistakes_are_refused_before_any_login`    |
//! | 403    | PROXY_CLIENT_FORBIDDEN       | `unknown_callers_get_407_and_other_clients_403`   |
//! | 400    | PROXY_BAD_REQUEST            | `methods_and_heads_that_must_be_refused_are_before_anything_is_sent` |
//! | 400    | PROXY_BAD_REQUEST            | `content_length_with_transfer_encoding_is_refused_and_the_connection_closed` |
//! | 405    | PROXY_METHOD_NOT_ALLOWED     | `methods_and_heads_that_must_be_refused_are_before_anything_is_sent` |
//! | 405    | PROXY_CONNECT_UNSUPPORTED    | `caller_mistakes_are_refused_before_any_login`    |
//! | 407    | PROXY_AUTH_REQUIRED          | `unknown_callers_get_407_and_other_clients_403`, `refused_credentials_get_one_answer_and_the_log_says_why` |
//! | 502    | PROXY_LOGIN_REJECTED         | `login_rejected_*`                                |
//! | 503    | PROXY_LOGIN_UNAVAILABLE      | `login_unavailable_*`                             |
//! | 502    | PROXY_UPSTREAM_UNREACHABLE   | `instance_that_refuses_connections_is_502`        |
//! | 504    | PROXY_UPSTREAM_TIMEOUT       | `instance_that_never_answers_is_504_after_request_timeout` |
//!
//! `PROXY_INTERNAL` (500) needs a bug to happen and is covered by the unit tests of `error.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sfproxy::mock_org::{MockUser, TokenFailure};
use support::{
    OTHER_USER, Org, Proxy, Reply, USER, assert_refusal, closed_port, curl, org_block, route,
    route_to,
};
use tokio::net::TcpListener;

const LIMITS: &str = "http://acme.my.salesforce.com/services/data/v61.0/limits";
/// Served by `[orgs.good]`: the request that must still work after every refusal.
const GOOD: &str = "http://good.my.salesforce.com/services/data/v61.0/limits";
/// Every access token the stand-in issues starts with its 15-character org id and `!`.
const TOKEN_PREFIX: &str = "00D000000000001!";

/// A second org on the same stand-in, set up right, with a route of its own.
fn good_org(org: &Org) -> String {
    org_block(org, "good", "") + &route_to("good", "good", &["good.my.salesforce.com"], USER, "")
}

/// `config` with the first `key = ...` line set to `value` (the `[orgs.acme]` one, when the
/// config comes from `Org::config`): for settings `Org::config` already writes.
fn set(config: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut done = false;
    let lines: Vec<String> = config
        .lines()
        .map(|line| {
            if !done && line.starts_with(&prefix) {
                done = true;
                format!("{key} = \"{value}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(done, "no {key} in the config");
    lines.join("\n") + "\n"
}

/// The codes of the `refused` log events, once `n` have been written (the log is read by a
/// thread, so the last line may trail the answer by a moment).
async fn refused_codes(proxy: &Proxy, n: usize) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = proxy.events("refused");
        if events.len() >= n || Instant::now() > deadline {
            return events
                .iter()
                .map(|e| {
                    assert!(e["error"].is_string(), "the event says what failed: {e}");
                    (
                        e["code"].as_str().unwrap_or_default().to_owned(),
                        e["status"].as_u64().unwrap_or_default(),
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expected(codes: &[(&str, u64)]) -> Vec<(String, u64)> {
    codes.iter().map(|(c, s)| ((*c).to_owned(), *s)).collect()
}

/// The proxy still serves a good request: nothing about the refusal stuck.
async fn still_serves(proxy: &Proxy, url: &str, args: &[&str]) {
    let proxy_url = proxy.url();
    let mut all = vec!["-x", proxy_url.as_str()];
    all.extend_from_slice(args);
    all.push(url);
    let reply = curl(&all).await;
    assert_eq!(reply.status, 200, "after a refusal: {}", reply.body);
    assert!(reply.json()["DailyApiRequests"]["Max"].is_number());
}

/// No answer and no log line shows an access token or key material.
async fn assert_no_secrets(proxy: &Proxy, org: &Org, replies: &[&Reply]) {
    let tokens: Vec<String> = org
        .seen_authorizations()
        .iter()
        .map(|a| a.trim_start_matches("Bearer ").to_owned())
        .collect();
    proxy.settle().await;
    let log = proxy.log();
    let mut texts = vec![log];
    for reply in replies {
        texts.push(reply.body.clone());
        texts.push(format!("{:?}", reply.headers));
    }
    for text in &texts {
        assert!(!text.contains(TOKEN_PREFIX), "a token leaked: {text}");
        assert!(!text.contains("BEGIN"), "key material leaked: {text}");
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "a token leaked: {text}");
        }
    }
}

/// `Proxy::raw`'s answer read as curl would report it (one HTTP/1.1 response, no chunking).
fn parse_raw(answer: &str) -> Reply {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// 502 PROXY_LOGIN_REJECTED: Salesforce read the assertion and said no.

/// One login refusal by the stand-in: the Salesforce error travels to the caller with a hint.
async fn login_rejected(
    org: &Org,
    config: &str,
    salesforce_error: &str,
    description: &str,
    hint_says: &str,
) {
    let proxy = Proxy::start(config);
    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    let entry = assert_refusal(
        &reply,
        502,
        "PROXY_LOGIN_REJECTED",
        &[
            "Salesforce refused the login",
            "\"acme\"",
            salesforce_error,
            description,
        ],
    );
    assert_eq!(entry["salesforceError"], salesforce_error);
    assert_eq!(entry["salesforceErrorDescription"], description);
    let hint = entry["hint"].as_str().expect("a hint for the operator");
    assert!(
        hint.contains(hint_says),
        "hint {hint:?} lacks {hint_says:?}"
    );
    assert_eq!(org.mock.token_requests(), 1, "one login was tried");
    assert!(
        org.mock.requests().is_empty(),
        "no API call without a session"
    );
    assert_eq!(
        refused_codes(&proxy, 1).await,
        expected(&[("PROXY_LOGIN_REJECTED", 502)])
    );

    still_serves(&proxy, GOOD, &[]).await;
    assert_eq!(org.mock.requests().len(), 1);
    assert_no_secrets(&proxy, org, &[&reply]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_user_not_pre_authorized() {
    const BLOCKED: &str = "blocked@acme.example";
    let org = Org::with_users(vec![
        support::user(USER),
        MockUser {
            username: BLOCKED.to_owned(),
            approved: false,
            rest_api: true,
        },
    ])
    .await;
    let config = org.config("", "")
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], BLOCKED, "");
    login_rejected(
        &org,
        &config,
        "invalid_grant",
        "user hasn't approved this consumer",
        "pre-authorized",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_wrong_audience() {
    let org = Org::start().await;
    // The My Domain URL as audience: the classic mistake.
    let config = set(
        &org.config("", ""),
        "audience",
        "https://acme.my.salesforce.com",
    ) + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    login_rejected(
        &org,
        &config,
        "invalid_grant",
        "audience is invalid",
        "https://test.salesforce.com",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_wrong_consumer_key() {
    let org = Org::start().await;
    let config = set(&org.config("", ""), "client_id", "3MVG9not.this.app")
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    login_rejected(
        &org,
        &config,
        "invalid_client_id",
        "client identifier invalid",
        "consumer key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_ip_restricted() {
    let org = Org::start().await;
    let config = org.config("", "")
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    org.mock.fail_next_token_requests(
        1,
        TokenFailure::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: "ip restricted".into(),
        },
    );
    login_rejected(&org, &config, "invalid_grant", "ip restricted", "IP").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_frozen_user() {
    let org = Org::start().await;
    let config = org.config("", "")
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], OTHER_USER, "");
    org.mock.set_user_frozen(OTHER_USER, true);
    login_rejected(
        &org,
        &config,
        "invalid_grant",
        "inactive user",
        "frozen or deactivated",
    )
    .await;
}

/// The refusals the stand-in has no setting for, answered as Salesforce words them.
#[tokio::test(flavor = "multi_thread")]
async fn login_rejected_scope_clock_and_approval() {
    for (error, description, hint_says) in [
        (
            "invalid_scope",
            "the requested scope is not allowed",
            "Manage user data via APIs (api)",
        ),
        ("expired_assertion", "assertion expired", "clock (NTP)"),
        (
            "invalid_grant",
            "user is not admin approved to access this app",
            "Admin approved users are pre-authorized",
        ),
    ] {
        let org = Org::start().await;
        let config = org.config("", "")
            + &good_org(&org)
            + &route("acme", &["acme.my.salesforce.com"], USER, "");
        org.mock.fail_next_token_requests(
            1,
            TokenFailure::OAuth {
                status: 400,
                error: error.into(),
                description: description.into(),
            },
        );
        login_rejected(&org, &config, error, description, hint_says).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 503 PROXY_LOGIN_UNAVAILABLE: no usable answer from the token endpoint.

#[tokio::test(flavor = "multi_thread")]
async fn login_unavailable_when_the_token_host_is_down() {
    let org = Org::start().await;
    let down = format!("https://127.0.0.1:{}", closed_port());
    let config = set(&org.config("", ""), "login_url", &down)
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);

    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    let entry = assert_refusal(
        &reply,
        503,
        "PROXY_LOGIN_UNAVAILABLE",
        &[
            "login for org \"acme\" is unavailable",
            &format!("cannot reach {down}/services/oauth2/token"),
        ],
    );
    assert!(entry.get("hint").is_none() && entry.get("salesforceError").is_none());
    assert_eq!(org.mock.token_requests(), 0);
    assert_eq!(
        refused_codes(&proxy, 1).await,
        expected(&[("PROXY_LOGIN_UNAVAILABLE", 503)])
    );
    still_serves(&proxy, GOOD, &[]).await;
    assert_no_secrets(&proxy, &org, &[&reply]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_unavailable_when_the_token_endpoint_answers_nonsense() {
    let org = Org::start().await;
    let raw = |status: u16, content_type: &str, body: &str| TokenFailure::Raw {
        status,
        content_type: content_type.to_owned(),
        body: body.to_owned(),
    };
    // One route, and so one (org, user) session, per case: a remembered failure of one case must
    // not stand in for the next. A 5xx or a dropped request is worth two more tries (3 token
    // requests in all); an answer that is merely unusable is not retried.
    let cases = [
        (
            "maintenance",
            raw(
                503,
                "text/html",
                "<html><body>Down for maintenance</body></html>",
            ),
            "answered HTTP 503",
            3,
        ),
        (
            "no-token",
            raw(
                200,
                "application/json",
                r#"{"instance_url":"https://acme.my.salesforce.com","token_type":"Bearer"}"#,
            ),
            "no access_token",
            1,
        ),
        (
            "garbage",
            raw(200, "text/html", "<html>Sign in</html>"),
            "not a token response",
            1,
        ),
        ("dropped", TokenFailure::Drop, "oauth2/token", 3),
    ];
    let mut config = org.config("", "") + &good_org(&org);
    for (name, _, _, _) in &cases {
        config += &route(
            name,
            &[&format!("{name}.my.salesforce.com")],
            &format!("{name}@acme.example"),
            "",
        );
    }
    let proxy = Proxy::start(&config);

    let mut replies = Vec::new();
    let mut expected_requests = 0;
    for (i, (name, failure, says, attempts)) in cases.into_iter().enumerate() {
        org.mock.fail_next_token_requests(attempts, failure);
        let url = format!("http://{name}.my.salesforce.com/services/data/v61.0/limits");
        let reply = curl(&["-x", &proxy.url(), &url]).await;
        assert_refusal(
            &reply,
            503,
            "PROXY_LOGIN_UNAVAILABLE",
            &["login for org \"acme\" is unavailable", says],
        );
        // The good route's first login comes after the first case's.
        expected_requests += attempts + usize::from(i == 1);
        assert_eq!(
            org.mock.token_requests(),
            expected_requests,
            "{name}: {attempts} token request(s), no retry storm"
        );
        replies.push(reply);
        still_serves(&proxy, GOOD, &[]).await;
    }
    // The token response body is never quoted back (a real one would carry a token).
    assert!(!replies[1].body.contains("acme.my.salesforce.com"));
    assert_eq!(
        refused_codes(&proxy, 4).await,
        expected(&[("PROXY_LOGIN_UNAVAILABLE", 503); 4])
    );
    assert_eq!(
        org.mock.requests().len(),
        4,
        "only the good requests reached the org"
    );
    assert_no_secrets(&proxy, &org, &replies.iter().collect::<Vec<_>>()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_unavailable_when_the_token_response_names_a_plain_http_instance() {
    let org = Org::start().await;
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://127.0.0.1:{}", trap.local_addr().unwrap().port());
    let config = org.config("", "")
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);

    org.mock.set_instance_url(Some(trap_url.clone()));
    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    assert_refusal(
        &reply,
        503,
        "PROXY_LOGIN_UNAVAILABLE",
        &["instance_url", &trap_url, "not https"],
    );
    assert_eq!(org.mock.token_requests(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), trap.accept())
            .await
            .is_err(),
        "nothing was sent to the plain-http instance"
    );
    assert!(org.mock.requests().is_empty());
    assert_eq!(
        refused_codes(&proxy, 1).await,
        expected(&[("PROXY_LOGIN_UNAVAILABLE", 503)])
    );

    org.mock.set_instance_url(None);
    still_serves(&proxy, GOOD, &[]).await;
    assert_no_secrets(&proxy, &org, &[&reply]).await;
}

// ---------------------------------------------------------------------------------------------
// 502 PROXY_UPSTREAM_UNREACHABLE and 504 PROXY_UPSTREAM_TIMEOUT: the instance itself.

#[tokio::test(flavor = "multi_thread")]
async fn instance_that_refuses_connections_is_502() {
    let org = Org::start().await;
    let instance = format!("https://localhost:{}", closed_port());
    let config = org.config("", &format!("instance_url = \"{instance}\""))
        + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);

    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    assert_refusal(
        &reply,
        502,
        "PROXY_UPSTREAM_UNREACHABLE",
        &[
            &format!("the Salesforce instance {instance} of org \"acme\""),
            "could not be reached",
        ],
    );
    assert_eq!(org.mock.token_requests(), 1, "the login itself worked");
    assert!(org.mock.requests().is_empty());

    // The session stays good: a second try does not log in again.
    let again = curl(&["-x", &proxy.url(), LIMITS]).await;
    assert_refusal(&again, 502, "PROXY_UPSTREAM_UNREACHABLE", &[&instance]);
    assert_eq!(org.mock.token_requests(), 1, "no login per failed request");
    assert_eq!(
        refused_codes(&proxy, 2).await,
        expected(&[("PROXY_UPSTREAM_UNREACHABLE", 502); 2])
    );

    still_serves(&proxy, GOOD, &[]).await;
    assert_no_secrets(&proxy, &org, &[&reply, &again]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_that_never_answers_is_504_after_request_timeout() {
    let org = Org::start().await;
    // Accepts and holds every connection, and never says a word (not even a TLS handshake).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr: SocketAddr = silent.local_addr().unwrap();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let instance = format!("https://127.0.0.1:{}", silent_addr.port());
    let config = org.config(
        "request_timeout = \"1s\"",
        &format!("instance_url = \"{instance}\""),
    ) + &good_org(&org)
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);

    let started = Instant::now();
    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    let took = started.elapsed();
    assert_refusal(
        &reply,
        504,
        "PROXY_UPSTREAM_TIMEOUT",
        &[
            &format!("the Salesforce instance {instance} of org \"acme\""),
            "no answer within 1s",
        ],
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}, request_timeout is 1s"
    );
    assert!(
        accepted_rx.try_recv().is_ok(),
        "the proxy did connect to the instance"
    );
    assert_eq!(org.mock.token_requests(), 1);
    assert_eq!(
        refused_codes(&proxy, 1).await,
        expected(&[("PROXY_UPSTREAM_TIMEOUT", 504)])
    );

    let started = Instant::now();
    still_serves(&proxy, GOOD, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.abort();
    assert_no_secrets(&proxy, &org, &[&reply]).await;
}

// ---------------------------------------------------------------------------------------------
// 400, 403 PROXY_NO_ROUTE, 405: the caller's request, refused before any login.

#[tokio::test(flavor = "multi_thread")]
async fn caller_mistakes_are_refused_before_any_login() {
    let org = Org::start().await;
    let config = org.config("", "")
        + &route(
            "acme",
            &["acme.my.salesforce.com"],
            USER,
            "path_prefix = \"/services/\"",
        );
    let proxy = Proxy::start(&config);
    let mut replies = Vec::new();
    let mut good = 0;

    // 400: targets that would be read differently here and at Salesforce.
    let raw_cases = [
        (
            "GET http://user:pw@acme.my.salesforce.com/services/data/v61.0/limits HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\nConnection: close\r\n\r\n",
            "user information",
        ),
        (
            "GET /services/data/v61.0/limits HTTP/1.1\r\nConnection: close\r\n\r\n",
            "no target host",
        ),
        (
            "GET ftp://acme.my.salesforce.com/services/data/ HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\nConnection: close\r\n\r\n",
            "unsupported scheme",
        ),
    ];
    for (request, says) in raw_cases {
        let reply = parse_raw(&proxy.raw(request).await);
        assert_refusal(&reply, 400, "PROXY_BAD_REQUEST", &[says]);
        replies.push(reply);
        still_serves(&proxy, LIMITS, &[]).await;
        good += 1;
    }
    for path in [
        "/services/data/../../secret",
        "/services/data/%2e%2E/%2E%2e/secret",
        "/services/./data/v61.0/limits",
        "/services/data%5c..%5csecret",
    ] {
        let url = format!("http://acme.my.salesforce.com{path}");
        let reply = curl(&["-x", &proxy.url(), "--path-as-is", &url]).await;
        assert_refusal(&reply, 400, "PROXY_BAD_REQUEST", &["dot segments"]);
        replies.push(reply);
    }
    still_serves(&proxy, LIMITS, &[]).await;
    good += 1;

    // 403: no route for this host, or for this path on a known host.
    for (url, says) in [
        (
            "http://evil.example/services/data/v61.0/limits",
            "no route serves host \"evil.example\"",
        ),
        (
            "http://acme.my.salesforce.com/secur/frontdoor.jsp",
            "path \"/secur/frontdoor.jsp\"",
        ),
    ] {
        let reply = curl(&["-x", &proxy.url(), url]).await;
        assert_refusal(&reply, 403, "PROXY_NO_ROUTE", &[says, "configured routes"]);
        replies.push(reply);
    }
    still_serves(&proxy, LIMITS, &[]).await;
    good += 1;

    // 405: a tunnel request, from curl given an https:// URL and by hand.
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "https://acme.my.salesforce.com/services/data/v61.0/limits",
    ])
    .await;
    assert_eq!(reply.status, 405, "{reply:?}");
    let reply = parse_raw(
        &proxy
            .raw(
                "CONNECT acme.my.salesforce.com:443 HTTP/1.1\r\n\
                 Host: acme.my.salesforce.com:443\r\n\r\n",
            )
            .await,
    );
    assert_refusal(
        &reply,
        405,
        "PROXY_CONNECT_UNSUPPORTED",
        &["send http:// URLs through the proxy"],
    );
    replies.push(reply);
    still_serves(&proxy, LIMITS, &[]).await;
    good += 1;

    assert_eq!(
        org.mock.requests().len(),
        good,
        "only good requests reached the org"
    );
    assert_eq!(
        org.mock.token_requests(),
        1,
        "one login, for the good requests"
    );
    let bad = ("PROXY_BAD_REQUEST", 400);
    let no_route = ("PROXY_NO_ROUTE", 403);
    let connect = ("PROXY_CONNECT_UNSUPPORTED", 405);
    assert_eq!(
        refused_codes(&proxy, 11).await,
        expected(&[
            bad, bad, bad, bad, bad, bad, bad, no_route, no_route, connect, connect
        ])
    );
    assert_no_secrets(&proxy, &org, &replies.iter().collect::<Vec<_>>()).await;
}

// ---------------------------------------------------------------------------------------------
// 407 and 403 PROXY_CLIENT_FORBIDDEN: who is calling.

#[tokio::test(flavor = "multi_thread")]
async fn unknown_callers_get_407_and_other_clients_403() {
    let org = Org::start().await;
    let hash = support::sha256_hex;
    let config = org.config("", "")
        + &format!(
            "[clients.erp]\nsecret_sha256 = \"{}\"\n[clients.wms]\nsecret_sha256 = \"{}\"\n",
            hash(b"erp-secret"),
            hash(b"wms-secret")
        )
        + &route(
            "acme",
            &["acme.my.salesforce.com"],
            USER,
            "clients = [\"erp\"]",
        );
    let proxy = Proxy::start(&config);
    let erp = ["--proxy-user", "erp:erp-secret"];
    let mut replies = Vec::new();

    for (args, says) in [
        (vec![], "send Proxy-Authorization"),
        (
            vec!["--proxy-user", "erp:wrong-secret"],
            "were not accepted",
        ),
        (
            vec!["--proxy-user", "nobody:erp-secret"],
            "were not accepted",
        ),
        (
            vec!["--proxy-header", "Proxy-Authorization: Bearer erp-secret"],
            "malformed Proxy-Authorization",
        ),
    ] {
        let url = proxy.url();
        let mut all = vec!["-x", url.as_str()];
        all.extend(args.iter().copied());
        all.push(LIMITS);
        let reply = curl(&all).await;
        assert_refusal(&reply, 407, "PROXY_AUTH_REQUIRED", &[says]);
        assert_eq!(
            reply.header("proxy-authenticate").as_deref(),
            Some("Basic realm=\"sfproxy\""),
            "{args:?}"
        );
        replies.push(reply);
        still_serves(&proxy, LIMITS, &erp).await;
    }

    // A known client on a route reserved for another.
    let reply = curl(&["-x", &proxy.url(), "--proxy-user", "wms:wms-secret", LIMITS]).await;
    assert_refusal(
        &reply,
        403,
        "PROXY_CLIENT_FORBIDDEN",
        &["client \"wms\"", "host \"acme.my.salesforce.com\""],
    );
    assert!(reply.header("proxy-authenticate").is_none());
    replies.push(reply);
    still_serves(&proxy, LIMITS, &erp).await;

    assert_eq!(
        org.mock.requests().len(),
        5,
        "only erp's requests reached the org"
    );
    assert_eq!(org.mock.token_requests(), 1);
    let auth = ("PROXY_AUTH_REQUIRED", 407);
    assert_eq!(
        refused_codes(&proxy, 5).await,
        expected(&[auth, auth, auth, auth, ("PROXY_CLIENT_FORBIDDEN", 403)])
    );
    proxy.settle().await;
    for text in replies.iter().map(|r| r.body.clone()).chain([proxy.log()]) {
        assert!(!text.contains("erp-secret") && !text.contains("wms-secret"));
    }
    assert_no_secrets(&proxy, &org, &replies.iter().collect::<Vec<_>>()).await;
}

// ---------------------------------------------------------------------------------------------
// 405 PROXY_METHOD_NOT_ALLOWED and 400: heads that are refused before anything is done.

#[tokio::test(flavor = "multi_thread")]
async fn methods_and_heads_that_must_be_refused_are_before_anything_is_sent() {
    let org = Org::start().await;
    let config = org.config("", "") + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);
    let mut replies = Vec::new();
    let mut good = 0;

    // 405: TRACE would reflect the bearer token; CONNECT in origin form asks for no tunnel; a
    // method Salesforce's APIs do not know. (A CONNECT to a URL asks for a tunnel in the wrong
    // form: 400, `tests/intercept.rs::connect_targets_must_be_host_port_443_or_80`.)
    let reply = curl(&["-x", &proxy.url(), "-X", "TRACE", LIMITS]).await;
    assert_refusal(&reply, 405, "PROXY_METHOD_NOT_ALLOWED", &["TRACE"]);
    replies.push(reply);
    still_serves(&proxy, LIMITS, &[]).await;
    good += 1;
    for (request, method) in [
        (
            "CONNECT /services/data/v61.0/limits HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\nConnection: close\r\n\r\n",
            "CONNECT",
        ),
        (
            "PROPFIND http://acme.my.salesforce.com/services/data/v61.0/limits HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\nConnection: close\r\n\r\n",
            "PROPFIND",
        ),
    ] {
        let reply = parse_raw(&proxy.raw(request).await);
        assert_refusal(
            &reply,
            405,
            "PROXY_METHOD_NOT_ALLOWED",
            &[method, "GET, HEAD"],
        );
        assert_eq!(
            reply.header("allow").as_deref(),
            Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        );
        replies.push(reply);
        still_serves(&proxy, LIMITS, &[]).await;
        good += 1;
    }

    // 400: what RFC 9112 section 3.2 says to refuse, and an https:// URL outside a tunnel.
    let target = "GET http://acme.my.salesforce.com/services/data/v61.0/limits HTTP/1.1\r\n";
    let origin = "GET /services/data/v61.0/limits HTTP/1.1\r\n";
    let basic = "Proxy-Authorization: Basic ZXJwOmVycC1zZWNyZXQ=\r\n";
    let cases = [
        (
            format!("{origin}Host: acme.my.salesforce.com\r\nHost: acme.my.salesforce.com\r\n"),
            "two Host headers",
        ),
        (
            format!("{target}Host: acme.my.salesforce.com\r\nHost: evil.example\r\n"),
            "two Host headers",
        ),
        (format!("{origin}Host: acme.my.salesforce.com:\r\n"), "port"),
        (
            format!("{origin}Host: acme.my.salesforce.com:http\r\n"),
            "port",
        ),
        (
            format!("{origin}Host: acme.my.salesforce.com:65536\r\n"),
            "port",
        ),
        (format!("{origin}Host: acme.my.salesforce.com.\r\n"), "dot"),
        (format!("{target}Host: acme.my.salesforce.com.\r\n"), "dot"),
        (
            "GET http://acme.my.salesforce.com./services/data/v61.0/limits HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\n"
                .to_owned(),
            "dot",
        ),
        (
            format!("{target}Host: acme.my.salesforce.com\r\n{basic}{basic}"),
            "two Proxy-Authorization headers",
        ),
        (
            "GET https://acme.my.salesforce.com/services/data/v61.0/limits HTTP/1.1\r\n\
             Host: acme.my.salesforce.com\r\n"
                .to_owned(),
            "send http:// URLs through the proxy",
        ),
    ];
    for (head, says) in &cases {
        let reply = parse_raw(&proxy.raw(&format!("{head}Connection: close\r\n\r\n")).await);
        assert_refusal(&reply, 400, "PROXY_BAD_REQUEST", &[says]);
        replies.push(reply);
        still_serves(&proxy, LIMITS, &[]).await;
        good += 1;
    }

    assert_eq!(
        org.mock.requests().len(),
        good,
        "only the good requests reached the org"
    );
    assert_eq!(org.mock.token_requests(), 1);
    let mut codes = vec![("PROXY_METHOD_NOT_ALLOWED", 405); 3];
    codes.extend(vec![("PROXY_BAD_REQUEST", 400); cases.len()]);
    assert_eq!(refused_codes(&proxy, codes.len()).await, expected(&codes));
    assert_no_secrets(&proxy, &org, &replies.iter().collect::<Vec<_>>()).await;
}

// ---------------------------------------------------------------------------------------------
// 407: one answer for every refused credential; the log says which part was wrong.

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_get_one_answer_and_the_log_says_why() {
    let org = Org::start().await;
    let hash = support::sha256_hex;
    // erp may call only from 10.0.0.0/8: from loopback its right secret is the wrong network.
    let config = org.config("", "")
        + &format!(
            "[clients.erp]\nnetworks = [\"10.0.0.0/8\"]\nsecret_sha256 = \"{}\"\n\
             [clients.wms]\nnetworks = [\"127.0.0.0/8\"]\nsecret_sha256 = \"{}\"\n",
            hash(b"erp-secret"),
            hash(b"wms-secret")
        )
        + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);
    let wms = ["--proxy-user", "wms:wms-secret"];

    let mut bodies = Vec::new();
    for user in ["nobody:erp-secret", "wms:wrong-secret", "erp:erp-secret"] {
        let reply = curl(&["-x", &proxy.url(), "--proxy-user", user, LIMITS]).await;
        assert_refusal(&reply, 407, "PROXY_AUTH_REQUIRED", &["not accepted"]);
        assert!(
            !reply.body.contains("nobody")
                && !reply.body.contains("wms")
                && !reply.body.contains("erp"),
            "the answer names no client: {}",
            reply.body
        );
        bodies.push(reply.body);
        still_serves(&proxy, LIMITS, &wms).await;
    }
    assert_eq!(bodies[0], bodies[1], "unknown client and wrong secret");
    assert_eq!(bodies[0], bodies[2], "unknown client and wrong network");

    let refused = proxy.wait_for_events("proxy credentials refused", 3).await;
    let why: Vec<(String, String)> = refused
        .iter()
        .map(|e| {
            (
                e["client"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        why,
        [
            // Quoted: a client name cannot forge log lines.
            ("\"(unknown)\"", "unknown client"),
            ("\"wms\"", "wrong secret"),
            ("\"erp\"", "source address outside the client's networks"),
        ]
        .map(|(c, r)| (c.to_owned(), r.to_owned()))
    );
    assert_eq!(
        org.mock.requests().len(),
        3,
        "only wms's requests reached the org"
    );
}

// ---------------------------------------------------------------------------------------------
// 400 and a closed connection: Content-Length and Transfer-Encoding together.

/// Sends `request` on a fresh connection; what came back, and whether the proxy closed the
/// connection (within 5 s) rather than waiting for more.
async fn answer_and_close(proxy: &Proxy, request: &str) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let org = Org::start().await;
    let config = org.config("", "") + &route("acme", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);
    let post = "POST http://acme.my.salesforce.com/services/apexrest/echo HTTP/1.1\r\n\
                Host: acme.my.salesforce.com\r\n";
    let smuggled = "GET http://acme.my.salesforce.com/services/apexrest/echo/smuggled HTTP/1.1\r\n\
                    Host: acme.my.salesforce.com\r\n\r\n";
    let good = format!("{post}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    // A chunk size with more leading zeros than a u64 has hex digits: hyper reads it, and so
    // must the watch, or it would lose track and let the next request through.
    let zeros =
        format!("{post}Transfer-Encoding: chunked\r\n\r\n00000000000000000002\r\nok\r\n0\r\n\r\n");
    let mut replies = Vec::new();
    for (before, framing) in [
        (&good, "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
        (&good, "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"),
        (
            &good,
            "Content-Length: 4\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n",
        ),
        (
            &zeros,
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        // Behind a good chunked request on the same connection, with a request hidden after it.
        let request = format!("{before}{post}{framing}\r\n0\r\n\r\n{smuggled}");
        let (answer, closed) = answer_and_close(&proxy, &request).await;
        assert!(
            closed,
            "the connection is closed after the refusal: {answer}"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
        let refusal = &answer[answer.rfind("HTTP/1.1 ").unwrap()..];
        let reply = parse_raw(refusal);
        assert_refusal(
            &reply,
            400,
            "PROXY_BAD_REQUEST",
            &["both Content-Length and Transfer-Encoding"],
        );
        assert_eq!(reply.header("connection").as_deref(), Some("close"));
        replies.push(reply);
        still_serves(&proxy, LIMITS, &[]).await;
    }
    let echoes: Vec<_> = org
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.contains("apexrest"))
        .collect();
    assert_eq!(
        echoes.len(),
        4,
        "only the good chunked requests reached the org"
    );
    assert!(
        echoes
            .iter()
            .all(|r| !r.path_and_query.contains("smuggled"))
    );

    // A refused CONNECT ends its connection: nothing after it on the connection is read,
    // however it is framed.
    let after_connect = format!(
        "CONNECT acme.my.salesforce.com:22 HTTP/1.1\r\nHost: acme.my.salesforce.com:22\r\n\r\n\
         {post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let (answer, closed) = answer_and_close(&proxy, &after_connect).await;
    assert!(closed, "closed after the refused CONNECT: {answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    let reply = parse_raw(&answer);
    assert_refusal(&reply, 403, "PROXY_NO_ROUTE", &["port 443"]);
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
    replies.push(reply);
    assert_eq!(
        org.mock
            .requests()
            .iter()
            .filter(|r| r.path_and_query.contains("apexrest"))
            .count(),
        4,
        "nothing after the CONNECT reached the org"
    );
    assert_eq!(org.mock.token_requests(), 1);
    let mut codes = vec![("PROXY_BAD_REQUEST", 400); 4];
    codes.push(("PROXY_NO_ROUTE", 403));
    assert_eq!(refused_codes(&proxy, 5).await, expected(&codes));
    assert_no_secrets(&proxy, &org, &replies.iter().collect::<Vec<_>>()).await;
}
