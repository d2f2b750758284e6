//! Legacy logins answered by sfproxy itself (`logins = true` on a route): a caller that logs in
//! with a username and password gets sfproxy's own sealed session id, and Salesforce never sees a
//! legacy login, only the route's JWT bearer login and its real session. Driven by
//! simple-salesforce (tests/python/logins_client.py) through an intercepted tunnel to
//! login.salesforce.com, against the stand-in org over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::path::{Path, PathBuf};

use support::{Org, Proxy, USER, route, sha256_hex};

/// The route's client and its secret: the password a legacy caller logs in with.
const CLIENT: &str = "erp";
const SECRET: &str = "erp-secret";
const VERSION: &str = "61.0";

/// An interception CA in `dir`; returns (cert, key) paths.
fn make_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = sfproxy::intercept::ca::generate("CN=sfproxy test interception CA", 2, &[]).unwrap();
    let (cert, key) = (dir.join("icpt-ca.crt"), dir.join("icpt-ca.key"));
    std::fs::write(&cert, ca.cert_pem).unwrap();
    std::fs::write(&key, ca.key_pem).unwrap();
    (cert, key)
}

/// The stand-in's config with interception on (its CA in the org's directory, see
/// [`interception_ca`]), `proxy_extra` in `[proxy]`, `[logins]`, the client `erp` with its
/// secret, and the logins route `erp` for login.salesforce.com and the My Domain host.
fn config(org: &Org, proxy_extra: &str) -> String {
    let (cert, key) = make_ca(org.dir.path());
    org.config(
        &format!(
            "{proxy_extra}\n[proxy.intercept]\nca_cert_file = \"{}\"\nca_key_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
    ) + &format!(
        "\n[logins]\nsession_ttl = \"8h\"\n\n[clients.{CLIENT}]\nsecret_sha256 = \"{}\"\n",
        sha256_hex(SECRET.as_bytes())
    ) + &route(
        "erp",
        &["login.salesforce.com", "acme.my.salesforce.com"],
        USER,
        &format!("clients = [\"{CLIENT}\"]\nlogins = true"),
    )
}

/// The interception CA [`config`] wrote: what callers trust (REQUESTS_CA_BUNDLE).
fn interception_ca(org: &Org) -> PathBuf {
    org.dir.path().join("icpt-ca.crt")
}

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

/// Every API request the stand-in saw carried a session it issued (the route's real one), never
/// an id sfproxy handed out; returns how many there were.
fn assert_only_real_sessions(org: &Org) -> usize {
    let issued = org.mock.issued_sessions();
    let seen = org.mock.requests();
    for request in &seen {
        let session = request.session.as_deref().unwrap_or_else(|| {
            panic!(
                "{} {} carried no session",
                request.method, request.path_and_query
            )
        });
        assert!(
            issued.iter().any(|s| s == session),
            "{} {} carried a session the org never issued",
            request.method,
            request.path_and_query
        );
        assert!(
            support::header(&request.headers, "authorization")
                .is_none_or(|a| a == format!("Bearer {session}")),
            "{} {}: Authorization is the real session",
            request.method,
            request.path_and_query
        );
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_salesforce_logs_in_through_sfproxy_and_salesforce_sees_only_the_real_session() {
    if !has_simple_salesforce() {
        return;
    }
    let org = Org::start().await;
    let proxy = Proxy::start(&config(&org, ""));
    let ca = interception_ca(&org);
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
