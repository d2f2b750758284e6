//! Callers through CONNECT tunnels, driven by real clients. Those that keep their `https://` URLs:
//! interception with a local CA — curl (HTTP/1.1 and HTTP/2 inside the tunnel, `--proxy` and
//! `HTTPS_PROXY`) and Java's `java.net.http.HttpClient` with a trust store made by keytool. Those
//! that tunnel plain HTTP to port 80: curl `-p` and jsforce 3 from npm (`tests/js/`). And the
//! limits a tunnel keeps: `max_connections` and the connections gauge, `header_timeout` inside,
//! the drain at SIGTERM, running out of file descriptors, what a CONNECT may ask for. And the
//! leaves a reload keeps: the same for the same CA, new ones for a new CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use support::{Org, Proxy, USER, assert_refusal, curl, route, scrape::Scrape};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const HOST: &str = "acme.my.salesforce.com";
const LIMITS: &str = "https://acme.my.salesforce.com/services/data/v61.0/limits";

fn intercepting(org: &Org, extra_routes: &str) -> (Proxy, PathBuf) {
    intercepting_with(org, "", extra_routes)
}

/// `intercepting` with `proxy_extra` lines in `[proxy]`.
fn intercepting_with(org: &Org, proxy_extra: &str, extra_routes: &str) -> (Proxy, PathBuf) {
    (
        Proxy::start(&intercepting_config(org, proxy_extra, extra_routes)),
        org.interception_ca(),
    )
}

fn intercepting_config(org: &Org, proxy_extra: &str, extra_routes: &str) -> String {
    org.intercepting_config(proxy_extra) + &route("erp", &[HOST], USER, "") + extra_routes
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
    let hash: String = support::sha256(b"erp-secret")
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
    let ca = org.interception_ca().display().to_string();
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

// ---- Tunnels keep the proxy port's limits; plain-HTTP tunnels; what a CONNECT may ask for.

const ADMIN: &str = "admin_listen = \"127.0.0.1:0\"";
const LIMITS_HTTP: &str = "http://acme.my.salesforce.com/services/data/v61.0/limits";

/// One line for the reliability docs, next to the fault suite's (`.ci/run` prints the file).
fn figures(line: &str) {
    use std::io::Write;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-figures.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Reads a response head (up to its blank line) byte by byte, leaving what follows unread;
/// what arrived if the connection closes or goes quiet for 5 s first.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `CONNECT target` by hand; returns the connection and the head of the proxy's answer.
async fn connect(proxy: &Proxy, target: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    (stream, head)
}

/// The caller's side of TLS in a tunnel, trusting `ca`, offering HTTP/1.1.
async fn tls_in(stream: TcpStream, ca: &Path) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), stream)
        .await
        .unwrap()
}

/// Reads until the proxy closes; panics if it is still open after `within`. Returns what it
/// sent and how long it took.
async fn until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        closed.is_ok(),
        "still open after {within:?}; received {text:?}"
    );
    (text, started.elapsed())
}

/// The status and the Salesforce-shaped body of a raw answer (the last one, after any 200 to a
/// CONNECT): (status, errorCode, message).
fn refusal(answer: &str) -> (u16, String, String) {
    let last = answer.rfind("HTTP/1.1 ").map_or(answer, |at| &answer[at..]);
    let status = last
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = last.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {answer:?}"));
    (
        status,
        json[0]["errorCode"].as_str().unwrap_or_default().to_owned(),
        json[0]["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The SHA-256 fingerprint of the leaf certificate a tunnel to [`HOST`] is served with,
/// verified against `ca`.
async fn served_leaf(proxy: &Proxy, ca: &Path) -> String {
    let (stream, head) = connect(proxy, &format!("{HOST}:443")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_in(stream, ca).await;
    let certs = tls.get_ref().1.peer_certificates().expect("a certificate");
    support::sha256_hex(&certs[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_leaves_of_an_unchanged_ca_and_a_new_ca_issues_new_ones() {
    let org = Org::start().await;
    let config = intercepting_config(&org, "", "");
    let proxy = Proxy::start(&config);
    let ca = org.interception_ca();
    let first = served_leaf(&proxy, &ca).await;
    assert_eq!(served_leaf(&proxy, &ca).await, first, "one leaf per host");

    // Another route, the same CA: callers pinning or caching the leaf see no change.
    proxy.rewrite_config(&(config.clone() + &route("wms", &["wms.my.salesforce.com"], USER, "")));
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 1).await;
    assert_eq!(
        served_leaf(&proxy, &ca).await,
        first,
        "a reload with the same CA keeps its leaves"
    );

    // A new CA in the same files: its own leaves (the handshake verifies against the new CA).
    proxy.rewrite_config(&intercepting_config(&org, "", ""));
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 2).await;
    assert_ne!(
        served_leaf(&proxy, &ca).await,
        first,
        "a new CA, a new leaf"
    );
    let ca = ca.display().to_string();
    let args = ["--proxy", &proxy.url(), "--cacert", &ca, LIMITS];
    assert_eq!(curl_https(&args, &[]).await.1, 200, "and it serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_count_against_max_connections_for_their_whole_life() {
    let org = Org::start().await;
    let (proxy, ca) = intercepting_with(
        &org,
        &format!("{ADMIN}\nmax_connections = 50\nheader_timeout = \"30s\""),
        "",
    );
    let admin = proxy.admin().await;
    let rss_at_start = proxy.rss_kb();
    // 2,000 tunnels opened and left idle (the TLS not even started).
    let (mut open, mut refused) = (Vec::new(), 0);
    for _ in 0..2000 {
        let (stream, head) = connect(&proxy, &format!("{HOST}:443")).await;
        if head.starts_with("HTTP/1.1 200") {
            open.push(stream);
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            refused += 1;
        }
    }
    let rss_with_tunnels = proxy.rss_kb();
    assert_eq!((open.len(), refused), (50, 1950));
    let scrape = Scrape::take(admin).await;
    assert_eq!(scrape.get("sfproxy_connections_open", &[]), 50.0);
    // A plain request is refused too while the tunnels hold every slot.
    let reply = curl(&["-x", &proxy.url(), LIMITS_HTTP]).await;
    assert_refusal(
        &reply,
        503,
        "PROXY_TOO_MANY_CONNECTIONS",
        &["50 connections"],
    );

    // Once they close, their slots are free again.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Scrape::take(admin)
        .await
        .get("sfproxy_connections_open", &[])
        != 0.0
    {
        assert!(Instant::now() < deadline, "the gauge went back to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = ca.display().to_string();
    let (code, status, _, _) =
        curl_https(&["--proxy", &proxy.url(), "--cacert", &ca, LIMITS], &[]).await;
    assert_eq!((code, status), (0, 200));
    figures(&format!(
        "tunnels: 2,000 idle tunnels with max_connections 50 -> 50 open, 1,950 refused 503, \
         sfproxy_connections_open 50, RSS {:.1} -> {:.1} MB; gauge 0 once closed, served again",
        rss_at_start as f64 / 1024.0,
        rss_with_tunnels as f64 / 1024.0
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_gets_the_header_timeout_of_the_proxy_port() {
    let org = Org::start().await;
    let (proxy, ca) = intercepting_with(&org, "header_timeout = \"1s\"", "");
    let half = format!("GET /services/data/v61.0/limits HTTP/1.1\r\nHost: {HOST}\r\n");
    let within = Duration::from_secs(5);
    let at_least = Duration::from_millis(900);
    let mut closed_after = Vec::new();

    // A half-sent header inside TLS.
    let (stream, head) = connect(&proxy, &format!("{HOST}:443")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls_in(stream, &ca).await;
    tls.write_all(half.as_bytes()).await.unwrap();
    let (_, after) = until_closed(&mut tls, within).await;
    assert!(after >= at_least, "{after:?}");
    closed_after.push(("half-sent header in TLS", after));

    // An idle keep-alive connection inside TLS, after one request.
    let (stream, _) = connect(&proxy, &format!("{HOST}:443")).await;
    let mut tls = tls_in(stream, &ca).await;
    tls.write_all(format!("{half}\r\n").as_bytes())
        .await
        .unwrap();
    let (answer, after) = until_closed(&mut tls, within).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(after >= at_least, "{after:?}");
    closed_after.push(("idle keep-alive in TLS", after));

    // A half-sent header in a plain-HTTP tunnel, and a tunnel that sends nothing at all.
    for (what, sent) in [
        ("half-sent header in plain HTTP", half.as_str()),
        ("nothing sent", ""),
    ] {
        let target = if sent.is_empty() { 443 } else { 80 };
        let (mut stream, head) = connect(&proxy, &format!("{HOST}:{target}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream.write_all(sent.as_bytes()).await.unwrap();
        let (answer, after) = until_closed(&mut stream, within).await;
        assert!(answer.is_empty(), "{what}: {answer}");
        assert!(after >= at_least, "{what}: {after:?}");
        closed_after.push((what, after));
    }
    assert_eq!(
        org.mock.requests().len(),
        1,
        "only the whole request was sent"
    );
    let listed: Vec<String> = closed_after
        .iter()
        .map(|(what, after)| format!("{what} {:.2}s", after.as_secs_f64()))
        .collect();
    figures(&format!(
        "tunnels, header_timeout 1s: closed after {}",
        listed.join(", ")
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnelled_download_in_flight_at_sigterm_finishes() {
    let org = Org::start().await;
    let (mut proxy, ca) = intercepting_with(&org, "shutdown_grace = \"10s\"", "");
    let ca = ca.display().to_string();
    // 1.6 MB in 16 KiB chunks every 20 ms: about two seconds each, over HTTP/1.1 and HTTP/2.
    let download = format!("https://{HOST}/download?bytes=1600000&chunk_ms=20");
    let downloads: Vec<_> = ["--http1.1", "--http2"]
        .into_iter()
        .map(|version| {
            let (url, ca, download) = (proxy.url(), ca.clone(), download.clone());
            tokio::spawn(async move {
                let output = tokio::process::Command::new("curl")
                    .args(["-sS", "--max-time", "30", "-o", "/dev/null", "-w"])
                    .args(["%{http_code} %{size_download}", version])
                    .args(["--proxy", &url, "--cacert", &ca, &download])
                    .env_remove("HTTPS_PROXY")
                    .output()
                    .await
                    .unwrap();
                (
                    output.status.code(),
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while org.mock.open_downloads() < 2 {
        assert!(Instant::now() < deadline, "both downloads started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Instant::now();
    proxy.signal("TERM").await;
    for download in downloads {
        let (code, out, err) = download.await.unwrap();
        assert_eq!(code, Some(0), "{out} {err}");
        assert_eq!(out, "200 1600000", "the whole download: {err}");
    }
    let finished = term.elapsed();
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the proxy exits once the tunnels finished");
    assert_eq!(status.code(), Some(0));
    let exited = term.elapsed();
    assert!(
        exited < Duration::from_secs(10),
        "within shutdown_grace: {exited:?}"
    );
    figures(&format!(
        "tunnels at SIGTERM: two 1.6 MB downloads in flight (HTTP/1.1 and HTTP/2 in TLS tunnels) \
         finished whole {:.1}s after it, the proxy exited 0 after {:.1}s (shutdown_grace 10s)",
        finished.as_secs_f64(),
        exited.as_secs_f64()
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_newest_connections_are_shed() {
    let org = Org::start().await;
    let config = org.config("header_timeout = \"30s\"", "") + &route("erp", &[HOST], USER, "");
    let proxy = Proxy::start_with_fd_limit(&config, 64);
    // One request first, so the login and the instance connection have their descriptors.
    let reply = curl(&["-x", &proxy.url(), LIMITS_HTTP]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Served connections wait for their request in silence; shed ones are answered and closed.
    let outcomes: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut answer = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer))
                        .await;
                (
                    read.is_ok(),
                    String::from_utf8_lossy(&answer).into_owned(),
                    stream,
                )
            })
        })
        .collect();
    let (mut held, mut shed) = (Vec::new(), 0);
    for outcome in outcomes {
        let (answered, answer, stream) = outcome.await.unwrap();
        if answered {
            assert_eq!(refusal(&answer).1, "PROXY_TOO_MANY_CONNECTIONS", "{answer}");
            shed += 1;
        } else {
            held.push(stream);
        }
    }
    assert!(
        shed > 0 && !held.is_empty(),
        "served {}, shed {shed}",
        held.len()
    );
    assert!(held.len() < 64);

    // While they are held, accepting goes on: the newest is answered at once.
    let started = Instant::now();
    let mut newest = TcpStream::connect(proxy.addr).await.unwrap();
    let (answer, _) = until_closed(&mut newest, Duration::from_secs(1)).await;
    let (status, code, message) = refusal(&answer);
    assert_eq!((status, code.as_str()), (503, "PROXY_TOO_MANY_CONNECTIONS"));
    assert!(message.contains("file descriptors"), "{message}");
    let shed_in = started.elapsed();
    let logged = proxy
        .wait_for_events("connection shed: out of file descriptors", shed + 1)
        .await;
    assert_eq!(logged[0]["level"], "WARN");

    // Once they close, new connections are served again, tunnels included.
    let served = held.len();
    drop(held);
    // The proxy sees the closes in its own time: poll, with a deadline, for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = curl(&["-x", &proxy.url(), LIMITS_HTTP]).await;
        if reply.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = curl(&["-p", "-x", &proxy.url(), LIMITS_HTTP]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    figures(&format!(
        "out of descriptors (RLIMIT_NOFILE 64): 100 idle connections -> {served} served, {shed} \
         shed with 503 at once; the next one shed in {:.0} ms; served again once they closed",
        shed_in.as_secs_f64() * 1000.0
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_tunnels_to_port_80_are_served_with_or_without_interception() {
    let org = Org::start().await;
    let plain = Proxy::start(&(org.config("", "") + &route("erp", &[HOST], USER, "")));
    let (intercepting, ca) = intercepting(&org, "");
    let ca = ca.display().to_string();
    for proxy in [&plain, &intercepting] {
        // curl's proxytunnel: CONNECT host:80, then plain HTTP inside.
        let reply = curl(&["-p", "-x", &proxy.url(), LIMITS_HTTP]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains("DailyApiRequests"));
        let lines = proxy.wait_for_events("request", 2).await;
        assert_eq!(lines[0]["method"], "CONNECT");
        assert_eq!(lines[0]["path"], format!("{HOST}:80"));
        assert_eq!(lines[1]["method"], "GET");
        assert_eq!(lines[1]["route"], "erp");
        assert_eq!(lines[1]["status"], 200);
    }
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.session_valid), "the route's session");

    // Without interception a tunnel to 443 is still refused.
    let answer = plain
        .raw(&format!(
            "CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n"
        ))
        .await;
    assert_eq!(refusal(&answer).0, 405, "{answer}");
    assert_eq!(refusal(&answer).1, "PROXY_CONNECT_UNSUPPORTED");

    // Plain HTTP where TLS is expected: a precise 400, in Salesforce's shape.
    let answer = intercepting
        .raw(&format!(
            "CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n\
             GET /services/data/v61.0/limits HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, code, message) = refusal(&answer);
    assert_eq!(
        (status, code.as_str()),
        (400, "PROXY_BAD_REQUEST"),
        "{answer}"
    );
    assert!(message.contains("expected TLS"), "{message}");
    intercepting
        .wait_for_events("plain HTTP in a tunnel that expected TLS; answered 400", 1)
        .await;

    // TLS where plain HTTP is expected: logged and closed, with or without interception.
    for proxy in [&plain, &intercepting] {
        let (code, status, _, _) = curl_https(
            &[
                "-p",
                "--proxy",
                &proxy.url(),
                "--cacert",
                &ca,
                &format!("https://{HOST}:80/services/data/v61.0/limits"),
            ],
            &[],
        )
        .await;
        assert_ne!(code, 0);
        assert_eq!(status, 0);
        let events = proxy
            .wait_for_events(
                "TLS in a tunnel to port 80, which carries plain HTTP; closed (CONNECT to port \
                 443 for https, with [proxy.intercept])",
                1,
            )
            .await;
        assert_eq!(events[0]["level"], "WARN");
    }
    assert_eq!(
        org.mock.requests().len(),
        2,
        "nothing more reached Salesforce"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_targets_must_be_host_port_443_or_80() {
    let org = Org::start().await;
    let (proxy, _ca) = intercepting(&org, "");
    // Origin form (`CONNECT /path`) is left to the checks of methods and forms.
    for (target, status, code, says) in [
        (format!("{HOST}:8443"), 403, "PROXY_NO_ROUTE", "port 443"),
        (
            format!("{HOST}:22"),
            403,
            "PROXY_NO_ROUTE",
            "not to acme.my.salesforce.com:22",
        ),
        (HOST.to_owned(), 400, "PROXY_BAD_REQUEST", "no port"),
        (
            format!("bob:Hunter2Secret@{HOST}:443"),
            400,
            "PROXY_BAD_REQUEST",
            "user information",
        ),
        (
            format!("https://{HOST}:443/"),
            400,
            "PROXY_BAD_REQUEST",
            "host:port",
        ),
        (
            "evil.example:80".to_owned(),
            403,
            "PROXY_NO_ROUTE",
            "evil.example",
        ),
    ] {
        let answer = proxy
            .raw(&format!(
                "CONNECT {target} HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n"
            ))
            .await;
        let (got, got_code, message) = refusal(&answer);
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{target}: {answer}"
        );
        assert!(message.contains(says), "{target}: {message}");
        assert!(!answer.contains("HTTP/1.1 200"), "{target}: no tunnel");
        assert!(
            !answer.contains("Hunter2Secret"),
            "a password echoed: {answer}"
        );
    }

    // CONNECT on an HTTP/2 (h2c) connection: refused, no tunnel.
    use http_body_util::BodyExt;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{HOST}:443"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 405);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body[0]["errorCode"], "PROXY_CONNECT_UNSUPPORTED");
    assert!(
        body[0]["message"].as_str().unwrap().contains("HTTP/2"),
        "{body}"
    );

    assert!(org.mock.requests().is_empty(), "nothing reached Salesforce");
    proxy.settle().await;
    let codes: Vec<String> = proxy
        .events("refused")
        .iter()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes.len(), 7, "each refusal logged: {codes:?}");
    assert!(
        !proxy.log().contains("Hunter2Secret"),
        "the password in a CONNECT target was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jsforce_queries_through_sfproxy_as_its_http_proxy() {
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node {
        // CI installs Node (.ci/run): there, a missing one is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no Node.js in CI: .ci/run must install it"
        );
        eprintln!("SKIPPED: no Node.js on this machine");
        return;
    }
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !js.join("node_modules/jsforce").exists() {
        let npm = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&js)
            .output()
            .await
            .expect("npm is installed with node");
        assert!(
            npm.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&npm.stderr)
        );
    }
    let org = Org::start().await;
    // No interception: jsforce tunnels plain HTTP to port 80.
    let proxy = Proxy::start(&(org.config("", "") + &route("erp", &[HOST], USER, "")));
    // tests/js/query.js: a query with `httpProxy` and an http:// instance URL.
    let output = tokio::process::Command::new("node")
        .arg(js.join("query.js"))
        .arg(proxy.url())
        .arg(format!("http://{HOST}"))
        .current_dir(&js)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
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
    assert_eq!(result["done"], true, "{result}");
    assert_eq!(result["totalSize"], 0, "{result}");
    let seen = org.mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].session_valid,
        "the route's session, not the caller's token"
    );
    assert!(
        seen[0]
            .path_and_query
            .starts_with("/services/data/v61.0/query?q=")
    );
    let lines = proxy.wait_for_events("request", 2).await;
    assert_eq!(lines[0]["method"], "CONNECT");
    assert_eq!(lines[0]["path"], format!("{HOST}:80"));
    assert_eq!(lines[1]["route"], "erp");
    assert_eq!(org.mock.token_requests(), 1);
}
