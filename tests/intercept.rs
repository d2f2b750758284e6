//! Callers that keep their `https://` URLs: CONNECT interception with a local CA, driven by real
//! clients — curl (HTTP/1.1 and HTTP/2 inside the tunnel, `--proxy` and `HTTPS_PROXY`) and Java's
//! `java.net.http.HttpClient` with a trust store made by keytool.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::path::{Path, PathBuf};

use support::{Org, Proxy, USER, route};

const HOST: &str = "acme.my.salesforce.com";
const LIMITS: &str = "https://acme.my.salesforce.com/services/data/v61.0/limits";

/// An interception CA in `dir`; returns (cert, key) paths.
fn make_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = sfproxy::intercept::ca::generate("CN=sfproxy test interception CA", 2, &[]).unwrap();
    let (cert, key) = (dir.join("icpt-ca.crt"), dir.join("icpt-ca.key"));
    std::fs::write(&cert, ca.cert_pem).unwrap();
    std::fs::write(&key, ca.key_pem).unwrap();
    (cert, key)
}

fn intercepting(org: &Org, extra_routes: &str) -> (Proxy, PathBuf) {
    let (cert, key) = make_ca(org.dir.path());
    let config = org.config(
        &format!(
            "[proxy.intercept]\nca_cert_file = \"{}\"\nca_key_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
    ) + &route("erp", &[HOST], USER, "")
        + extra_routes;
    (Proxy::start(&config), cert)
}

/// curl through the proxy; returns (exit code, HTTP status, HTTP version, body).
async fn curl_https(args: &[&str], env: &[(&str, &str)]) -> (i32, u16, String, String) {
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut tail = tail.split(' ');
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = tail.next().unwrap_or("").to_owned();
    for secret in support::SECRETS {
        assert!(!body.contains(secret), "{secret:?} in an answer");
    }
    (
        output.status.code().unwrap_or(-1),
        status,
        version,
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn https_callers_get_salesforce_through_the_tunnel() {
    let org = Org::start().await;
    let (proxy, ca) = intercepting(&org, "");
    let ca = ca.display().to_string();

    // HTTP/2 inside the tunnel when the client offers it, HTTP/1.1 when it does not.
    let (code, status, version, body) = curl_https(
        &["--proxy", &proxy.url(), "--cacert", &ca, "--http2", LIMITS],
        &[],
    )
    .await;
    assert_eq!((code, status), (0, 200), "{body}");
    assert_eq!(version, "2");
    assert!(body.contains("DailyApiRequests"));
    let (code, status, version, _) = curl_https(
        &[
            "--proxy",
            &proxy.url(),
            "--cacert",
            &ca,
            "--http1.1",
            LIMITS,
        ],
        &[],
    )
    .await;
    assert_eq!((code, status, version.as_str()), (0, 200, "1.1"));

    // HTTPS_PROXY, as a job configured for https:// URLs would set it.
    let (code, status, _, _) =
        curl_https(&["--cacert", &ca, LIMITS], &[("HTTPS_PROXY", &proxy.url())]).await;
    assert_eq!((code, status), (0, 200));

    // Same path as a plain request: the stand-in saw the proxy's session, one login for all.
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.session_valid));
    assert_eq!(org.mock.token_requests(), 1);
    let lines = proxy.wait_for_events("request", 6).await;
    let inner: Vec<_> = lines.iter().filter(|e| e["method"] == "GET").collect();
    assert_eq!(inner.len(), 3);
    assert!(
        inner
            .iter()
            .all(|e| e["route"] == "erp" && e["status"] == 200)
    );
    let connects: Vec<_> = lines.iter().filter(|e| e["method"] == "CONNECT").collect();
    assert_eq!(connects.len(), 3);
    assert!(connects.iter().all(|e| e["path"] == format!("{HOST}:443")));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_replayed_inside_the_tunnel() {
    let org = Org::start().await;
    let (proxy, ca) = intercepting(&org, "");
    let ca = ca.display().to_string();
    let url = proxy.url();
    let args = ["--proxy", url.as_str(), "--cacert", ca.as_str(), LIMITS];
    assert_eq!(curl_https(&args, &[]).await.1, 200);
    org.mock.expire_sessions();
    assert_eq!(curl_https(&args, &[]).await.1, 200);
    assert_eq!(org.mock.token_requests(), 2);
    assert_eq!(
        org.mock.requests().len(),
        3,
        "the expired attempt and its replay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_are_only_for_routed_hosts_and_known_callers() {
    let org = Org::start().await;
    let hash: String = sfproxy::config::sha256(b"erp-secret")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (proxy, ca) = intercepting(
        &org,
        &format!("[clients.erp]\nsecret_sha256 = \"{hash}\"\n"),
    );
    let ca = ca.display().to_string();
    let url = proxy.url();

    // An unrouted host: 403 to the CONNECT, no tunnel, nothing dialled.
    let (code, status, _, _) = curl_https(
        &[
            "--proxy",
            &url,
            "--proxy-user",
            "erp:erp-secret",
            "--cacert",
            &ca,
            "https://evil.example/",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert_eq!(status, 0, "no answer from inside a tunnel");
    let answer = proxy
        .raw("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nProxy-Authorization: Basic ZXJwOmVycC1zZWNyZXQ=\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("PROXY_NO_ROUTE"), "{answer}");

    // The caller is identified on the CONNECT, exactly as for plain requests.
    let answer = proxy
        .raw(&format!(
            "CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n"
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    let (code, status, _, _) = curl_https(
        &[
            "--proxy",
            &url,
            "--proxy-user",
            "erp:erp-secret",
            "--cacert",
            &ca,
            LIMITS,
        ],
        &[],
    )
    .await;
    assert_eq!((code, status), (0, 200));
    assert_eq!(
        org.mock.requests().len(),
        1,
        "only the routed request reached Salesforce"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_does_not_trust_the_ca_fails_cleanly() {
    let org = Org::start().await;
    let (proxy, _ca) = intercepting(&org, "");
    let (code, status, _, _) = curl_https(&["--proxy", &proxy.url(), LIMITS], &[]).await;
    assert_eq!(code, 60, "curl: certificate problem");
    assert_eq!(status, 0);
    assert!(org.mock.requests().is_empty());
    let refusals = proxy
        .wait_for_events(
            "the caller did not complete TLS in the tunnel; does it trust the sfproxy CA?",
            1,
        )
        .await;
    assert_eq!(
        refusals[0]["level"], "WARN",
        "the caller's side, not a server error"
    );
    // And the proxy goes on serving callers that do trust it.
    let ca = org.dir.path().join("icpt-ca.crt").display().to_string();
    let (code, status, _, _) =
        curl_https(&["--proxy", &proxy.url(), "--cacert", &ca, LIMITS], &[]).await;
    assert_eq!((code, status), (0, 200));
    // Nothing, the failed tunnel's teardown included, was logged as a server error.
    proxy.wait_for_events("request", 2).await;
    proxy.settle().await;
    let log = proxy.log();
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
}

const JAVA_CLIENT: &str = r#"
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Caller {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder()
            .proxy(ProxySelector.of(new InetSocketAddress(args[0], Integer.parseInt(args[1]))))
            .build();
        HttpResponse<String> response = client.send(
            HttpRequest.newBuilder(URI.create(args[2])).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.version());
        System.out.println(response.body());
    }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_java_http_client_with_a_trust_store_works() {
    // Present if it runs at all (keytool has no -version and exits non-zero on -help).
    let has = |tool: &str| {
        std::process::Command::new(tool)
            .arg("-help")
            .output()
            .is_ok()
    };
    if !(has("javac") && has("java") && has("keytool")) {
        eprintln!("SKIPPED: no Java (javac, java, keytool) on this machine");
        return;
    }
    let org = Org::start().await;
    let (proxy, ca) = intercepting(&org, "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Caller.java"), JAVA_CLIENT).unwrap();
    let store = dir.path().join("truststore.p12");
    let run = |program: &str, args: Vec<String>| {
        let dir = dir.path().to_owned();
        let program = program.to_owned();
        async move {
            tokio::process::Command::new(&program)
                .args(&args)
                .current_dir(&dir)
                .output()
                .await
                .unwrap()
        }
    };
    let keytool = run(
        "keytool",
        [
            "-importcert",
            "-noprompt",
            "-alias",
            "sfproxy",
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
            "-keystore",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            store.display().to_string(),
            "-file".into(),
            ca.display().to_string(),
        ])
        .collect(),
    )
    .await;
    assert!(
        keytool.status.success(),
        "{}",
        String::from_utf8_lossy(&keytool.stderr)
    );
    let javac = run("javac", vec!["Caller.java".into()]).await;
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let java = run(
        "java",
        vec![
            format!("-Djavax.net.ssl.trustStore={}", store.display()),
            "-Djavax.net.ssl.trustStorePassword=changeit".into(),
            "-cp".into(),
            ".".into(),
            "Caller".into(),
            "127.0.0.1".into(),
            proxy.addr.port().to_string(),
            LIMITS.into(),
        ],
    )
    .await;
    let out = String::from_utf8_lossy(&java.stdout);
    assert!(
        java.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&java.stderr)
    );
    assert!(out.starts_with("200 HTTP_2"), "{out}");
    assert!(out.contains("DailyApiRequests"), "{out}");
    assert_eq!(org.mock.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_makes_a_constrained_ca() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::run_sfproxy(
        &[
            "keygen",
            "--ca",
            "--name",
            "sfproxy-ca",
            "--dir",
            ".",
            "--permit",
            "example.net",
        ],
        dir.path(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = dir.path().join("sfproxy-ca.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("[proxy.intercept]"), "{stdout}");
    let cert = dir.path().join("sfproxy-ca.crt");
    let pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    // It loads as an interception CA, and it vouches only for the permitted names.
    let ca = sfproxy::intercept::ca::InterceptCa::from_pem(&pem, &key_pem).unwrap();
    assert!(ca.leaf("acme.my.salesforce.com").is_ok());
    if let Ok(text) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
    {
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("CA:TRUE"), "{text}");
        for name in ["DNS:salesforce.com", "DNS:force.com", "DNS:example.net"] {
            assert!(text.contains(name), "{name} permitted: {text}");
        }
    }
    // Without --force it will not replace the CA.
    let again = support::run_sfproxy(
        &["keygen", "--ca", "--name", "sfproxy-ca", "--dir", "."],
        dir.path(),
    );
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), pem);
}
