//! Operating the proxy through the real binary: the admin port (health, readiness with warm orgs,
//! metrics that move as they should), the request id and the one log line per request, reload on
//! SIGHUP (valid, invalid, sessions kept or renewed by org settings) and graceful shutdown with
//! requests in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sfproxy::mock_org::{MockUser, TokenFailure};
use support::{
    OTHER_USER, Org, Proxy, Reply, USER, curl, route,
    scrape::{Scrape, delta, parse_exposition},
};

const HOST: &str = "acme.my.salesforce.com";
const WMS_HOST: &str = "wms.my.salesforce.com";
const NEW_HOST: &str = "new.my.salesforce.com";
/// A user the connected app has not been approved for: invalid_grant.
const UNAPPROVED: &str = "new@acme.example";
const ADMIN: &str = "admin_listen = \"127.0.0.1:0\"";
const RELOADED: &str = "config reloaded";
const REFUSED_RELOAD: &str = "config reload refused; the previous config keeps serving";

fn url(host: &str, path: &str) -> String {
    format!("http://{host}{path}")
}

fn limits(host: &str) -> String {
    url(host, "/services/data/v61.0/limits")
}

/// A plain GET, no proxy (the admin port).
async fn get(addr: SocketAddr, path: &str) -> Reply {
    curl(&[&format!("http://{addr}{path}")]).await
}

/// A GET through the proxy.
async fn via(proxy: &Proxy, target: &str) -> Reply {
    curl(&["-x", &proxy.url(), target]).await
}

#[test]
fn exposition_parser_reads_labels_and_escapes() {
    let text = "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"uote\"} 3\nup 1\n\
                h_bucket{route=\"erp\",le=\"+Inf\"} 2\n";
    let samples = Scrape(parse_exposition(text));
    assert_eq!(samples.get("x", &[("a", "1"), ("b", "q\"uote")]), 3.0);
    assert_eq!(samples.get("up", &[]), 1.0);
    assert_eq!(
        samples.get("h_bucket", &[("route", "erp"), ("le", "+Inf")]),
        2.0
    );
    assert_eq!(samples.get("x", &[("a", "1")]), 0.0, "labels match exactly");
}

// ---- Admin port and readiness.

#[tokio::test(flavor = "multi_thread")]
async fn warm_org_is_ready_only_after_its_session_is_minted_and_admin_is_apart() {
    let org = Org::start().await;
    // The warm-up login takes 2 s: readiness must wait for it.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_secs(2)));
    let config = org.config(ADMIN, "warm = true") + &route("erp", &[HOST], USER, "");
    let started = Instant::now();
    let proxy = Proxy::start(&config);
    let admin = proxy.admin().await;
    assert_ne!(admin, proxy.addr, "the admin port is a port of its own");

    let health = get(admin, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);

    let first = get(admin, "/readyz").await;
    assert_eq!(first.status, 503, "not ready while warming: {}", first.body);
    assert_eq!(first.json()["ready"], false);
    let reason = first.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("acme") && reason.contains(USER),
        "the reason names what it waits for: {reason:?}"
    );

    // Ready without any caller request, once the one warm-up login answered.
    let ready_after = loop {
        let reply = get(admin, "/readyz").await;
        match reply.status {
            200 => {
                assert_eq!(reply.json()["ready"], true);
                break started.elapsed();
            }
            503 => assert!(reply.json()["reason"].is_string(), "{}", reply.body),
            other => panic!("readyz answered {other}: {}", reply.body),
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        ready_after >= Duration::from_millis(1800),
        "ready only after the delayed login: {ready_after:?}"
    );
    assert_eq!(org.mock.token_requests(), 1, "the session was minted once");
    assert!(org.mock.requests().is_empty(), "no caller request yet");
    // Still healthy, still ready: the warm session is kept, not re-minted every tick.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(admin, "/readyz").await.status, 200);
    assert_eq!(
        org.mock.token_requests(),
        1,
        "a fresh warm session is not renewed"
    );

    // The first caller uses the warm session.
    let reply = via(&proxy, &limits(HOST)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        org.mock.token_requests(),
        1,
        "no login for the first caller"
    );
    proxy.settle().await;
    let line = proxy.events("request").pop().unwrap();
    assert_eq!(line["session"], "cache", "{line}");

    // Other paths on the admin port: 404.
    for path in ["/", "/metrics/x", "/services/data/v61.0/limits"] {
        let reply = get(admin, path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }

    // The admin endpoints are not reachable through the proxy port, in either form.
    let origin_form = get(proxy.addr, "/metrics").await;
    let absolute_form = via(&proxy, &format!("http://{admin}/metrics")).await;
    for reply in [origin_form, absolute_form] {
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
        assert!(!reply.body.contains("sfproxy_"), "{}", reply.body);
    }
    let health = get(proxy.addr, "/healthz").await;
    assert_eq!(health.error_code(), "PROXY_NO_ROUTE");
}

/// The serving threads of process `pid`, by their name.
#[cfg(target_os = "linux")]
fn serving_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "sfproxy-worker")
        })
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn workers_sets_the_serving_threads_and_a_reload_leaves_them_until_restart() {
    let org = Org::start().await;
    let config = |workers: usize| {
        org.config(&format!("workers = {workers}"), "") + &route("erp", &[HOST], USER, "")
    };
    let proxy = Proxy::start(&config(3));
    let ready = proxy.wait_for_events("sfproxy ready", 1).await;
    assert_eq!(ready[0]["workers"], 3);
    assert_eq!(serving_threads(proxy.pid()), 3);
    for _ in 0..4 {
        assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    }

    proxy.rewrite_config(&config(1));
    proxy.signal("HUP").await;
    proxy.wait_for_events(RELOADED, 1).await;
    let warned = proxy.events("differs from the running value; takes effect on restart");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["key"], "proxy.workers");
    assert_eq!(serving_threads(proxy.pid()), 3);
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_all_route_still_cannot_reach_the_admin_port() {
    let org = Org::start().await;
    let config = org.config(ADMIN, "") + &route("all", &["*"], USER, "");
    let proxy = Proxy::start(&config);
    let admin = proxy.admin().await;
    // Without warm orgs, ready as soon as the port is bound.
    assert_eq!(get(admin, "/readyz").await.status, 200);

    // The route matches any host, but the upstream is always the org's instance.
    let reply = via(&proxy, &format!("http://{admin}/metrics")).await;
    assert!(
        !reply.body.contains("sfproxy_requests_total"),
        "{}",
        reply.body
    );
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/metrics", "it went to Salesforce");
}

// ---- Metrics: scrape, act, scrape.

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_moves_as_it_should() {
    let org = Org::with_users(vec![
        support::user(USER),
        support::user(OTHER_USER),
        MockUser {
            username: UNAPPROVED.to_owned(),
            approved: false,
            rest_api: true,
        },
    ])
    .await;
    // No remembered failures here: each failing login below must reach the token endpoint.
    let config = org.config(
        ADMIN,
        "rejected_backoff = \"0s\"\nunavailable_backoff = \"0s\"",
    ) + &route("erp", &[HOST], USER, "")
        + &route("wms", &[WMS_HOST], OTHER_USER, "")
        + &route("new", &[NEW_HOST], UNAPPROVED, "");
    let proxy = Proxy::start(&config);
    let admin = proxy.admin().await;
    const REQ: &str = "sfproxy_requests_total";
    const REQ_COUNT: &str = "sfproxy_request_duration_seconds_count";
    const UP_COUNT: &str = "sfproxy_upstream_duration_seconds_count";
    const TOKENS: &str = "sfproxy_token_requests_total";
    const CACHE: &str = "sfproxy_session_cache_total";
    const REPLAYS: &str = "sfproxy_session_replays_total";
    const USAGE: &str = "sfproxy_salesforce_api_usage";
    const LIMIT: &str = "sfproxy_salesforce_api_limit";
    const REFUSALS: &str = "sfproxy_refusals_total";
    let acme = ("org", "acme");

    // A cold request: a miss, one ok login, one upstream call, the API usage it reported.
    let s0 = Scrape::take(admin).await;
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    let s1 = Scrape::take(admin).await;
    assert_eq!(
        delta(&s0, &s1, REQ, &[("route", "erp"), ("status", "200")]),
        1.0
    );
    assert_eq!(delta(&s0, &s1, REQ_COUNT, &[("route", "erp")]), 1.0);
    assert!(s1.get("sfproxy_request_duration_seconds_sum", &[("route", "erp")]) > 0.0);
    assert_eq!(delta(&s0, &s1, UP_COUNT, &[acme]), 1.0);
    assert_eq!(delta(&s0, &s1, TOKENS, &[acme, ("outcome", "ok")]), 1.0);
    assert_eq!(delta(&s0, &s1, CACHE, &[acme, ("result", "miss")]), 1.0);
    assert_eq!(delta(&s0, &s1, CACHE, &[acme, ("result", "hit")]), 0.0);
    assert_eq!(s1.get(USAGE, &[acme]), org.mock.api_usage() as f64);
    assert_eq!(s1.get(LIMIT, &[acme]), 15_000.0);
    assert!(
        s1.has(
            "sfproxy_request_duration_seconds_bucket",
            &[("route", "erp"), ("le", "+Inf")]
        ),
        "a histogram, with buckets"
    );

    // A warm request: a hit, no login; the usage gauge follows Sforce-Limit-Info.
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    let s2 = Scrape::take(admin).await;
    assert_eq!(
        delta(&s1, &s2, REQ, &[("route", "erp"), ("status", "200")]),
        1.0
    );
    assert_eq!(delta(&s1, &s2, CACHE, &[acme, ("result", "hit")]), 1.0);
    assert_eq!(delta(&s1, &s2, CACHE, &[acme, ("result", "miss")]), 0.0);
    assert_eq!(delta(&s1, &s2, TOKENS, &[acme, ("outcome", "ok")]), 0.0);
    assert_eq!(delta(&s1, &s2, UP_COUNT, &[acme]), 1.0);
    assert_eq!(org.mock.api_usage(), 2);
    assert_eq!(s2.get(USAGE, &[acme]), 2.0);

    // Logins refused by Salesforce: an unapproved user, then an injected OAuth error.
    let reply = via(&proxy, &limits(NEW_HOST)).await;
    assert_eq!(reply.error_code(), "PROXY_LOGIN_REJECTED", "{}", reply.body);
    org.mock.fail_next_token_requests(
        1,
        TokenFailure::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: "ip restricted".into(),
        },
    );
    let reply = via(&proxy, &limits(WMS_HOST)).await;
    assert_eq!(reply.error_code(), "PROXY_LOGIN_REJECTED", "{}", reply.body);
    // The login host is down: an injected 503 page, answered to the try and both retries.
    org.mock.fail_next_token_requests(
        3,
        TokenFailure::Raw {
            status: 503,
            content_type: "text/html".into(),
            body: "<html>Service Unavailable</html>".into(),
        },
    );
    let reply = via(&proxy, &limits(WMS_HOST)).await;
    assert_eq!(
        reply.error_code(),
        "PROXY_LOGIN_UNAVAILABLE",
        "{}",
        reply.body
    );
    let s3 = Scrape::take(admin).await;
    assert_eq!(
        delta(&s2, &s3, TOKENS, &[acme, ("outcome", "rejected")]),
        2.0
    );
    assert_eq!(
        delta(&s2, &s3, TOKENS, &[acme, ("outcome", "unavailable")]),
        3.0
    );
    assert_eq!(delta(&s2, &s3, TOKENS, &[acme, ("outcome", "ok")]), 0.0);
    assert_eq!(
        delta(&s2, &s3, REFUSALS, &[("code", "PROXY_LOGIN_REJECTED")]),
        2.0
    );
    assert_eq!(
        delta(&s2, &s3, REFUSALS, &[("code", "PROXY_LOGIN_UNAVAILABLE")]),
        1.0
    );
    assert_eq!(
        delta(&s2, &s3, REQ, &[("route", "new"), ("status", "502")]),
        1.0
    );
    assert_eq!(
        delta(&s2, &s3, REQ, &[("route", "wms"), ("status", "502")]),
        1.0
    );
    assert_eq!(
        delta(&s2, &s3, REQ, &[("route", "wms"), ("status", "503")]),
        1.0
    );
    assert_eq!(
        delta(&s2, &s3, UP_COUNT, &[acme]),
        0.0,
        "nothing went upstream"
    );
    assert_eq!(delta(&s2, &s3, CACHE, &[acme, ("result", "miss")]), 0.0);

    // Salesforce expired the session: one replay on the route, a new login, two upstream calls.
    org.mock.expire_sessions();
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    let s4 = Scrape::take(admin).await;
    assert_eq!(delta(&s3, &s4, REPLAYS, &[("route", "erp")]), 1.0);
    assert_eq!(delta(&s3, &s4, TOKENS, &[acme, ("outcome", "ok")]), 1.0);
    assert_eq!(delta(&s3, &s4, UP_COUNT, &[acme]), 2.0);
    assert_eq!(
        delta(&s3, &s4, REQ, &[("route", "erp"), ("status", "200")]),
        1.0
    );
    assert_eq!(s4.get(USAGE, &[acme]), org.mock.api_usage() as f64);
    assert_eq!(
        org.mock.api_usage(),
        3,
        "the expired attempt was not served"
    );

    // Refusals before a route: labelled route="none", counted by errorCode.
    let reply = via(&proxy, &limits("evil.example")).await;
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "--path-as-is",
        &url(HOST, "/services/../secret"),
    ])
    .await;
    assert_eq!(reply.error_code(), "PROXY_BAD_REQUEST");
    let s5 = Scrape::take(admin).await;
    assert_eq!(
        delta(&s4, &s5, REFUSALS, &[("code", "PROXY_NO_ROUTE")]),
        1.0
    );
    assert_eq!(
        delta(&s4, &s5, REFUSALS, &[("code", "PROXY_BAD_REQUEST")]),
        1.0
    );
    assert_eq!(
        delta(&s4, &s5, REQ, &[("route", "none"), ("status", "403")]),
        1.0
    );
    assert_eq!(
        delta(&s4, &s5, REQ, &[("route", "none"), ("status", "400")]),
        1.0
    );
    assert_eq!(delta(&s4, &s5, REQ_COUNT, &[("route", "none")]), 2.0);
    assert_eq!(delta(&s4, &s5, REPLAYS, &[("route", "erp")]), 0.0);
    assert_eq!(delta(&s4, &s5, UP_COUNT, &[acme]), 0.0);

    // No reload happened: the reload counter, if present, is zero.
    assert_eq!(
        s5.get("sfproxy_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        s5.get("sfproxy_config_reloads_total", &[("result", "error")]),
        0.0
    );
}

// ---- Request id and the request log line.

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_echoed_and_logged_with_the_request_line() {
    let org = Org::start().await;
    let proxy = Proxy::start(&(org.config("", "") + &route("erp", &[HOST], USER, "")));
    let query = url(
        HOST,
        "/services/data/v61.0/query?q=SELECT+Name+FROM+Contact+WHERE+Email='x@y.z'",
    );

    // The caller's id comes back and names the log line.
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "X-Request-Id: erp-job-42.7",
        &query,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("x-request-id").as_deref(),
        Some("erp-job-42.7")
    );
    let lines = proxy.wait_for_events("request", 1).await;
    let line = lines
        .iter()
        .find(|l| l["id"] == "erp-job-42.7")
        .unwrap_or_else(|| panic!("no request line with the caller's id: {lines:?}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["client"], "local", "{line}");
    assert_eq!(line["route"], "erp", "{line}");
    assert_eq!(line["org"], "acme", "{line}");
    assert_eq!(line["user"], USER, "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(
        line["path"], "/services/data/v61.0/query",
        "no query string: {line}"
    );
    assert_eq!(line["status"], 200, "{line}");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );
    assert_eq!(line["session"], "minted", "{line}");
    assert!(
        org.mock.requests()[0].path_and_query.contains("Email="),
        "the query itself is forwarded"
    );

    // Without an id, a new one is generated, returned and logged.
    let reply = via(&proxy, &query).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let generated = reply.header("x-request-id").expect("a generated id");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    assert_ne!(generated, "erp-job-42.7");
    let lines = proxy.wait_for_events("request", 2).await;
    let line = lines
        .iter()
        .find(|l| l["id"] == generated.as_str())
        .unwrap_or_else(|| panic!("no request line with the generated id {generated}: {lines:?}"));
    assert_eq!(line["session"], "cache", "{line}");
    assert_eq!(line["status"], 200, "{line}");

    // An id that is not a short printable token is replaced, not echoed.
    let long = "x".repeat(200);
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        &format!("X-Request-Id: {long}"),
        &query,
    ])
    .await;
    let replaced = reply.header("x-request-id").expect("an id");
    assert_ne!(replaced, long);
    assert_eq!(replaced.len(), 36, "{replaced}");

    // An expired session: the line says replayed.
    org.mock.expire_sessions();
    let reply = curl(&["-x", &proxy.url(), "-H", "X-Request-Id: replay-1", &query]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-request-id").as_deref(), Some("replay-1"));
    let lines = proxy.wait_for_events("request", 4).await;
    let line = lines.iter().find(|l| l["id"] == "replay-1").unwrap();
    assert_eq!(line["session"], "replayed", "{line}");

    // Refusals get an id and a line too.
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "X-Request-Id: refused-1",
        &limits("evil.example"),
    ])
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-request-id").as_deref(), Some("refused-1"));
    let lines = proxy.wait_for_events("request", 5).await;
    let line = lines.iter().find(|l| l["id"] == "refused-1").unwrap();
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["route"], "none", "{line}");

    // Never the query (SOQL carries personal data), never a token.
    proxy.settle().await;
    let log = proxy.log();
    for secret in ["SELECT", "x@y.z", "Email"] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    for auth in org.seen_authorizations() {
        let token = auth.trim_start_matches("Bearer ");
        assert!(!log.contains(token), "an access token is in the log");
    }
    // Token requests are logged with org, user and outcome.
    let logins = proxy.events("token request");
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|l| l["org"] == "acme" && l["user"] == USER && l["outcome"] == "ok")
    );
}

// ---- Reload on SIGHUP.

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_reload_serves_new_routes_and_lets_requests_in_flight_finish() {
    let org = Org::start().await;
    let before = org.config(ADMIN, "") + &route("erp", &[HOST], USER, "");
    let proxy = Proxy::start(&before);
    let admin = proxy.admin().await;
    let s0 = Scrape::take(admin).await;

    let reply = via(&proxy, &url(WMS_HOST, "/services/apexrest/echo")).await;
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE", "not yet routed");

    // A request in flight on the old config: its login takes 1.5 s.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(1500)));
    let in_flight = {
        let proxy_url = proxy.url();
        tokio::spawn(async move {
            curl(&["-x", &proxy_url, &url(HOST, "/services/apexrest/echo")]).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while org.mock.token_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the in-flight request never logged in"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    proxy.rewrite_config(&(before.clone() + &route("wms", &[WMS_HOST], OTHER_USER, "")));
    proxy.signal("HUP").await;
    proxy.wait_for_events(RELOADED, 1).await;
    assert!(
        !in_flight.is_finished(),
        "the reload did not wait for the request"
    );

    let reply = via(&proxy, &url(WMS_HOST, "/services/apexrest/echo")).await;
    assert_eq!(reply.status, 200, "the new route serves: {}", reply.body);
    assert_eq!(reply.json()["user"], OTHER_USER);

    let old = in_flight.await.unwrap();
    assert_eq!(
        old.status, 200,
        "the request in flight finished: {}",
        old.body
    );
    assert_eq!(old.json()["user"], USER);
    let reply = via(&proxy, &limits(HOST)).await;
    assert_eq!(
        reply.status, 200,
        "the old route still serves: {}",
        reply.body
    );

    let s1 = Scrape::take(admin).await;
    assert_eq!(
        delta(
            &s0,
            &s1,
            "sfproxy_config_reloads_total",
            &[("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &s0,
            &s1,
            "sfproxy_config_reloads_total",
            &[("result", "error")]
        ),
        0.0
    );
}

/// What `sfproxy run` prints for `path` when it refuses to start on it.
async fn start_error(path: &std::path::Path) -> String {
    let child = tokio::process::Command::new(support::binary())
        .arg("run")
        .arg("--config")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sfproxy");
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("a refused config exits at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().expect("one line");
    line.strip_prefix("sfproxy: ")
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_reload_is_refused_with_the_start_error_and_the_old_config_serves() {
    let org = Org::start().await;
    let good = org.config(ADMIN, "") + &route("erp", &[HOST], USER, "");
    let proxy = Proxy::start(&good);
    let admin = proxy.admin().await;
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    let s0 = Scrape::take(admin).await;

    let syntax_error =
        good.clone() + "\n[[routes]]\nname = \"wms\nhosts = [\"wms.my.salesforce.com\"]\n";
    let unknown_org = good.clone()
        + &format!(
            "\n[[routes]]\nname = \"wms\"\nhosts = [\"{WMS_HOST}\"]\norg = \"nope\"\nuser = \"{OTHER_USER}\"\n"
        );
    for (n, (bad, names)) in [
        (syntax_error, "routes.name"),
        (unknown_org, "routes.wms.org"),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.rewrite_config(&bad);
        proxy.signal("HUP").await;
        let refused = proxy.wait_for_events(REFUSED_RELOAD, n + 1).await;
        let error = refused[n]["error"].as_str().unwrap_or_default().to_owned();
        assert_eq!(refused[n]["level"], "ERROR");
        assert!(
            error.contains(names),
            "the error names the key {names}: {error}"
        );
        assert_eq!(
            error,
            start_error(&proxy.config_path()).await,
            "the same precise error as at start"
        );

        // The old config keeps serving, with its session; the new route does not exist.
        let reply = via(&proxy, &limits(HOST)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = via(&proxy, &limits(WMS_HOST)).await;
        assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
    }
    proxy.settle().await;
    assert!(proxy.events(RELOADED).is_empty());
    assert_eq!(org.mock.token_requests(), 1, "the session survived");

    let s1 = Scrape::take(admin).await;
    assert_eq!(
        delta(
            &s0,
            &s1,
            "sfproxy_config_reloads_total",
            &[("result", "error")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            &s0,
            &s1,
            "sfproxy_config_reloads_total",
            &[("result", "ok")]
        ),
        0.0
    );
    assert_eq!(get(admin, "/readyz").await.status, 200, "still ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_sessions_of_unchanged_orgs_and_renews_changed_ones() {
    let org = Org::start().await;
    let routes = route("erp", &[HOST], USER, "");
    let base = org.config("", "") + &routes;
    let proxy = Proxy::start(&base);
    let mut reloads = 0;
    let mut reload = async |config: String| {
        proxy.rewrite_config(&config);
        proxy.signal("HUP").await;
        reloads += 1;
        proxy.wait_for_events(RELOADED, reloads).await;
    };
    let last_session = async |proxy: &Proxy| {
        proxy.settle().await;
        proxy.events("request").pop().unwrap()["session"].clone()
    };

    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    assert_eq!(org.mock.token_requests(), 1);

    // Only routes changed: the session stays.
    reload(base.clone() + &route("wms", &[WMS_HOST], OTHER_USER, "")).await;
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    assert_eq!(
        org.mock.token_requests(),
        1,
        "no login after a routes-only reload"
    );
    assert_eq!(last_session(&proxy).await, "cache");
    let rest_calls = org.mock.requests().len();

    // client_id changed: the next call logs in again (the stand-in only knows the old consumer
    // key, so the new login is refused: proof that the cached session was not used).
    let other_client = base.replace(
        &format!("client_id = \"{}\"", support::CONSUMER_KEY),
        "client_id = \"3MVG9other.consumer\"",
    );
    assert_ne!(other_client, base);
    reload(other_client).await;
    let reply = via(&proxy, &limits(HOST)).await;
    assert_eq!(
        org.mock.token_requests(),
        2,
        "a new login after client_id changed"
    );
    assert_eq!(reply.error_code(), "PROXY_LOGIN_REJECTED", "{}", reply.body);
    assert!(reply.body.contains("invalid_client_id"), "{}", reply.body);
    assert_eq!(
        org.mock.requests().len(),
        rest_calls,
        "the old session was not sent"
    );

    // audience changed: likewise.
    let other_audience = base.replace(
        &format!("audience = \"{}\"", support::AUDIENCE),
        "audience = \"https://test.salesforce.com\"",
    );
    assert_ne!(other_audience, base);
    reload(other_audience).await;
    let reply = via(&proxy, &limits(HOST)).await;
    assert_eq!(
        org.mock.token_requests(),
        3,
        "a new login after audience changed"
    );
    assert_eq!(reply.error_code(), "PROXY_LOGIN_REJECTED", "{}", reply.body);
    assert!(reply.body.contains("audience"), "{}", reply.body);
    assert_eq!(
        org.mock.requests().len(),
        rest_calls,
        "the old session was not sent"
    );

    // login_url changed to another name of the same stand-in: a new session that works. (Its
    // token response still names the instance `localhost`, no longer the login host itself:
    // allowed by `instance_hosts`.)
    let url = org.mock.url();
    let instance_hosts = format!(
        "[orgs.acme]\ninstance_hosts = [\"localhost:{}\"]\n",
        org.mock.addr().port()
    );
    let other_login = base
        .replace(&url, &url.replace("localhost", "127.0.0.1"))
        .replace("[orgs.acme]\n", &instance_hosts);
    assert_ne!(other_login, base);
    reload(other_login.clone()).await;
    let reply = via(&proxy, &limits(HOST)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        org.mock.token_requests(),
        4,
        "a new login after login_url changed"
    );
    assert_eq!(last_session(&proxy).await, "minted");
    let auth = org.seen_authorizations();
    assert_ne!(auth[auth.len() - 1], auth[0], "a new session was sent");

    // And a routes-only reload of that config keeps the new session.
    reload(other_login + &route("wms", &[WMS_HOST], OTHER_USER, "")).await;
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);
    assert_eq!(org.mock.token_requests(), 4);
    assert_eq!(last_session(&proxy).await, "cache");
}

// ---- Graceful shutdown.

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish_refuses_new_ones_and_exits_zero() {
    let org = Org::start().await;
    let mut proxy = Proxy::start(
        &(org.config("shutdown_grace = \"10s\"", "") + &route("erp", &[HOST], USER, "")),
    );
    // Every request waits on one 2 s login.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_secs(2)));
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let proxy_url = proxy.url();
            tokio::spawn(async move {
                curl(&["-x", &proxy_url, &url(HOST, "/services/apexrest/echo")]).await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while org.mock.token_requests() == 0 {
        assert!(Instant::now() < deadline, "no request reached the login");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the other curls connect and send their requests.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let term = Instant::now();
    proxy.signal("TERM").await;
    proxy
        .wait_for_events("stopped accepting; letting requests in flight finish", 1)
        .await;
    assert!(
        in_flight.iter().all(|t| !t.is_finished()),
        "the requests are still in flight"
    );
    let refused = tokio::net::TcpStream::connect(proxy.addr).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "new connections are refused after SIGTERM: {refused:?}"
    );

    for task in in_flight {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["user"], USER);
    }
    assert_eq!(
        org.mock.requests().len(),
        10,
        "every request reached Salesforce"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the proxy exits after its requests finished");
    let exited_after = term.elapsed();
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", proxy.log());
    assert!(
        exited_after < Duration::from_secs(5),
        "exits once the requests finished, well within shutdown_grace: {exited_after:?}"
    );
    proxy.settle().await;
    assert!(!proxy.events("sfproxy stopped").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_stuck_past_shutdown_grace_does_not_hold_the_exit() {
    let org = Org::start().await;
    let mut proxy = Proxy::start(
        &(org.config("shutdown_grace = \"1s\"", "") + &route("erp", &[HOST], USER, "")),
    );
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_secs(5)));
    // A raw connection: the answer may never come, and curl would only report a failure.
    let stuck = {
        let addr = proxy.addr;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(
                    format!(
                        "GET http://{HOST}/services/apexrest/echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while org.mock.token_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the login"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let term = Instant::now();
    proxy.signal("TERM").await;
    let status = proxy
        .wait_exit(Duration::from_secs(4))
        .await
        .expect("the proxy exits after shutdown_grace");
    let exited_after = term.elapsed();
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", proxy.log());
    assert!(
        exited_after >= Duration::from_millis(900),
        "it waited for the grace period: {exited_after:?}"
    );
    assert!(
        exited_after < Duration::from_millis(2500),
        "it did not wait for the stuck request: {exited_after:?}"
    );
    let answer = tokio::time::timeout(Duration::from_secs(2), stuck)
        .await
        .expect("the stuck connection is closed")
        .unwrap();
    assert!(!answer.contains(" 200 "), "{answer}");
    assert!(
        proxy.log().contains("requests still in flight after 1s"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_draining() {
    let org = Org::start().await;
    let mut proxy = Proxy::start(
        &(org.config(&format!("{ADMIN}\nshutdown_grace = \"10s\""), "")
            + &route("erp", &[HOST], USER, "")),
    );
    let admin = proxy.admin().await;
    assert_eq!(get(admin, "/readyz").await.status, 200);
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_secs(2)));
    let in_flight = {
        let proxy_url = proxy.url();
        tokio::spawn(async move { curl(&["-x", &proxy_url, &limits(HOST)]).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while org.mock.token_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the login"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.signal("TERM").await;
    proxy
        .wait_for_events("stopped accepting; letting requests in flight finish", 1)
        .await;
    // The proxy port is closed: a load balancer asking /readyz must stop sending traffic.
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, 503, "readyz while draining: {}", ready.body);
    assert_eq!(ready.json()["ready"], false);
    assert!(ready.json()["reason"].is_string(), "{}", ready.body);
    assert_eq!(in_flight.await.unwrap().status, 200);
    assert_eq!(
        proxy
            .wait_exit(Duration::from_secs(10))
            .await
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_right_after_ready_are_handled() {
    let org = Org::start().await;
    let config = org.config("", "") + &route("erp", &[HOST], USER, "");
    // The window is short: it takes a few dozen starts to hit it.
    for attempt in 0..50 {
        let mut proxy = Proxy::start(&config);
        proxy.signal("TERM").await;
        let status = proxy.wait_exit(Duration::from_secs(5)).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "attempt {attempt}: SIGTERM right after ready: {status:?}"
        );

        let mut proxy = Proxy::start(&config);
        proxy.signal("HUP").await;
        let died = proxy.wait_exit(Duration::from_millis(300)).await;
        assert!(
            died.is_none(),
            "attempt {attempt}: SIGHUP right after ready killed the proxy: {died:?}"
        );
        proxy.wait_for_events(RELOADED, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_naming_a_fifo_or_a_device_is_refused_and_nothing_stalls() {
    let org = Org::start().await;
    let good = org.config(ADMIN, "") + &route("erp", &[HOST], USER, "");
    let proxy = Proxy::start(&good);
    let admin = proxy.admin().await;
    assert_eq!(via(&proxy, &limits(HOST)).await.status, 200);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("nobody-writes.key");
    support::mkfifo(&fifo);
    let key_line = good
        .lines()
        .find(|l| l.starts_with("private_key_file = "))
        .unwrap()
        .to_owned();
    let ca_line = good
        .lines()
        .find(|l| l.starts_with("ca_file = "))
        .unwrap()
        .to_owned();
    let fifo_key = good.replace(
        &key_line,
        &format!("private_key_file = \"{}\"", fifo.display()),
    );
    let zero_key = good.replace(&key_line, "private_key_file = \"/dev/zero\"");
    let fifo_ca = good.replace(&ca_line, &format!("ca_file = \"{}\"", fifo.display()));
    for (n, (bad, key, says)) in [
        (fifo_key, "orgs.acme.private_key_file", "it is a FIFO"),
        (
            zero_key,
            "orgs.acme.private_key_file",
            "/dev/zero: it is a device",
        ),
        (fifo_ca, "proxy.ca_file", "it is a FIFO"),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.rewrite_config(&bad);
        proxy.signal("HUP").await;
        // The admin port and the proxy port answer while the reload runs and after it.
        let target = limits(HOST);
        let (health, served) = tokio::join!(get(admin, "/healthz"), via(&proxy, &target));
        assert_eq!(health.status, 200);
        assert_eq!(served.status, 200, "{}", served.body);
        let refused = proxy.wait_for_events(REFUSED_RELOAD, n + 1).await;
        let error = refused[n]["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("{key}: cannot read")), "{error}");
        assert!(error.contains(says), "{error}");

        assert_eq!(get(admin, "/healthz").await.status, 200);
        assert_eq!(get(admin, "/readyz").await.status, 200);
        let reply = via(&proxy, &limits(HOST)).await;
        assert_eq!(
            reply.status, 200,
            "the old config keeps serving: {}",
            reply.body
        );
    }
    proxy.settle().await;
    assert!(proxy.events(RELOADED).is_empty());
    assert_eq!(org.mock.token_requests(), 1, "the session survived");
}
