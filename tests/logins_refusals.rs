//! Legacy logins refused, and session ids sfproxy will not take: a wrong password gets
//! Salesforce's own answer and costs no login; past `max_failures_per_minute` a source is refused
//! whatever it sends; an id tampered with, expired, sealed with another key or used outside its
//! client's networks gets `INVALID_SESSION_ID` in the API's shape (REST, Bulk 1.0, SOAP), on
//! which a legacy client logs in again. And the other side: a thousand logins at once cost one
//! JWT bearer login, and every process with the same key takes the same ids.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sfproxy::mock_org::TokenFailure;
use support::{
    Org, Proxy, Reply, USER, curl,
    logins::{
        LOGIN_HOST, MY_DOMAIN, SECRET, VERSION, config, password_grant, query_envelope, soap,
        soap_login, xml_text,
    },
    scrape::{Scrape, delta},
    sha256_hex,
};

const ADMIN: &str = "admin_listen = \"127.0.0.1:0\"";

/// Salesforce's answer to a failed password grant.
fn invalid_grant() -> serde_json::Value {
    serde_json::json!({"error": "invalid_grant", "error_description": "authentication failure"})
}

/// The access token of a granted login.
fn access_token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

/// `GET /services/data/v61.0/limits` on the My Domain host with `Authorization: Bearer {id}`
/// (no header when `id` is empty), with curl's `extra` arguments.
async fn rest(proxy: &Proxy, extra: &[&str], id: &str) -> Reply {
    let url = format!("http://{MY_DOMAIN}/services/data/v{VERSION}/limits");
    let bearer = format!("Authorization: Bearer {id}");
    let proxy_url = proxy.url();
    let mut args = vec!["-x", proxy_url.as_str()];
    args.extend(extra);
    if !id.is_empty() {
        args.extend(["-H", bearer.as_str()]);
    }
    args.push(&url);
    curl(&args).await
}

/// REST's answer to a session it does not take.
fn assert_invalid_session(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}])
    );
}

/// The reasons the log gives for the handed-out ids it refused.
fn refusal_reasons(proxy: &Proxy) -> Vec<String> {
    proxy
        .events(
            "refused a session id on a route with logins = true; answered INVALID_SESSION_ID so \
             the client logs in again",
        )
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// A 32-byte logins key file (base64, as `sfproxy keygen --logins-key` writes) in the org's
/// directory; returns the `[logins]` line naming it.
fn key_file(org: &Org, name: &str, byte: u8) -> String {
    use base64::Engine;
    let path = org.dir.path().join(format!("{name}.key"));
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    format!("key_file = \"{}\"", path.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_get_salesforces_answer_and_past_the_limit_so_does_the_right_one() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, ADMIN, "max_failures_per_minute = 3", ""));
    let admin = proxy.admin().await;
    let before = Scrape::take(admin).await;

    // A wrong password, and an unknown username with the right one: Salesforce's own answer.
    for (username, password) in [
        (USER, "wrong-secret"),
        ("nobody@acme.example", SECRET),
        (USER, "wrong-secret"),
    ] {
        let reply = password_grant(&proxy, &[], username, password).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json(), invalid_grant());
    }
    // Three failures from 127.0.0.1 in the minute: the right password is refused too, however
    // often it is tried...
    for _ in 0..10 {
        let reply = password_grant(&proxy, &[], USER, SECRET).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json(), invalid_grant());
    }
    // ...and a SOAP login() with it.
    let reply = soap_login(&proxy, USER, SECRET).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        xml_text(&reply.body, "faultcode").unwrap(),
        "sf:INVALID_LOGIN"
    );
    // A reload does not forget it.
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 1).await;
    let reply = password_grant(&proxy, &[], USER, SECRET).await;
    assert_eq!(reply.json(), invalid_grant());
    // Nothing reached Salesforce.
    assert_eq!(org.mock.token_requests(), 0);
    assert!(org.mock.requests().is_empty());
    assert!(org.mock.soap_calls().is_empty());

    // Another source is not held back.
    let reply = password_grant(&proxy, &["--interface", "127.0.0.2"], USER, SECRET).await;
    access_token(&reply);
    assert_eq!(org.mock.token_requests(), 1);

    let after = Scrape::take(admin).await;
    let counted = |grant: &str, outcome: &str| {
        delta(
            &before,
            &after,
            "sfproxy_legacy_logins_total",
            &[("grant", grant), ("outcome", outcome)],
        )
    };
    assert_eq!(counted("password", "invalid"), 3.0);
    assert_eq!(counted("password", "limited"), 11.0);
    assert_eq!(counted("soap", "limited"), 1.0);
    assert_eq!(counted("password", "ok"), 1.0);
    proxy.settle().await;
    let refused = proxy.events("legacy login refused: INVALID_LOGIN");
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|e| e["source"] == "127.0.0.1"));
    // Logged once a minute at WARN, the refusals after it at DEBUG.
    let levels: Vec<String> = proxy
        .events(
            "legacy login refused: too many wrong passwords from this address in the last minute \
             (max_failures_per_minute)",
        )
        .iter()
        .map(|e| e["level"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(levels.len(), 12);
    assert_eq!(levels[0], "WARN");
    assert!(levels[1..].iter().all(|l| l == "DEBUG"), "{levels:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_tampered_with_stale_expired_or_absent_get_invalid_session_id_then_a_login_works() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "session_ttl = \"2s\"", ""));
    let id = access_token(&password_grant(&proxy, &[], USER, SECRET).await);
    assert_eq!(rest(&proxy, &[], &id).await.status, 200);

    // The sealed part changed by one character.
    let mut tampered = id.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    // A session id of Salesforce's own form, not sealed by sfproxy (a stale real one).
    let stale = format!(
        "{}!AQ0AQDeLdhm5cMXEp0CI9Nw1B0aAmR8q0wHxoY.ZVvy0hJ1zT7oYJ8vG",
        &org.mock.org_id()[..15]
    );
    for presented in [tampered.as_str(), stale.as_str(), "", "not-a-session"] {
        assert_invalid_session(&rest(&proxy, &[], presented).await);
    }
    // Bulk API 1.0: its own InvalidSessionId, which its clients read.
    let url = format!("http://{MY_DOMAIN}/services/async/{VERSION}/job/750x0000000001");
    let header = format!("X-SFDC-Session: {tampered}");
    let reply = curl(&["-x", &proxy.url(), "-H", &header, &url]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        xml_text(&reply.body, "exceptionCode").unwrap(),
        "InvalidSessionId"
    );
    // SOAP: Salesforce's INVALID_SESSION_ID fault.
    let url = format!("http://{MY_DOMAIN}/services/Soap/u/{VERSION}/00D000000000001");
    let reply = soap(
        &proxy,
        &url,
        "query",
        &query_envelope(&tampered, "SELECT Id FROM Account"),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        xml_text(&reply.body, "faultcode").unwrap(),
        "sf:INVALID_SESSION_ID"
    );
    // None of them reached Salesforce (it saw getUserInfo and the first call); the id itself
    // still works.
    assert_eq!(org.mock.requests().len(), 2);
    assert_eq!(rest(&proxy, &[], &id).await.status, 200);

    // Past session_ttl the id is refused; the client logs in again and goes on, on the same
    // real session.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_invalid_session(&rest(&proxy, &[], &id).await);
    let again = access_token(&password_grant(&proxy, &[], USER, SECRET).await);
    assert_eq!(rest(&proxy, &[], &again).await.status, 200);
    assert_eq!(org.mock.token_requests(), 1);

    proxy.settle().await;
    let reasons = refusal_reasons(&proxy);
    assert!(reasons.iter().any(|r| r.contains("expired")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a session id sfproxy handed out"))
    );
    assert!(
        !proxy
            .events("refused: no session id sfproxy handed out, on a route with logins = true; answered INVALID_SESSION_ID so the client logs in")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_with_the_same_key_takes_its_ids_and_no_other_does() {
    let org = Org::start().await;
    let shared = key_file(&org, "logins", 7);
    let first = Proxy::start(&config(&org, "", &shared, ""));
    let second = Proxy::start(&config(&org, "", &shared, ""));
    let other = Proxy::start(&config(&org, "", &key_file(&org, "other", 9), ""));
    let made = Proxy::start(&config(&org, "", "", ""));

    let id = access_token(&password_grant(&first, &[], USER, SECRET).await);
    assert_eq!(rest(&first, &[], &id).await.status, 200);
    assert_eq!(rest(&second, &[], &id).await.status, 200);
    assert_invalid_session(&rest(&other, &[], &id).await);
    assert_invalid_session(&rest(&made, &[], &id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_and_its_id_hold_only_inside_the_clients_networks() {
    let org = Org::start().await;
    let wms = format!(
        "\n[clients.wms]\nsecret_sha256 = \"{}\"\nnetworks = [\"127.0.0.2/32\"]\n",
        sha256_hex(b"wms-secret")
    );
    let text = config(&org, "", "", "").replace(
        "clients = [\"erp\"]\nlogins = true",
        "clients = [\"erp\", \"wms\"]\nlogins = true",
    ) + &wms;
    let proxy = Proxy::start(&text);
    let from_two = ["--interface", "127.0.0.2"];

    // The secret is wms's, but the source is not in its networks.
    let reply = password_grant(&proxy, &[], USER, "wms-secret").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json(), invalid_grant());
    let id = access_token(&password_grant(&proxy, &from_two, USER, "wms-secret").await);
    assert_eq!(rest(&proxy, &from_two, &id).await.status, 200);
    // Its id from elsewhere is refused.
    assert_invalid_session(&rest(&proxy, &[], &id).await);
    assert_eq!(
        org.mock.requests().len(),
        2,
        "getUserInfo, then the one call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_logins_at_once_cost_one_jwt_bearer_login_and_one_get_user_info() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "workers = 2", "", ""));
    // A slow login, so every caller arrives while the one token request is in flight.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(500)));
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    // To the proxy port, the route chosen by Host.
    let uri: http::Uri = format!("http://{}/services/oauth2/token", proxy.addr)
        .parse()
        .unwrap();
    let form = format!("grant_type=password&username={USER}&password={SECRET}");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let form = form.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let request = http::Request::post(uri)
                    .header("host", LOGIN_HOST)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(bytes::Bytes::from(form)))
                    .unwrap();
                let response = client.request(request).await.expect("proxy answers");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body");
                (status, body.to_bytes())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        ids.insert(answer["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1000, "each login gets its own id");
    assert_eq!(org.mock.token_requests(), 1);
    let operations: Vec<String> = org
        .mock
        .soap_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(operations, ["getUserInfo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_the_jwt_bearer_flow_cannot_serve_says_why_in_the_logins_shape() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "", ""));
    let refusal = TokenFailure::OAuth {
        status: 400,
        error: "invalid_grant".into(),
        description: "user hasn't approved this consumer".into(),
    };
    org.mock.fail_next_token_requests(2, refusal);

    let reply = password_grant(&proxy, &[], USER, SECRET).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    let answer = reply.json();
    assert_eq!(answer["error"], "invalid_grant");
    assert_eq!(answer["errorCode"], "PROXY_LOGIN_REJECTED");
    let description = answer["error_description"].as_str().unwrap();
    assert!(
        description.starts_with("PROXY_LOGIN_REJECTED: "),
        "{description}"
    );
    assert!(
        description.contains("user hasn't approved this consumer"),
        "{description}"
    );
    assert!(
        answer["hint"].as_str().unwrap().contains("pre-authorized"),
        "{answer}"
    );

    let reply = soap_login(&proxy, USER, SECRET).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        xml_text(&reply.body, "faultcode").unwrap(),
        "sf:PROXY_LOGIN_REJECTED"
    );
    assert!(
        xml_text(&reply.body, "exceptionMessage")
            .unwrap()
            .contains("user hasn't approved this consumer")
    );
    // The refusal is remembered (rejected_backoff) as for any caller of the route: the SOAP
    // login made no token request of its own. The right password did not count as a wrong one.
    assert_eq!(org.mock.token_requests(), 1);
    proxy.settle().await;
    assert!(
        proxy
            .events("legacy login refused: INVALID_LOGIN")
            .is_empty()
    );
    let failed = proxy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("legacy login failed: "))
                && e["code"] == "PROXY_LOGIN_REJECTED"
        })
        .count();
    assert_eq!(failed, 2, "one line per login, each with its code");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_without_logins_on_the_same_host_is_served_as_before() {
    let org = Org::start().await;
    let text = config(&org, "", "", "")
        + "\n[clients.bi]\nnetworks = [\"127.0.0.3/32\"]\n"
        + &support::route(
            "bi",
            &[MY_DOMAIN],
            support::OTHER_USER,
            "clients = [\"bi\"]",
        );
    let proxy = Proxy::start(&text);
    let from_bi = ["--interface", "127.0.0.3"];
    // Its own Authorization is replaced, as on any route: not refused as a foreign session id.
    let reply = rest(&proxy, &from_bi, "a-session-of-its-own").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Its token requests go to Salesforce, as before (the stand-in counts a legacy login).
    let url = format!("http://{MY_DOMAIN}/services/oauth2/token");
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "--interface",
        "127.0.0.3",
        "-d",
        "grant_type=password",
        "-d",
        "username=bi@acme.example",
        "-d",
        "password=x",
        &url,
    ])
    .await;
    // The stand-in's own answer (sfproxy's would be "authentication failure").
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains("reached Salesforce"), "{description}");
    assert_eq!(org.mock.legacy_logins(), 1);
    proxy.settle().await;
    assert!(
        proxy
            .events("legacy login refused: INVALID_LOGIN")
            .is_empty()
    );
    let lines = proxy.events("request");
    assert!(
        lines
            .iter()
            .all(|l| l["client"] == "bi" && l["route"] == "bi"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_secret_or_route_ends_the_ids_handed_out_before() {
    let org = Org::start().await;
    let before = config(&org, "", "", "");
    let proxy = Proxy::start(&before);
    let id = access_token(&password_grant(&proxy, &[], USER, SECRET).await);
    assert_eq!(rest(&proxy, &[], &id).await.status, 200);

    // The client's secret is rotated: its old ids end with the reload, the new secret logs in.
    let rotated = before.replace(&sha256_hex(SECRET.as_bytes()), &sha256_hex(b"wms-secret"));
    proxy.rewrite_config(&rotated);
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 1).await;
    assert_invalid_session(&rest(&proxy, &[], &id).await);
    let fresh = access_token(&password_grant(&proxy, &[], USER, "wms-secret").await);
    assert_eq!(rest(&proxy, &[], &fresh).await.status, 200);

    // The route no longer answers logins: its ids are refused as well.
    proxy.rewrite_config(&rotated.replace("logins = true", ""));
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 2).await;
    let reply = rest(&proxy, &[], &fresh).await;
    assert_eq!(reply.status, 407, "{}", reply.body);
    proxy.settle().await;
    let reasons = refusal_reasons(&proxy);
    assert_eq!(
        reasons,
        ["the client's secret changed since the id was handed out"]
    );
}
