//! The main job through the real binary: curl as a legacy caller, with `-x` and `HTTP_PROXY`, in
//! forward and gateway form, against the stand-in org over real TLS.

mod support;

use support::{OTHER_USER, Org, Proxy, USER, curl, curl_with_env, route};

const LIMITS: &str = "http://acme.my.salesforce.com/services/data/v61.0/limits";

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_the_proxy_gets_salesforce_answer_with_injected_bearer() {
    let org = Org::start().await;
    let config = org.config("", "") + &route("erp", &["acme.my.salesforce.com"], USER, "");
    let proxy = Proxy::start(&config);

    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "Authorization: Bearer callers-own",
        LIMITS,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["DailyApiRequests"]["Max"].is_number());
    assert!(reply.header("sforce-limit-info").is_some());
    assert!(reply.header("x-request-id").is_some());

    let seen = org.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/services/data/v61.0/limits");
    assert!(seen[0].session_valid, "the stand-in saw a live session");
    let auth = support::header(&seen[0].headers, "authorization").unwrap();
    assert!(auth.starts_with("Bearer 00D"), "{auth}");
    assert!(!auth.contains("callers-own"));
    assert_eq!(
        support::header(&seen[0].headers, "host").unwrap(),
        org.mock.url().trim_start_matches("https://")
    );
    assert!(support::header(&seen[0].headers, "proxy-connection").is_none());
    assert_eq!(org.mock.token_requests(), 1);

    // HTTP_PROXY, as a legacy job would set it; the session comes from the cache.
    let reply = curl_with_env(
        &["http://acme.my.salesforce.com/services/data/v61.0/query?q=SELECT+Id+FROM+Account"],
        &[("http_proxy", &proxy.url())],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["done"], true);
    assert_eq!(org.mock.token_requests(), 1, "the session was reused");
    assert_eq!(
        org.mock.requests()[1].path_and_query,
        "/services/data/v61.0/query?q=SELECT+Id+FROM+Account",
        "path and query forwarded as sent"
    );

    // The log line of the request names route, org, user and session source, never the query.
    proxy.settle().await;
    let lines = proxy.events("request");
    let last = lines.last().unwrap();
    assert_eq!(last["route"], "erp");
    assert_eq!(last["org"], "acme");
    assert_eq!(last["user"], USER);
    assert_eq!(last["session"], "cache");
    assert_eq!(last["status"], 200);
    assert!(
        !proxy.log().contains("SELECT"),
        "query strings are not logged"
    );
    assert!(!proxy.log().contains("Bearer 00D"), "tokens are not logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_form_strips_the_prefix() {
    let org = Org::start().await;
    let config = org.config("", "")
        + &route(
            "gw",
            &["erp.gateway.local"],
            USER,
            "path_prefix = \"/acme/\"\nstrip_prefix = true",
        );
    let proxy = Proxy::start(&config);
    let url = format!("{}/acme/services/data/v61.0/sobjects/Account", proxy.url());
    let reply = curl(&[
        "-H",
        "Host: erp.gateway.local",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"Name":"Acme"}"#,
        &url,
    ])
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["success"], true);
    let seen = org.mock.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].path_and_query,
        "/services/data/v61.0/sobjects/Account"
    );
    assert_eq!(seen[0].body_len, 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_on_one_host_act_as_two_users() {
    let org = Org::start().await;
    // secret_sha256 of "erp-secret" and "wms-secret".
    let erp_hash = hex(&support::sha256(b"erp-secret"));
    let wms_hash = hex(&support::sha256(b"wms-secret"));
    let config = org.config("", "")
        + &format!(
            "[clients.erp]\nsecret_sha256 = \"{erp_hash}\"\n[clients.wms]\nsecret_sha256 = \"{wms_hash}\"\n"
        )
        + &route(
            "erp",
            &["acme.my.salesforce.com"],
            USER,
            "clients = [\"erp\"]",
        )
        + &route(
            "wms",
            &["acme.my.salesforce.com"],
            OTHER_USER,
            "clients = [\"wms\"]",
        );
    let proxy = Proxy::start(&config);
    let echo = "http://acme.my.salesforce.com/services/apexrest/echo";

    let erp = curl(&["-x", &proxy.url(), "--proxy-user", "erp:erp-secret", echo]).await;
    let wms = curl(&["-x", &proxy.url(), "--proxy-user", "wms:wms-secret", echo]).await;
    assert_eq!(erp.status, 200, "{}", erp.body);
    assert_eq!(erp.json()["user"], USER);
    assert_eq!(wms.status, 200, "{}", wms.body);
    assert_eq!(wms.json()["user"], OTHER_USER);
    assert_eq!(org.mock.token_requests(), 2, "one session per (org, user)");
    let auth = org.seen_authorizations();
    assert_ne!(auth[0], auth[1]);
    for request in org.mock.requests() {
        assert!(support::header(&request.headers, "proxy-authorization").is_none());
    }

    // Wrong secret, unknown client, no credentials: 407 with a challenge, nothing sent upstream.
    for args in [
        vec!["--proxy-user", "erp:wrong-secret"],
        vec!["--proxy-user", "nobody:erp-secret"],
        vec![],
    ] {
        let url = proxy.url();
        let mut all = vec!["-x", url.as_str()];
        all.extend(args.iter().copied());
        all.push(echo);
        let reply = curl(&all).await;
        assert_eq!(reply.status, 407, "{args:?}: {}", reply.body);
        assert_eq!(reply.error_code(), "PROXY_AUTH_REQUIRED");
        assert_eq!(
            reply.header("proxy-authenticate").as_deref(),
            Some("Basic realm=\"sfproxy\"")
        );
    }
    assert_eq!(org.mock.requests().len(), 2);
    // The known client's refusal names it; an unknown name (perhaps a mistyped secret) is not
    // logged.
    let refusals = proxy.wait_for_events("proxy credentials refused", 2).await;
    let clients: Vec<&str> = refusals
        .iter()
        .filter_map(|e| e["client"].as_str().map(|c| c.trim_matches('"')))
        .collect();
    assert_eq!(clients, ["erp", "(unknown)"]);
    proxy.settle().await;
    assert!(!proxy.log().contains("nobody"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_send_nothing_upstream() {
    let org = Org::start().await;
    let config = org.config("", "")
        + "[clients.erp]\nnetworks = [\"127.0.0.0/8\"]\n[clients.other]\nnetworks = [\"10.9.0.0/16\"]\n"
        + &route(
            "erp",
            &["acme.my.salesforce.com"],
            USER,
            "clients = [\"other\"]",
        );
    let proxy = Proxy::start(&config);

    let reply = curl(&["-x", &proxy.url(), "http://evil.example/services/data/"]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );

    let reply = curl(&["-x", &proxy.url(), LIMITS]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.error_code(), "PROXY_CLIENT_FORBIDDEN");

    // An https:// URL makes curl ask for a tunnel: refused, with what to do instead.
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "https://acme.my.salesforce.com/services/data/",
    ])
    .await;
    assert_eq!(reply.status, 405);
    let answer = proxy
        .raw("CONNECT acme.my.salesforce.com:443 HTTP/1.1\r\nHost: acme.my.salesforce.com:443\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.contains(r#""errorCode":"PROXY_CONNECT_UNSUPPORTED""#),
        "{answer}"
    );
    assert!(answer.contains("send http:// URLs"), "{answer}");

    let reply = curl(&[
        "-x",
        &proxy.url(),
        "--path-as-is",
        "http://acme.my.salesforce.com/services/../secret",
    ])
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "PROXY_BAD_REQUEST");

    assert!(org.mock.requests().is_empty(), "nothing reached Salesforce");
    assert_eq!(
        org.mock.token_requests(),
        0,
        "no login for a refused request"
    );
    proxy.settle().await;
    let refusals = proxy.events("refused");
    let codes: Vec<&str> = refusals.iter().filter_map(|e| e["code"].as_str()).collect();
    assert_eq!(
        codes,
        [
            "PROXY_NO_ROUTE",
            "PROXY_CLIENT_FORBIDDEN",
            "PROXY_CONNECT_UNSUPPORTED",
            "PROXY_CONNECT_UNSUPPORTED",
            "PROXY_BAD_REQUEST"
        ]
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_callers_without_tls_are_served() {
    let org = Org::start().await;
    let proxy =
        Proxy::start(&(org.config("", "") + &route("erp", &["acme.my.salesforce.com"], USER, "")));
    let connect_to = format!("acme.my.salesforce.com:80:{}", proxy.addr);
    let reply = curl(&[
        "--http2-prior-knowledge",
        "--connect-to",
        &connect_to,
        LIMITS,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].session_valid, "the session went upstream");
}
