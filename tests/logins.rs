//! Legacy logins answered by sfproxy itself (`logins = true` on a route), by the clients that
//! make them: a caller that logs in with a username and password gets sfproxy's own sealed
//! session id, and Salesforce never sees a legacy login, only the route's JWT bearer login and
//! its real session. simple-salesforce (tests/python/logins_client.py) through an intercepted
//! tunnel to login.salesforce.com; curl with the password and client-credentials grants, then
//! REST and Bulk 1.0; curl with SOAP `login()`, then Partner calls at its `serverUrl`. Refusals
//! are in tests/logins_refusals.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::path::Path;

use support::{
    AUDIENCE, Org, Proxy, USER, curl, curl_login,
    logins::{
        CLIENT, LOGIN_HOST, MY_DOMAIN, SECRET, VERSION, assert_only_real_sessions, config,
        login_envelope, query_envelope, soap, token, xml_text,
    },
};

/// Whether simple-salesforce can be imported; in CI (`CI` set) a missing one fails the test.
fn has_simple_salesforce() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import simple_salesforce"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        // CI installs simple-salesforce (.ci/run): there, a missing one is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no simple-salesforce in CI: .ci/run must install tests/python/requirements.txt"
        );
        eprintln!(
            "SKIPPED: no simple-salesforce on this machine \
             (pip install -r tests/python/requirements.txt)"
        );
    }
    found
}

/// Runs tests/python/logins_client.py through `proxy` (HTTPS_PROXY), trusting `ca`; returns
/// (success, stdout, stderr).
async fn logins_client(
    proxy: &Proxy,
    ca: &Path,
    username: &str,
    password: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let output = tokio::process::Command::new("python3")
        .arg(python.join("logins_client.py"))
        .args([username, password, VERSION])
        .args(extra)
        .env("HTTPS_PROXY", proxy.url())
        .env("REQUESTS_CA_BUNDLE", ca)
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_salesforce_logs_in_through_sfproxy_and_salesforce_sees_only_the_real_session() {
    if !has_simple_salesforce() {
        return;
    }
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "session_ttl = \"8h\"", ""));
    let ca = org.interception_ca();
    let (ok, out, err) = logins_client(&proxy, &ca, USER, SECRET, &[]).await;
    assert!(ok, "{out}{err}\nproxy log:\n{}", proxy.log());
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();

    // sfproxy's own session id: the org id (15 characters), '!', the sealed part.
    assert_eq!(result["session"]["has_bang"], true, "{result}");
    assert_eq!(
        result["session"]["prefix"],
        &org.mock.org_id()[..15],
        "{result}"
    );
    // serverUrl pointed back at the host the caller used.
    assert_eq!(result["sf_instance"], "login.salesforce.com", "{result}");
    assert_eq!(
        result["base_url"],
        format!("https://login.salesforce.com/services/data/v{VERSION}/"),
        "{result}"
    );
    assert_eq!(result["query_before"]["done"], true, "{result}");
    assert_eq!(result["query_before"]["totalSize"], 0, "{result}");
    assert_eq!(result["create"]["success"], true, "{result}");
    assert_eq!(
        result["create"]["errors"],
        serde_json::json!([]),
        "{result}"
    );
    let id = result["create"]["id"].as_str().unwrap();
    assert_eq!(result["query_after"]["totalSize"], 1, "{result}");
    assert_eq!(
        result["query_after"]["records"],
        serde_json::json!([{"Id": id, "Name": "sfproxy logins test"}]),
        "{result}"
    );
    assert_eq!(result["get"]["Id"], id, "{result}");
    assert_eq!(result["get"]["Name"], "sfproxy logins test", "{result}");
    assert_eq!(result["get"]["Industry"], "Testing", "{result}");
    assert_eq!(result["update"], 204, "{result}");
    assert_eq!(
        result["get_after_update"]["Name"], "sfproxy logins test, renamed",
        "{result}"
    );
    assert_eq!(result["delete"], 204, "{result}");
    assert_eq!(result["get_after_delete"]["status"], 404, "{result}");
    assert_eq!(
        result["get_after_delete"]["content"][0]["errorCode"], "NOT_FOUND",
        "{result}"
    );
    assert!(org.mock.rest_record(id).is_none());

    // Salesforce saw no legacy login, one JWT bearer login, and only its own session.
    assert_eq!(
        org.mock.legacy_logins(),
        0,
        "{:?}",
        org.mock.legacy_login_kinds()
    );
    assert_eq!(org.mock.token_requests(), 1);
    // The login was answered by sfproxy: the only SOAP call Salesforce saw is sfproxy's own
    // getUserInfo(), for the loginResponse's userInfo, with the real session.
    let soap = org.mock.soap_calls();
    let operations: Vec<&str> = soap.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(operations, ["getUserInfo"]);
    assert_eq!(
        assert_only_real_sessions(&org),
        9,
        "getUserInfo, then the REST calls after the login"
    );

    // A wrong password: simple-salesforce's SalesforceAuthenticationFailed with INVALID_LOGIN,
    // and nothing more reached Salesforce.
    let (ok, out, err) =
        logins_client(&proxy, &ca, USER, "wrong-secret", &["--wrong-password"]).await;
    assert!(ok, "{out}{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["auth_failed"]["code"], "INVALID_LOGIN", "{result}");
    assert_eq!(org.mock.legacy_logins(), 0);
    assert_eq!(
        org.mock.token_requests(),
        1,
        "no token request for a refused login"
    );
    assert_eq!(org.mock.requests().len(), 9);
}

/// Creates a Bulk API 1.0 job on `host` with `id` in `X-SFDC-Session`: it reaches Salesforce
/// with the real session.
async fn bulk_job(org: &Org, proxy: &Proxy, host: &str, id: &str) {
    let url = format!("http://{host}/services/async/{VERSION}/job");
    let bulk = format!("X-SFDC-Session: {id}");
    let reply = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        &bulk,
        "-H",
        "Content-Type: application/xml; charset=UTF-8",
        "--data-binary",
        "<jobInfo xmlns=\"http://www.force.com/2009/06/asyncapi/dataload\"><operation>insert</operation><object>Account</object></jobInfo>",
        &url,
    ])
    .await;
    assert!(reply.status < 300, "{}: {}", reply.status, reply.body);
    let seen = org.mock.requests();
    let job = seen.last().unwrap();
    assert!(job.path_and_query.starts_with("/services/async/"));
    assert!(job.session_valid, "Bulk 1.0 got the real session");
}

/// Salesforce's `signature`: base64 of HMAC-SHA256 over `id` + `issued_at`, keyed by the client
/// secret.
fn signature(secret: &str, id: &str, issued_at: &str) -> String {
    use base64::Engine;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{id}{issued_at}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_is_answered_and_its_token_serves_rest_and_bulk() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "", ""));
    let reply = token(
        &proxy,
        &[],
        LOGIN_HOST,
        &[
            "grant_type=password",
            &format!("username={USER}"),
            &format!("password={SECRET}"),
            "client_id=3MVG9legacy.app",
            "client_secret=legacy-consumer-secret",
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, proxy.log());
    let answer = reply.json();
    let access_token = answer["access_token"].as_str().unwrap().to_owned();
    let (org15, sealed) = access_token.split_once('!').unwrap();
    assert_eq!(org15, &org.mock.org_id()[..15]);
    assert!(sealed.len() > 40, "sealed: client, route, expiry");
    assert!(!org.mock.issued_sessions().contains(&access_token));
    assert_eq!(answer["instance_url"], format!("http://{LOGIN_HOST}"));
    let id = format!(
        "{AUDIENCE}/id/{}/{}",
        org.mock.org_id(),
        org.mock.user_id(USER).unwrap()
    );
    assert_eq!(answer["id"], id);
    assert_eq!(answer["token_type"], "Bearer");
    let issued_at = answer["issued_at"].as_str().unwrap();
    assert!(issued_at.len() == 13 && issued_at.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        answer["signature"],
        signature("legacy-consumer-secret", &id, issued_at)
    );
    assert_eq!(
        reply.header("content-type").unwrap(),
        "application/json;charset=UTF-8"
    );

    // The fields in the query string, as some scripts send them (never logged: the log has
    // the path only).
    let url = format!(
        "http://{LOGIN_HOST}/services/oauth2/token?grant_type=password&username={USER}&password={SECRET}"
    );
    let reply = curl_login(&["-x", &proxy.url(), "-X", "POST", &url]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // REST at the instance_url, and at the My Domain host the route also serves.
    let bearer = format!("Authorization: Bearer {access_token}");
    for host in [LOGIN_HOST, MY_DOMAIN] {
        let url = format!("http://{host}/services/data/v{VERSION}/limits");
        let reply = curl(&["-x", &proxy.url(), "-H", &bearer, &url]).await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.body);
    }
    // Bulk API 1.0 reads its session from X-SFDC-Session.
    bulk_job(&org, &proxy, MY_DOMAIN, &access_token).await;

    // One JWT bearer login and getUserInfo (for the answer's ids), then the calls: all with the
    // real session; no legacy login reached Salesforce.
    assert_eq!(org.mock.token_requests(), 1);
    assert_eq!(org.mock.legacy_logins(), 0);
    assert_eq!(assert_only_real_sessions(&org), 4);
    proxy.settle().await;
    let lines = proxy.events("request");
    let login = lines
        .iter()
        .find(|l| l["path"] == "/services/oauth2/token")
        .unwrap();
    assert_eq!(
        login["client"], CLIENT,
        "the login is logged as its client's"
    );
    assert_eq!(login["route"], "erp");
    assert!(
        lines
            .iter()
            .filter(|l| l["path"] != "/services/oauth2/token")
            .all(|l| l["client"] == CLIENT && l["route"] == "erp"),
        "{lines:?}"
    );
    assert_eq!(proxy.events("answered a legacy login").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_credentials_grant_names_the_client_by_its_name_and_secret() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "", ""));
    let reply = token(
        &proxy,
        &[],
        MY_DOMAIN,
        &[
            "grant_type=client_credentials",
            &format!("client_id={CLIENT}"),
            &format!("client_secret={SECRET}"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["instance_url"], format!("http://{MY_DOMAIN}"));
    let bearer = format!(
        "Authorization: Bearer {}",
        answer["access_token"].as_str().unwrap()
    );
    let url = format!("http://{MY_DOMAIN}/services/data/v{VERSION}/limits");
    assert_eq!(
        curl(&["-x", &proxy.url(), "-H", &bearer, &url])
            .await
            .status,
        200
    );

    // The secret of another name is no credential.
    let reply = token(
        &proxy,
        &[],
        MY_DOMAIN,
        &[
            "grant_type=client_credentials",
            "client_id=wms",
            &format!("client_secret={SECRET}"),
        ],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "invalid_grant", "error_description": "authentication failure"})
    );
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn soap_login_is_answered_and_partner_calls_follow_at_its_server_url() {
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, "", "", ""));
    let org15 = &org.mock.org_id()[..15];
    for (letter, ns) in [
        ("u", "urn:partner.soap.sforce.com"),
        ("c", "urn:enterprise.soap.sforce.com"),
    ] {
        let url = format!("http://{LOGIN_HOST}/services/Soap/{letter}/{VERSION}");
        let envelope = login_envelope(USER, SECRET).replace("urn:partner.soap.sforce.com", ns);
        let reply = soap(&proxy, &url, "login", &envelope).await;
        assert_eq!(reply.status, 200, "{}\n{}", reply.body, proxy.log());
        // Salesforce's own form: the API's namespace the Envelope's default.
        assert!(
            reply.body.contains(&format!(" xmlns=\"{ns}\"")),
            "{}",
            reply.body
        );
        assert!(reply.body.contains("<soapenv:Body><loginResponse><result>"));
        let session_id = xml_text(&reply.body, "sessionId").unwrap();
        assert!(session_id.starts_with(&format!("{org15}!")));
        assert_eq!(
            xml_text(&reply.body, "serverUrl").unwrap(),
            format!("{url}/{org15}")
        );
        assert_eq!(
            xml_text(&reply.body, "metadataServerUrl").unwrap(),
            format!("http://{LOGIN_HOST}/services/Soap/m/{VERSION}/{org15}")
        );
        assert_eq!(
            xml_text(&reply.body, "userId").unwrap(),
            org.mock.user_id(USER).unwrap()
        );
        assert_eq!(xml_text(&reply.body, "passwordExpired").unwrap(), "false");
        assert_eq!(xml_text(&reply.body, "userName").unwrap(), USER);
        assert_eq!(
            xml_text(&reply.body, "organizationId").unwrap(),
            org.mock.org_id()
        );
    }

    // A Partner call at serverUrl with the handed-out id: Salesforce sees the real session.
    let url = format!("http://{LOGIN_HOST}/services/Soap/u/{VERSION}");
    let reply = soap(&proxy, &url, "login", &login_envelope(USER, SECRET)).await;
    let session_id = xml_text(&reply.body, "sessionId").unwrap();
    let server_url = xml_text(&reply.body, "serverUrl").unwrap();
    let reply = soap(
        &proxy,
        &server_url,
        "query",
        &query_envelope(&session_id, "SELECT Id FROM Account"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("queryResponse"), "{}", reply.body);
    let calls = org.mock.soap_calls();
    let query = calls.last().unwrap();
    assert_eq!(query.operation, "query");
    let real = query.session_id.as_deref().unwrap();
    assert!(org.mock.issued_sessions().iter().any(|s| s == real));

    // A Bulk API 1.0 job with the same id, in X-SFDC-Session, at serverUrl's host.
    bulk_job(&org, &proxy, LOGIN_HOST, &session_id).await;

    // logout() with the id is answered here: the real session every caller shares lives on.
    let logout = query_envelope(&session_id, "").replace(
        "<urn:query><urn:queryString></urn:queryString></urn:query>",
        "<urn:logout/>",
    );
    let reply = soap(&proxy, &server_url, "logout", &logout).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("logoutResponse"), "{}", reply.body);
    assert_eq!(org.mock.soap_session_enders(), 0);
    let calls = org.mock.soap_calls();

    // One JWT bearer login and one getUserInfo for the three logins; no login() reached
    // Salesforce.
    assert_eq!(org.mock.token_requests(), 1);
    assert_eq!(org.mock.legacy_logins(), 0);
    let operations: Vec<String> = calls.iter().map(|c| c.operation.clone()).collect();
    assert_eq!(operations, ["getUserInfo", "query"]);

    // A wrong password: Salesforce's own INVALID_LOGIN fault.
    let reply = soap(&proxy, &url, "login", &login_envelope(USER, "wrong-secret")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        xml_text(&reply.body, "faultcode").unwrap(),
        "sf:INVALID_LOGIN"
    );
    assert_eq!(
        xml_text(&reply.body, "exceptionCode").unwrap(),
        "INVALID_LOGIN"
    );
    assert_eq!(org.mock.soap_calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_gateway_form_the_answers_lead_back_through_the_routes_prefix() {
    let org = Org::start().await;
    let gateway = support::route(
        "gateway",
        &["127.0.0.1"],
        USER,
        &format!(
            "path_prefix = \"/erp/\"\nstrip_prefix = true\nclients = [\"{CLIENT}\"]\nlogins = true"
        ),
    );
    let proxy = Proxy::start(&(config(&org, "", "", "") + &gateway));
    let base = format!("http://{}/erp", proxy.addr);

    // SOAP login() at the gateway: serverUrl is the gateway's, with the prefix.
    let url = format!("{base}/services/Soap/u/{VERSION}");
    let reply = curl_login(&[
        "-H",
        "Content-Type: text/xml; charset=UTF-8",
        "-H",
        "SOAPAction: login",
        "--data-binary",
        &login_envelope(USER, SECRET),
        &url,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let org15 = &org.mock.org_id()[..15];
    let server_url = xml_text(&reply.body, "serverUrl").unwrap();
    assert_eq!(server_url, format!("{url}/{org15}"));
    let session_id = xml_text(&reply.body, "sessionId").unwrap();
    let query = query_envelope(&session_id, "SELECT Id FROM Account");
    let reply = curl(&[
        "-H",
        "Content-Type: text/xml; charset=UTF-8",
        "-H",
        "SOAPAction: query",
        "--data-binary",
        &query,
        &server_url,
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The password grant: instance_url is the gateway's prefix, REST follows under it.
    let reply = curl_login(&[
        "--data-urlencode",
        "grant_type=password",
        "--data-urlencode",
        &format!("username={USER}"),
        "--data-urlencode",
        &format!("password={SECRET}"),
        &format!("{base}/services/oauth2/token"),
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["instance_url"], base);
    let bearer = format!(
        "Authorization: Bearer {}",
        answer["access_token"].as_str().unwrap()
    );
    let rest = format!("{base}/services/data/v{VERSION}/limits");
    assert_eq!(curl(&["-H", &bearer, &rest]).await.status, 200);
    assert_eq!(org.mock.token_requests(), 1);
    assert_eq!(
        assert_only_real_sessions(&org),
        3,
        "getUserInfo, query, limits"
    );
}
