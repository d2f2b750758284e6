//! Shared test support: a stand-in org with freshly generated credentials, the real `sfproxy`
//! binary running on a config, and curl as the caller. Everything binds 127.0.0.1:0.

#![allow(dead_code)] // each test binary uses its own part of this module
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a failed test

pub mod faulty;
pub mod logins;
pub mod redis;
pub mod scrape;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use sfproxy::{
    mock_org::{MockOrg, MockOrgConfig, MockUser},
    pki,
};

pub const CONSUMER_KEY: &str = "3MVG9test.consumer";
pub const AUDIENCE: &str = "https://login.salesforce.com";
pub const USER: &str = "erp@acme.example";
pub const OTHER_USER: &str = "wms@acme.example";

pub fn user(name: &str) -> MockUser {
    MockUser {
        username: name.to_owned(),
        approved: true,
        rest_api: true,
    }
}

/// A stand-in org plus the files a proxy config points at (key, CA).
pub struct Org {
    pub mock: MockOrg,
    pub dir: tempfile::TempDir,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    config: MockOrgConfig,
}

impl Org {
    pub async fn start() -> Org {
        Org::with_users(vec![user(USER), user(OTHER_USER)]).await
    }

    pub async fn with_users(users: Vec<MockUser>) -> Org {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = pki::connected_app_cert("sfproxy test", 1).expect("app cert");
        let key_file = dir.path().join("acme.key");
        std::fs::write(&key_file, &app.key_pem).expect("write key");
        Org::launch(dir, app.cert_pem, key_file, users).await
    }

    /// A stand-in org whose connected app holds `certificate_pem` (e.g. from `sfproxy keygen`);
    /// `key_file` is the matching private key the proxy config will point at.
    pub async fn with_app_certificate(
        certificate_pem: String,
        key_file: PathBuf,
        users: Vec<MockUser>,
    ) -> Org {
        Org::launch(
            tempfile::tempdir().expect("tempdir"),
            certificate_pem,
            key_file,
            users,
        )
        .await
    }

    async fn launch(
        dir: tempfile::TempDir,
        certificate_pem: String,
        key_file: PathBuf,
        users: Vec<MockUser>,
    ) -> Org {
        let (ca, tls) = pki::tls_ca_and_server(&["localhost", "127.0.0.1"]).expect("tls");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write ca");
        let config = MockOrgConfig {
            consumer_key: CONSUMER_KEY.to_owned(),
            certificate_pem,
            users,
            audience: AUDIENCE.to_owned(),
            tls,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mock = MockOrg::start(config.clone())
            .await
            .expect("start stand-in org");
        Org {
            mock,
            dir,
            key_file,
            ca_file,
            config,
        }
    }

    /// Stops the stand-in (every connection to it dies) and starts it again on the same port
    /// with the same certificates; it has forgotten every session.
    pub async fn restart(&mut self) {
        let addr = self.mock.addr();
        self.mock.shutdown().await;
        self.mock = MockOrg::start(MockOrgConfig {
            listen: addr,
            ..self.config.clone()
        })
        .await
        .expect("restart stand-in org on its port");
    }

    /// `[proxy]` on 127.0.0.1:0 trusting the stand-in's CA, plus `[orgs.acme]` pointing at it.
    /// `proxy_extra` goes into `[proxy]`, `org_extra` into `[orgs.acme]`.
    pub fn config(&self, proxy_extra: &str, org_extra: &str) -> String {
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"
ca_file = "{ca}"
{proxy_extra}

[orgs.acme]
login_url = "{url}"
audience = "{AUDIENCE}"
client_id = "{CONSUMER_KEY}"
private_key_file = "{key}"
{org_extra}
"#,
            ca = self.ca_file.display(),
            url = self.mock.url(),
            key = self.key_file.display(),
        )
    }

    /// [`Org::config`] with `[proxy.intercept]` on, its CA made in the org's directory (see
    /// [`Org::interception_ca`]).
    pub fn intercepting_config(&self, proxy_extra: &str) -> String {
        let ca = sfproxy::intercept::ca::generate("CN=sfproxy test interception CA", 2, &[])
            .expect("interception CA");
        let (cert, key) = (self.interception_ca(), self.dir.path().join("icpt-ca.key"));
        std::fs::write(&cert, ca.cert_pem).expect("write CA");
        std::fs::write(&key, ca.key_pem).expect("write CA key");
        self.config(
            &format!(
                "{proxy_extra}\n[proxy.intercept]\nca_cert_file = \"{}\"\nca_key_file = \"{}\"",
                cert.display(),
                key.display()
            ),
            "",
        )
    }

    /// The interception CA's certificate [`Org::intercepting_config`] wrote: what callers trust.
    pub fn interception_ca(&self) -> PathBuf {
        self.dir.path().join("icpt-ca.crt")
    }

    /// The access tokens the stand-in saw on REST requests, in order.
    pub fn seen_authorizations(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter_map(|r| header(&r.headers, "authorization"))
            .collect()
    }
}

pub fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// A route block for `[[routes]]` to org `acme`.
pub fn route(name: &str, hosts: &[&str], user: &str, extra: &str) -> String {
    route_to("acme", name, hosts, user, extra)
}

/// A route block for `[[routes]]` to any org.
pub fn route_to(org: &str, name: &str, hosts: &[&str], user: &str, extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "\n[[routes]]\nname = \"{name}\"\nhosts = [{}]\norg = \"{org}\"\nuser = \"{user}\"\n{extra}\n",
        hosts.join(", ")
    )
}

/// Another `[orgs.NAME]` on the same stand-in (same key and consumer key), plus `extra` lines
/// (e.g. a pinned `instance_url`).
pub fn org_block(org: &Org, name: &str, extra: &str) -> String {
    format!(
        "\n[orgs.{name}]\nlogin_url = \"{url}\"\naudience = \"{AUDIENCE}\"\n\
         client_id = \"{CONSUMER_KEY}\"\nprivate_key_file = \"{key}\"\n{extra}\n",
        url = org.mock.url(),
        key = org.key_file.display(),
    )
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks a refusal the way a caller's Salesforce error handling reads it: status, JSON, one
/// `[{"errorCode","message"}]` entry whose message says each of `says`. Returns the entry.
pub fn assert_refusal(reply: &Reply, status: u16, code: &str, says: &[&str]) -> serde_json::Value {
    assert_eq!(reply.status, status, "{code}: {}", reply.body);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json"),
        "{code}"
    );
    let body = reply.json();
    let entries = body
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"));
    assert_eq!(entries.len(), 1, "{body}");
    let entry = entries[0].clone();
    assert_eq!(entry["errorCode"], code, "{body}");
    let message = entry["message"].as_str().expect("a message");
    for fragment in says {
        assert!(
            message.contains(fragment),
            "{code}: the message {message:?} does not say {fragment:?}"
        );
    }
    entry
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sfproxy")
}

/// What must never appear in a log line or an answer: the stand-in's access tokens (its org id
/// and `!`) and the tests' own, JWT assertions (their base64url header), key material, and the
/// proxy secrets the tests use, also as the base64 of a `Proxy-Authorization: Basic` value.
pub const SECRETS: &[&str] = &[
    "00D000000000001!",
    "00Dbogus!",
    "eyJ0eXAiOiJKV1Qi",
    "eyJhbGciOi",
    "PRIVATE KEY",
    "erp-secret",
    "wms-secret",
    "wrong-secret",
    "ZXJwOmVycC1zZWNyZXQ",     // erp:erp-secret
    "d21zOndtcy1zZWNyZXQ",     // wms:wms-secret
    "ZXJwOndyb25nLXNlY3JldA",  // erp:wrong-secret
    "bm9ib2R5OmVycC1zZWNyZXQ", // nobody:erp-secret
];

/// The real `sfproxy run` on a config file, logging at `trace` (unless `RUST_LOG` says
/// otherwise) into a captured log that is searched for [`SECRETS`]: a leak fails the test when
/// the proxy is dropped.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    leaks: Arc<Mutex<Vec<String>>>,
    /// Trace lines searched; once a request was answered from upstream at the default
    /// `RUST_LOG=trace` there must be some, or the search proved nothing.
    traced: Arc<AtomicUsize>,
    at_trace: bool,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(config: &str) -> Proxy {
        Proxy::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::launch(config, env, None)
    }

    /// Starts the binary; with `fd_limit`, under that `RLIMIT_NOFILE` (set by `sh -c 'ulimit -n'`).
    fn launch(config: &str, env: &[(&str, &str)], fd_limit: Option<u32>) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sfproxy.toml");
        std::fs::write(&path, config).expect("write config");
        let rust_log = env
            .iter()
            .find(|(k, _)| *k == "RUST_LOG")
            .map_or_else(|| env_or("RUST_LOG", "trace"), |(_, v)| (*v).to_owned());
        let at_trace = rust_log == "trace";
        let mut command = match fd_limit {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    binary(),
                ]);
                sh
            }
            None => Command::new(binary()),
        };
        let mut child = command
            .args(["--log-format", "json", "run", "--config"])
            .arg(&path)
            .env("RUST_LOG", &rust_log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sfproxy");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let leaks = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let traced = Arc::new(AtomicUsize::new(0));
        let (sink, leaked, traces) = (log.clone(), leaks.clone(), traced.clone());
        let reader = std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            let mut stderr = BufReader::new(stderr);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match stderr.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end();
                // Every line, down to hyper's and rustls' trace, is searched for secrets.
                if let Some(secret) = SECRETS.iter().find(|s| line.contains(*s)) {
                    leaked
                        .lock()
                        .unwrap()
                        .push(format!("{secret:?} in: {line}"));
                }
                // Tests read the proxy's own events; the dependencies' chatter (hyper, rustls,
                // h2 at debug and trace) is only searched, not kept.
                let ours = line.contains("\"target\":\"sfproxy");
                let trace = line.contains("\"level\":\"TRACE\"");
                if trace {
                    traces.fetch_add(1, Ordering::Relaxed);
                }
                let chatter = trace || line.contains("\"level\":\"DEBUG\"");
                if line.contains("\"sfproxy ready\"") {
                    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
                        if let (Some(tx), Some(listen)) =
                            (ready_tx.take(), event["listen"].as_str())
                        {
                            let _ = tx.send(listen.parse::<SocketAddr>().expect("listen"));
                        }
                    }
                }
                if ours || !chatter {
                    let mut log = sink.lock().unwrap();
                    log.push_str(line);
                    log.push('\n');
                }
            }
        });
        let addr = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sfproxy did not become ready; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Proxy {
            child,
            addr,
            log,
            leaks,
            traced,
            at_trace,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// For `curl -x`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has stopped growing (lines reach stderr in batches, at most about
    /// 20 ms apart): after this, `log()` and `events()` hold what was logged for the requests
    /// answered so far.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = self.log().len();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.log().len();
            if now == seen || std::time::Instant::now() > deadline {
                return;
            }
            seen = now;
        }
    }

    /// The JSON log events whose message is `message`, with the fields of the request's span
    /// (route, org, user, session...) merged in.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["message"] == message)
            .map(|mut e| {
                if let Some(span) = e["span"].as_object().cloned() {
                    for (k, v) in span {
                        e[k.as_str()] = v;
                    }
                }
                e
            })
            .collect()
    }

    /// Sends raw bytes to the proxy port and returns everything it answers until it closes or
    /// goes quiet: for requests no HTTP client will send.
    pub async fn raw(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM first, so the proxy writes the log lines it still holds (they are written in
        // batches) and all of them are searched; SIGKILL if it does not stop soon.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let leaks = self.leaks.lock().unwrap();
        if !std::thread::panicking() {
            assert!(
                leaks.is_empty(),
                "secrets in the proxy's log:\n{}",
                leaks.join("\n")
            );
            // Trace lines come from the TLS and HTTP client: a request that went upstream.
            let served = self
                .events("request")
                .iter()
                .any(|e| e["status"].as_u64().is_some_and(|s| s < 400));
            assert!(
                !(self.at_trace && served) || self.traced.load(Ordering::Relaxed) > 0,
                "requests were served but no trace line was searched for secrets"
            );
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Runs `sfproxy` to completion (for exit codes and messages).
pub fn run_sfproxy(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("SFPROXY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run sfproxy")
}

/// One HTTP exchange as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Response header lines of the final answer, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.headers, name)
    }

    /// The `errorCode` of a Salesforce-shaped error body.
    pub fn error_code(&self) -> String {
        self.json()[0]["errorCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Runs curl with `args` (plus `-sS`), returning status, headers and body.
pub async fn curl(args: &[&str]) -> Reply {
    curl_with_env(args, &[]).await
}

pub async fn curl_with_env(args: &[&str], env: &[(&str, &str)]) -> Reply {
    run_curl(args, env, &[]).await
}

/// [`curl`] for an exchange whose answer holds a session id sfproxy handed out (a legacy
/// login's, its org id and `!` first): every other secret is still searched for.
pub async fn curl_login(args: &[&str]) -> Reply {
    run_curl(args, &[], &["00D000000000001!"]).await
}

async fn run_curl(args: &[&str], env: &[(&str, &str)], allowed: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers_file = dir.path().join("headers");
    let body_file = dir.path().join("body");
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(&headers_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-w", "%{http_code} %{http_connect}"])
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("curl is installed");
    let status_text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // A refused CONNECT leaves http_code at 0 and the proxy's status in http_connect.
    let status = status_text
        .split(' ')
        .filter_map(|s| s.parse::<u16>().ok())
        .find(|s| *s != 0)
        .ok_or(())
        .unwrap_or_else(|()| {
            panic!(
                "curl gave no status ({status_text:?}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let raw_headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
    // With a proxy, curl may write several header blocks; the last one is the answer.
    let last_block = raw_headers
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = std::fs::read_to_string(&body_file).unwrap_or_default();
    for secret in SECRETS.iter().filter(|s| !allowed.contains(s)) {
        assert!(
            !body.contains(secret) && !raw_headers.contains(secret),
            "{secret:?} in an answer: {raw_headers}{body}"
        );
    }
    Reply {
        status,
        headers,
        body,
    }
}

// ---- Operations: admin port, signals, config rewrites, and a stand-in for a given certificate.

impl Proxy {
    /// The process id of the running `sfproxy`, e.g. for `kill -HUP`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the proxy was started on (it re-reads it on SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("sfproxy.toml")
    }

    /// Replaces the config file in one step (write aside, then rename), as an editor or a
    /// deployment tool would; the proxy sees it on the next SIGHUP.
    pub fn rewrite_config(&self, config: &str) {
        let aside = self._dir.path().join("sfproxy.toml.new");
        std::fs::write(&aside, config).expect("write config");
        std::fs::rename(&aside, self.config_path()).expect("replace config");
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) with `kill(1)`.
    pub async fn signal(&self, name: &str) {
        let status = tokio::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .await
            .expect("kill is installed");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// The admin address from the `sfproxy ready` event (its `admin` field).
    pub async fn admin(&self) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(admin) = self
                .events("sfproxy ready")
                .first()
                .and_then(|e| e["admin"].as_str().map(str::to_owned))
            {
                return admin.parse().expect("admin address");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no admin address in the ready event; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log holds at least `count` events with this message; returns them all.
    pub async fn wait_for_events(&self, message: &str, count: usize) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(message);
            if events.len() >= count {
                return events;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {count} {message:?} events; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status once the process ends, or `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---- Tunnels and limits.

impl Proxy {
    /// The real binary with at most `limit` open file descriptors (`RLIMIT_NOFILE`).
    pub fn start_with_fd_limit(config: &str, limit: u32) -> Proxy {
        Proxy::launch(config, &[], Some(limit))
    }

    /// The binary's resident memory now, in kB (`VmRSS`; Linux only, else 0).
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    /// The binary's peak resident memory so far, in kB (`VmHWM`; Linux only, else 0).
    pub fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Makes a FIFO at `path`: a file that blocks whoever reads it until someone writes.
pub fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("32 bytes")
}

/// The SHA-256 of `secret` in hex, as `secret_sha256` takes it.
pub fn sha256_hex(secret: &[u8]) -> String {
    sha256(secret).iter().map(|b| format!("{b:02x}")).collect()
}
