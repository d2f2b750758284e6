//! The SOAP API through the real binary: raw envelopes from curl in forward and gateway form, the
//! session put in each envelope's `SessionHeader` (and nothing else changed), an expired session
//! replayed, the calls that would end the shared session answered by sfproxy, bad envelopes and
//! every refusal as a SOAP fault; against the stand-in org's Partner, Metadata and Apex endpoints
//! over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::io::Write;

use support::{Org, Proxy, Reply, USER, curl, route, sha256_hex};

const PARTNER: &str = "http://acme.my.salesforce.com/services/Soap/u/61.0";
const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A Partner envelope: `header` goes in a `soapenv:Header` (none when `None`), `call` in the Body.
fn envelope(header: Option<&str>, call: &str) -> String {
    let header = header.map_or(String::new(), |h| {
        format!("<soapenv:Header>{h}</soapenv:Header>")
    });
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{ENV}\" \
         xmlns:urn=\"urn:partner.soap.sforce.com\">\n  {header}\n  <soapenv:Body>{call}\
         </soapenv:Body>\n</soapenv:Envelope>\n"
    )
}

/// The stand-in's config with `proxy_extra` in `[proxy]`, the forward route `erp` and the gateway
/// route `gw` (prefix `/acme`, stripped), both for the same user.
fn config(org: &Org, proxy_extra: &str) -> String {
    org.config(proxy_extra, "")
        + &route("erp", &["acme.my.salesforce.com"], USER, "")
        + &route(
            "gw",
            &["gateway.local"],
            USER,
            "path_prefix = \"/acme\"\nstrip_prefix = true",
        )
}

const GET_USER_INFO: &str = "<urn:getUserInfo/>";

/// POSTs `body` as a SOAP call through the proxy (`-x`), with `extra` curl arguments.
async fn call(proxy: &Proxy, url: &str, body: &[u8], extra: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envelope.xml");
    std::fs::write(&file, body).unwrap();
    let mut args: Vec<String> = [
        "-x",
        &proxy.url(),
        "-H",
        "Content-Type: text/xml; charset=utf-8",
        "-H",
        "SOAPAction: \"\"",
        "--data-binary",
        &format!("@{}", file.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url.to_owned());
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// A bare `getUserInfo()` through the proxy, forward form.
async fn user_info(proxy: &Proxy) -> Reply {
    call(
        proxy,
        PARTNER,
        envelope(None, GET_USER_INFO).as_bytes(),
        &[],
    )
    .await
}

/// The session the stand-in saw on its last SOAP call, checked to be one it issued and alive.
fn last_session(org: &Org) -> String {
    let calls = org.mock.soap_calls();
    let last = calls.last().expect("the stand-in saw a SOAP call");
    let session = last
        .session_id
        .clone()
        .expect("a sessionId in the envelope");
    assert!(session.starts_with("00D000000000001!"), "{session}");
    session
}

/// The fault sfproxy answers with, as a toolkit reads it: status 500 (407 kept), text/xml, the
/// `sf:` code, and the JSON answer's status in `detail`.
fn assert_fault(reply: &Reply, status: u16, code: &str, detail_status: u16) {
    assert_eq!(reply.status, status, "{code}: {}", reply.body);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/xml; charset=utf-8"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains(&format!("<faultcode>sf:{code}</faultcode>")),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains(&format!("<sf:status>{detail_status}</sf:status>")),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("<soapenv:Fault>"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_goes_in_the_envelope_and_nothing_else_changes() {
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);

    // No Header at all: one is made, in the envelope's own prefix, before the Body.
    let bare = envelope(None, GET_USER_INFO).replace("\n  \n", "\n");
    let reply = call(&proxy, PARTNER, bare.as_bytes(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("<userName>erp@acme.example</userName>"),
        "{}",
        reply.body
    );
    let session = last_session(&org);
    let seen = org.mock.soap_calls().pop().unwrap();
    let expected = bare.replace(
        "<soapenv:Body>",
        &format!(
            "<soapenv:Header><SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>\
             {session}</sessionId></SessionHeader></soapenv:Header><soapenv:Body>"
        ),
    );
    assert_eq!(String::from_utf8_lossy(&seen.envelope), expected);
    assert_eq!(
        seen.content_length,
        Some(expected.len() as u64),
        "Content-Length recomputed"
    );
    assert_eq!(seen.operation, "getUserInfo");

    // The caller's own headers, a stale session and other headers kept byte for byte.
    let cases = [
        (
            "an empty SessionHeader",
            "<urn:CallOptions><urn:client>erp/1.0</urn:client></urn:CallOptions>\
             <urn:SessionHeader/>",
            format!(
                "<urn:CallOptions><urn:client>erp/1.0</urn:client></urn:CallOptions>\
                 <urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader>"
            ),
        ),
        (
            "a stale session id, prefixed",
            "<urn:SessionHeader>\r\n <urn:sessionId>00Dstale!AQ</urn:sessionId>\r\n\
             </urn:SessionHeader><urn:AllOrNoneHeader><urn:allOrNone>true</urn:allOrNone>\
             </urn:AllOrNoneHeader>",
            format!(
                "<urn:SessionHeader>\r\n <urn:sessionId>{session}</urn:sessionId>\r\n\
                 </urn:SessionHeader><urn:AllOrNoneHeader><urn:allOrNone>true</urn:allOrNone>\
                 </urn:AllOrNoneHeader>"
            ),
        ),
        (
            "the default namespace",
            "<!-- caller --><SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>\
             </sessionId></SessionHeader>",
            format!(
                "<!-- caller --><SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>\
                 {session}</sessionId></SessionHeader>"
            ),
        ),
    ];
    for (form, url) in [
        ("forward", PARTNER),
        (
            "gateway",
            "http://gateway.local/acme/services/Soap/u/61.0/00D000000000001",
        ),
    ] {
        for (case, header, rewritten) in &cases {
            let sent = envelope(Some(header), GET_USER_INFO);
            let reply = call(&proxy, url, sent.as_bytes(), &[]).await;
            assert_eq!(reply.status, 200, "{form}, {case}: {}", reply.body);
            let seen = org.mock.soap_calls().pop().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&seen.envelope),
                envelope(Some(rewritten), GET_USER_INFO),
                "{form}, {case}"
            );
            assert_eq!(seen.content_length, Some(seen.envelope.len() as u64));
        }
    }
    let gateway = org.mock.soap_calls().pop().unwrap();
    assert_eq!(gateway.path, "/services/Soap/u/61.0/00D000000000001");

    // An Apex web service: the header goes in the class's namespace.
    let apex = format!(
        "<soapenv:Envelope xmlns:soapenv=\"{ENV}\" \
         xmlns:o=\"http://soap.sforce.com/schemas/class/OrderService\"><soapenv:Body><o:echo>\
         <o:text>hello</o:text></o:echo></soapenv:Body></soapenv:Envelope>"
    );
    let reply = call(
        &proxy,
        "http://acme.my.salesforce.com/services/Soap/class/OrderService",
        apex.as_bytes(),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = org.mock.soap_calls().pop().unwrap();
    assert_eq!(seen.api, "apex");
    assert_eq!(
        String::from_utf8_lossy(&seen.envelope),
        apex.replace(
            "<soapenv:Body>",
            &format!(
                "<soapenv:Header><SessionHeader \
                 xmlns=\"http://soap.sforce.com/schemas/class/OrderService\"><sessionId>{session}\
                 </sessionId></SessionHeader></soapenv:Header><soapenv:Body>"
            )
        )
    );
    // The SOAP calls never carried a header credential; one login served them all.
    for seen in org.mock.requests() {
        assert!(support::header(&seen.headers, "authorization").is_none());
    }
    assert_eq!(org.mock.token_requests(), 1);
    assert!(
        !proxy.log().contains(&session),
        "the session is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_envelopes_are_rewritten_and_sent_gzipped() {
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);
    let sent = envelope(
        Some("<urn:SessionHeader><urn:sessionId>x</urn:sessionId></urn:SessionHeader>"),
        "<urn:query><urn:queryString>SELECT Id, Name FROM Account</urn:queryString></urn:query>",
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(sent.as_bytes()).unwrap();
    let reply = call(
        &proxy,
        PARTNER,
        &gzip.finish().unwrap(),
        &["-H", "Content-Encoding: gzip"],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("<queryResponse"), "{}", reply.body);
    let session = last_session(&org);
    let seen = org.mock.soap_calls().pop().unwrap();
    assert_eq!(seen.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        String::from_utf8_lossy(&seen.envelope),
        sent.replace(">x<", &format!(">{session}<"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_envelopes_keep_the_body_bounds() {
    let org = Org::start().await;
    let config = config(&org, "max_body = \"1MiB\"");
    let proxy = Proxy::start(&config);
    let gzip = |bytes: &[u8]| {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(bytes).unwrap();
        gzip.finish().unwrap()
    };
    // 20 MB once inflated, a few kB as sent: over max_body, refused as a body too large.
    let bomb = envelope(
        None,
        &format!(
            "<urn:create><urn:sObjects><type>Account</type><Description>{}</Description>\
             </urn:sObjects></urn:create>",
            "a".repeat(20 * 1024 * 1024)
        ),
    );
    let sent = gzip(bomb.as_bytes());
    assert!(sent.len() < 1024 * 1024);
    let reply = call(&proxy, PARTNER, &sent, &["-H", "Content-Encoding: gzip"]).await;
    assert_fault(&reply, 500, "PROXY_BODY_TOO_LARGE", 413);
    // Not gzip at all, sent as gzip.
    let reply = call(
        &proxy,
        PARTNER,
        envelope(None, GET_USER_INFO).as_bytes(),
        &["-H", "Content-Encoding: gzip"],
    )
    .await;
    assert_fault(&reply, 500, "PROXY_BAD_ENVELOPE", 400);
    // Another coding: refused, with what sfproxy takes.
    let reply = call(
        &proxy,
        PARTNER,
        envelope(None, GET_USER_INFO).as_bytes(),
        &["-H", "Content-Encoding: br"],
    )
    .await;
    assert_fault(&reply, 500, "PROXY_BAD_ENVELOPE", 400);
    assert!(
        org.mock.soap_calls().is_empty(),
        "nothing reached Salesforce"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_costs_one_login_and_one_replay() {
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);
    let query = envelope(
        None,
        "<urn:query><urn:queryString>SELECT Id, Name FROM Account</urn:queryString></urn:query>",
    );
    let reply = call(&proxy, PARTNER, query.as_bytes(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let first = last_session(&org);

    org.mock.expire_sessions();
    let reply = call(&proxy, PARTNER, query.as_bytes(), &[]).await;
    assert_eq!(
        reply.status, 200,
        "the caller sees the replay's success: {}",
        reply.body
    );
    assert!(reply.body.contains("<done>true</done>"), "{}", reply.body);
    assert_eq!(org.mock.token_requests(), 2, "one new login");
    let calls = org.mock.soap_calls();
    assert_eq!(
        calls.len(),
        3,
        "the first call, the expired one, its replay"
    );
    assert_eq!(calls[1].session_id.as_deref(), Some(first.as_str()));
    let second = last_session(&org);
    assert_ne!(second, first);
    // The replay is the caller's envelope again, with the new session.
    assert_eq!(
        String::from_utf8_lossy(&calls[2].envelope),
        String::from_utf8_lossy(&calls[1].envelope).replace(&first, &second)
    );
    proxy.settle().await;
    assert_eq!(
        proxy.events("request").last().unwrap()["session"],
        "replayed"
    );

    // A Salesforce that takes no session (a fresh proxy, so its first drop is not within the
    // spacing of an earlier one): one more login, one replay, and the replayed fault goes back.
    drop(proxy);
    let proxy = Proxy::start(&config);
    let reply = call(&proxy, PARTNER, query.as_bytes(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(org.mock.token_requests(), 3);
    org.mock.set_refuse_sessions(true);
    let reply = call(&proxy, PARTNER, query.as_bytes(), &[]).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"),
        "{}",
        reply.body
    );
    assert_eq!(org.mock.token_requests(), 4, "one login for the replay");
    assert_eq!(org.mock.soap_calls().len(), 6, "the call and its replay");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_invalidate_sessions_and_revoke_are_answered_by_sfproxy() {
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);
    let reply = user_info(&proxy).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = last_session(&org);

    let reply = call(
        &proxy,
        PARTNER,
        envelope(None, "<urn:logout/>").as_bytes(),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/xml; charset=utf-8")
    );
    assert!(reply.body.contains("<logoutResponse/>"), "{}", reply.body);

    let invalidate = envelope(
        None,
        "<urn:invalidateSessions><urn:sessionIds>a</urn:sessionIds><urn:sessionIds>b\
         </urn:sessionIds></urn:invalidateSessions>",
    );
    let reply = call(&proxy, PARTNER, invalidate.as_bytes(), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body.matches("<success>true</success>").count(),
        2,
        "{}",
        reply.body
    );

    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-d",
        "token=whatever",
        "http://acme.my.salesforce.com/services/oauth2/revoke",
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "");

    // None of them reached Salesforce; the next caller's call uses the same session.
    assert_eq!(org.mock.soap_session_enders(), 0);
    assert_eq!(org.mock.revokes(), 0);
    let reply = user_info(&proxy).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(last_session(&org), session);
    assert_eq!(org.mock.token_requests(), 1);
    assert_eq!(org.mock.soap_calls().len(), 2);
    proxy.settle().await;
    let answered = proxy.events(
        "answered logout() here: it would end the session every caller of the route shares",
    );
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["route"], "erp");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_envelopes_are_refused_with_a_fault_and_nothing_is_sent() {
    let org = Org::start().await;
    let config = config(&org, "max_header_bytes = \"8KiB\"");
    let proxy = Proxy::start(&config);
    let doctype = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY lol \"lol\"><!ENTITY lol2 \
         \"&lol;&lol;&lol;&lol;\">]><soapenv:Envelope xmlns:soapenv=\"{ENV}\"><soapenv:Body>\
         &lol2;</soapenv:Body></soapenv:Envelope>"
    );
    let latin1 = envelope(None, GET_USER_INFO).replace("UTF-8", "ISO-8859-1");
    let huge_header = envelope(
        Some(&format!(
            "<urn:CallOptions><urn:client>{}</urn:client></urn:CallOptions>",
            "x".repeat(16 * 1024)
        )),
        GET_USER_INFO,
    );
    let soap12 =
        envelope(None, GET_USER_INFO).replace(ENV, "http://www.w3.org/2003/05/soap-envelope");
    for (case, body, code, status) in [
        ("a DOCTYPE", doctype.as_str(), "PROXY_BAD_ENVELOPE", 400),
        (
            "not XML",
            "{\"query\":\"SELECT Id FROM Account\"}",
            "PROXY_BAD_ENVELOPE",
            400,
        ),
        (
            "another encoding",
            latin1.as_str(),
            "PROXY_BAD_ENVELOPE",
            400,
        ),
        (
            "no Envelope",
            "<query>SELECT Id FROM Account</query>",
            "PROXY_BAD_ENVELOPE",
            400,
        ),
        ("SOAP 1.2", soap12.as_str(), "PROXY_BAD_ENVELOPE", 400),
        (
            "a head past max_header_bytes",
            huge_header.as_str(),
            "PROXY_HEADERS_TOO_LARGE",
            431,
        ),
    ] {
        let reply = call(&proxy, PARTNER, body.as_bytes(), &[]).await;
        assert_fault(&reply, 500, code, status);
        assert!(
            reply.body.contains("nothing was sent"),
            "{case}: {}",
            reply.body
        );
    }
    assert!(
        org.mock.soap_calls().is_empty(),
        "nothing reached Salesforce"
    );
    assert_eq!(
        org.mock.token_requests(),
        0,
        "no login for a refused envelope"
    );
    proxy.settle().await;
    let refused = proxy.events("refused");
    assert_eq!(refused.len(), 6);
    assert!(
        refused.iter().all(|e| e["status"] == 500),
        "the log shows the status sent"
    );
    assert_eq!(refused[0]["code"], "PROXY_BAD_ENVELOPE");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_on_a_soap_path_is_a_fault() {
    let org = Org::with_users(vec![support::user(USER), {
        let mut unapproved = support::user("new@acme.example");
        unapproved.approved = false;
        unapproved
    }])
    .await;
    let clients = format!(
        "[clients.erp]\nsecret_sha256 = \"{}\"\n",
        sha256_hex(b"erp-secret")
    );
    let config = org.config("", "")
        + &clients
        + &route(
            "erp",
            &["acme.my.salesforce.com"],
            USER,
            "clients = [\"erp\"]",
        )
        + &route(
            "new",
            &["new.my.salesforce.com"],
            "new@acme.example",
            "clients = [\"erp\"]",
        );
    let proxy = Proxy::start(&config);
    let body = envelope(None, GET_USER_INFO);

    // No credentials: 407 kept, with its challenge, as a fault.
    let reply = call(&proxy, PARTNER, body.as_bytes(), &[]).await;
    assert_fault(&reply, 407, "PROXY_AUTH_REQUIRED", 407);
    assert!(reply.header("proxy-authenticate").is_some());

    let auth = ["-U", "erp:erp-secret"];
    // No route for the host.
    let reply = call(
        &proxy,
        "http://other.my.salesforce.com/services/Soap/u/61.0",
        body.as_bytes(),
        &auth,
    )
    .await;
    assert_fault(&reply, 500, "PROXY_NO_ROUTE", 403);
    // A refused login, with its hint.
    let reply = call(
        &proxy,
        "http://new.my.salesforce.com/services/Soap/u/61.0",
        body.as_bytes(),
        &auth,
    )
    .await;
    assert_fault(&reply, 500, "PROXY_LOGIN_REJECTED", 502);
    assert!(reply.body.contains("<sf:hint>"), "{}", reply.body);
    assert!(reply.header("retry-after").is_some(), "Retry-After kept");
    // The same refusal on a REST path stays JSON.
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-U",
        "erp:erp-secret",
        "http://new.my.salesforce.com/services/data/v61.0/limits",
    ])
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.error_code(), "PROXY_LOGIN_REJECTED");
    // Salesforce unreachable.
    let mut org = org;
    let reply = call(&proxy, PARTNER, body.as_bytes(), &auth).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    org.mock.shutdown().await;
    let reply = call(&proxy, PARTNER, body.as_bytes(), &auth).await;
    assert_fault(&reply, 500, "PROXY_UPSTREAM_UNREACHABLE", 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_envelope_streams_through_with_bounded_memory() {
    let org = Org::start().await;
    let config = config(&org, "max_body = \"256MiB\"");
    // Info, not trace: a trace line per body frame would be most of the run.
    let proxy = Proxy::start_with_env(&config, &[("RUST_LOG", "info")]);
    let reply = user_info(&proxy).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A `create` of one Account whose Description is 100 MB of text.
    let whole = envelope(
        Some("<urn:SessionHeader><urn:sessionId></urn:sessionId></urn:SessionHeader>"),
        "<urn:create><urn:sObjects><type>Account</type><Name>Big</Name><Description>@\
         </Description></urn:sObjects></urn:create>",
    );
    let (head, tail) = whole.split_once('@').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.xml");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        out.write_all(head.as_bytes()).unwrap();
        let line = "lorem ipsum dolor sit amet ".repeat(40);
        let mut written = 0;
        while written < 100 * 1024 * 1024 {
            out.write_all(line.as_bytes()).unwrap();
            written += line.len();
        }
        out.write_all(tail.as_bytes()).unwrap();
    }
    let size = std::fs::metadata(&file).unwrap().len();
    let before = proxy.rss_kb();
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "Content-Type: text/xml; charset=utf-8",
        "-H",
        "SOAPAction: \"\"",
        "--data-binary",
        &format!("@{}", file.display()),
        PARTNER,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("<success>true</success>"),
        "{}",
        reply.body
    );
    let growth_mb = (proxy.peak_rss_kb().saturating_sub(before)) as f64 / 1024.0;
    let seen = org.mock.soap_calls().pop().unwrap();
    let session = seen.session_id.clone().unwrap();
    assert_eq!(
        seen.envelope.len() as u64,
        size + session.len() as u64,
        "the whole envelope arrived, with the session"
    );
    assert_eq!(seen.content_length, Some(seen.envelope.len() as u64));
    assert!(
        growth_mb < 16.0,
        "a 100 MB envelope grew the proxy's peak RSS by {growth_mb:.1} MB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zeep_calls_partner_operations_through_http_proxy_without_a_session() {
    let has_zeep = std::process::Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_zeep {
        // CI installs zeep (.ci/run): there, a missing one is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no zeep in CI: .ci/run must install tests/python/requirements.txt"
        );
        eprintln!(
            "SKIPPED: no zeep on this machine (pip install -r tests/python/requirements.txt)"
        );
        return;
    }
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    // tests/python/soap_client.py: zeep with the Partner WSDL the tests ship, its endpoint an
    // http:// URL, the proxy from HTTP_PROXY (which requests reads), no session anywhere.
    let output = tokio::process::Command::new("python3")
        .arg(python.join("soap_client.py"))
        .arg(PARTNER)
        .env("HTTP_PROXY", proxy.url())
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["userName"], USER, "{result}");
    assert_eq!(result["query_size"], 3, "{result}");
    assert_eq!(
        result["paged_names"].as_array().map(Vec::len),
        Some(3),
        "{result}"
    );
    assert_eq!(result["created_success"], true, "{result}");
    assert_eq!(result["describe_name"], "Account", "{result}");
    assert_eq!(result["logout"], "ok", "{result}");
    // Every call reached the stand-in with the route's session in its envelope, but logout.
    let calls = org.mock.soap_calls();
    let operations: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(
        operations,
        [
            "getUserInfo",
            "query",
            "query",
            "queryMore",
            "create",
            "describeSObject"
        ],
        "logout never reaches Salesforce"
    );
    assert!(calls.iter().all(|c| {
        c.session_id
            .as_deref()
            .is_some_and(|s| s.starts_with("00D000000000001!"))
    }));
    assert_eq!(org.mock.soap_session_enders(), 0);
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shared_session_cannot_be_ended_in_any_form() {
    let org = Org::start().await;
    let config = config(&org, "max_header_bytes = \"16KiB\"");
    let proxy = Proxy::start(&config);
    let reply = user_info(&proxy).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = last_session(&org);

    let enterprise = format!(
        "<s:Envelope xmlns:s=\"{ENV}\"><s:Body><logout xmlns=\"urn:enterprise.soap.sforce.com\"/>\
         </s:Body></s:Envelope>"
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(envelope(None, "<urn:logout/>").as_bytes())
        .unwrap();
    let gzipped = gzip.finish().unwrap();
    let cases: [(&str, &str, &[u8], &[&str]); 5] = [
        (
            "the default namespace",
            PARTNER,
            b"<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"><Body>\
              <logout xmlns=\"urn:partner.soap.sforce.com\"/></Body></Envelope>",
            &[],
        ),
        (
            "Enterprise",
            "http://acme.my.salesforce.com/services/Soap/c/61.0",
            enterprise.as_bytes(),
            &[],
        ),
        ("gzipped", PARTNER, &gzipped, &["-H", "Content-Encoding: gzip"]),
        (
            "gateway form",
            "http://gateway.local/acme/services/Soap/u/61.0/00D000000000001",
            b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
              <!-- bye --> <p:logout xmlns:p=\"urn:partner.soap.sforce.com\"/></s:Body></s:Envelope>",
            &[],
        ),
        (
            "Tooling",
            "http://acme.my.salesforce.com/services/Soap/T/61.0",
            b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
              <t:logout xmlns:t=\"urn:tooling.soap.sforce.com\"/></s:Body></s:Envelope>",
            &[],
        ),
    ];
    for (case, url, body, extra) in cases {
        let reply = call(&proxy, url, body, extra).await;
        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
        assert!(
            reply.body.contains("<logoutResponse/>"),
            "{case}: {}",
            reply.body
        );
    }
    // A logout hidden behind more padding than sfproxy reads is refused, not sent.
    let padded = envelope(None, &format!("{}<urn:logout/>", " ".repeat(20 * 1024)));
    let reply = call(&proxy, PARTNER, padded.as_bytes(), &[]).await;
    assert_fault(&reply, 500, "PROXY_HEADERS_TOO_LARGE", 431);
    let commented = envelope(
        None,
        &format!("<!--{}--><urn:logout/>", "x".repeat(20 * 1024)),
    );
    let reply = call(&proxy, PARTNER, commented.as_bytes(), &[]).await;
    assert_fault(&reply, 500, "PROXY_HEADERS_TOO_LARGE", 431);

    // Revoke, however its path is written and whatever the method.
    for (method, url) in [
        (
            "GET",
            "http://acme.my.salesforce.com/services/oauth2/revoke?token=x",
        ),
        (
            "POST",
            "http://acme.my.salesforce.com/services/oauth2/revoke/",
        ),
        (
            "POST",
            "http://acme.my.salesforce.com/services/OAuth2/revoke",
        ),
        (
            "POST",
            "http://acme.my.salesforce.com/services/oauth2/revok%65",
        ),
    ] {
        let reply = curl(&["-x", &proxy.url(), "-X", method, "--path-as-is", url]).await;
        assert_eq!(reply.status, 200, "{method} {url}: {}", reply.body);
    }

    assert_eq!(org.mock.soap_session_enders(), 0);
    assert_eq!(org.mock.revokes(), 0);
    let reply = user_info(&proxy).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(last_session(&org), session, "the same session throughout");
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_cannot_steer_the_session_header() {
    let org = Org::start().await;
    let config = config(&org, "");
    let proxy = Proxy::start(&config);

    // A SessionHeader in another namespace is the caller's own: the real one is inserted.
    let foreign = "<x:SessionHeader xmlns:x=\"urn:example\"><x:sessionId>mine</x:sessionId>\
                   </x:SessionHeader>";
    let reply = call(
        &proxy,
        PARTNER,
        envelope(Some(foreign), GET_USER_INFO).as_bytes(),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = last_session(&org);
    let seen = org.mock.soap_calls().pop().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.envelope),
        envelope(
            Some(&format!(
                "<SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>{session}\
                 </sessionId></SessionHeader>{foreign}"
            )),
            GET_USER_INFO
        )
    );

    // Attributes on sessionId do not travel with the session.
    let typed = "<urn:SessionHeader><urn:sessionId xsi:type=\"xsd:int\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/></urn:SessionHeader>";
    let reply = call(
        &proxy,
        PARTNER,
        envelope(Some(typed), GET_USER_INFO).as_bytes(),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = org.mock.soap_calls().pop().unwrap();
    let text = String::from_utf8_lossy(&seen.envelope);
    assert!(!text.contains("xsi:type"), "{text}");
    assert_eq!(seen.session_id.as_deref(), Some(session.as_str()));

    // One that would have Salesforce ignore the header is refused.
    let ignored = "<urn:SessionHeader soapenv:actor=\"urn:elsewhere\"><urn:sessionId/>\
                   </urn:SessionHeader>";
    let reply = call(
        &proxy,
        PARTNER,
        envelope(Some(ignored), GET_USER_INFO).as_bytes(),
        &[],
    )
    .await;
    assert_fault(&reply, 500, "PROXY_BAD_ENVELOPE", 400);
    assert_eq!(org.mock.soap_calls().len(), 2, "nothing sent for it");
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_after_routing_are_faults_too() {
    let org = Org::start().await;
    let clients = format!(
        "[clients.erp]\nsecret_sha256 = \"{}\"\n[clients.wms]\nsecret_sha256 = \"{}\"\n",
        sha256_hex(b"erp-secret"),
        sha256_hex(b"wms-secret")
    );
    let config = org.config("request_timeout = \"1s\"", "")
        + &clients
        + &route(
            "erp",
            &["acme.my.salesforce.com"],
            USER,
            "clients = [\"erp\"]",
        );
    let proxy = Proxy::start(&config);
    let body = envelope(None, GET_USER_INFO);
    // Another client's route.
    let reply = call(&proxy, PARTNER, body.as_bytes(), &["-U", "wms:wms-secret"]).await;
    assert_fault(&reply, 500, "PROXY_CLIENT_FORBIDDEN", 403);
    let auth: &[&str] = &["-U", "erp:erp-secret"];
    // The token endpoint answering garbage: login unavailable, with Retry-After.
    org.mock.fail_next_token_requests(
        3,
        sfproxy::mock_org::TokenFailure::Raw {
            status: 503,
            content_type: "text/html".into(),
            body: "<html>down</html>".into(),
        },
    );
    let reply = call(&proxy, PARTNER, body.as_bytes(), auth).await;
    assert_fault(&reply, 500, "PROXY_LOGIN_UNAVAILABLE", 503);
    assert!(reply.header("retry-after").is_some());
    // An instance slower than request_timeout.
    let proxy = Proxy::start(&config);
    org.mock.clear_token_failures();
    org.mock
        .set_api_delay(Some(std::time::Duration::from_secs(3)));
    let reply = call(&proxy, PARTNER, body.as_bytes(), auth).await;
    assert_fault(&reply, 500, "PROXY_UPSTREAM_TIMEOUT", 504);
}
