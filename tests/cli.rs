//! The `sfproxy` command line through the real binary: a refused config exits 64 with one line
//! naming the key, a config that would expose a Salesforce user refuses to start, the config file
//! is found through `--config`, `$SFPROXY_CONFIG` and `./sfproxy.toml` in that order, and
//! `sfproxy demo` works out of the box with the commands it prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use support::{binary, curl, run_sfproxy};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};

/// The exit status of a refused config: part of the CLI contract.
const EXIT_CONFIG: i32 = 64;

/// A valid config; relative paths are read from the config file's directory.
const GOOD: &str = r#"[proxy]
listen = "127.0.0.1:0"

[orgs.acme]
login_url = "https://login.salesforce.com"
client_id = "3MVG9test.consumer"
private_key_file = "acme.key"

[[routes]]
name = "erp"
hosts = ["acme.my.salesforce.com"]
org = "acme"
user = "erp@acme.example"
"#;

/// A directory holding the org's RSA key as `acme.key`.
fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = sfproxy::pki::connected_app_cert("sfproxy cli test", 1).unwrap();
    std::fs::write(dir.path().join("acme.key"), app.key_pem).unwrap();
    dir
}

/// `support::run_sfproxy` off the runtime's worker threads.
async fn run(args: &[&str], dir: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_sfproxy(&args, &dir)
    })
    .await
    .unwrap()
}

/// The command's stderr, asserting it refused its config the documented way: exit 64, nothing
/// on stdout, one line on stderr.
fn refused_config(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("sfproxy: "), "{stderr:?}");
    stderr.trim_end().to_owned()
}

fn replace(config: &str, from: &str, to: &str) -> String {
    assert!(config.contains(from), "{from:?} not in the config");
    config.replacen(from, to, 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn config_errors_exit_64_with_one_line_naming_the_key() {
    let dir = key_dir();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "login_url not a URL",
            replace(GOOD, "https://login.salesforce.com", "login salesforce"),
            "orgs.acme.login_url",
            "is not a URL",
        ),
        (
            "unknown key",
            replace(GOOD, "listen =", "lisen ="),
            "proxy.lisen",
            "unknown field",
        ),
        (
            "missing key file",
            replace(GOOD, "acme.key", "nowhere.key"),
            "orgs.acme.private_key_file",
            "nowhere.key",
        ),
        (
            "route naming an unknown org",
            replace(GOOD, "org = \"acme\"", "org = \"globex\""),
            "routes.erp.org",
            "no [orgs.globex]",
        ),
        (
            "plain http login_url",
            replace(
                GOOD,
                "https://login.salesforce.com",
                "http://login.salesforce.com",
            ),
            "orgs.acme.login_url",
            "not https",
        ),
        (
            "plain http instance_url",
            replace(
                GOOD,
                "client_id =",
                "instance_url = \"http://acme.my.salesforce.com\"\nclient_id =",
            ),
            "orgs.acme.instance_url",
            "not https",
        ),
        (
            "assertion_ttl beyond Salesforce's 3 minutes",
            replace(GOOD, "client_id =", "assertion_ttl = \"5m\"\nclient_id ="),
            "orgs.acme.assertion_ttl",
            "at most 3m",
        ),
    ];
    let mut runs = Vec::new();
    for (i, (name, text, key, says)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let dir = dir.path().to_owned();
        runs.push(tokio::spawn(async move {
            let output = run(&["run", "--config", path.to_str().unwrap()], &dir).await;
            (name, path, key, says, output)
        }));
    }
    for task in runs {
        let (name, path, key, says, output) = task.await.unwrap();
        let line = refused_config(&output);
        assert!(
            line.contains(&format!("{}: {key}", path.display())),
            "{name}: names the file and the key {key}: {line}"
        );
        assert!(line.contains(says), "{name}: says {says:?}: {line}");
        assert!(!line.contains("BEGIN"), "{name}: no key material: {line}");
    }
}

/// The key part of a refused-config line: `sfproxy: FILE: KEY (line N): message` → `KEY`.
fn named_key<'a>(line: &'a str, path: &Path) -> &'a str {
    let rest = line
        .strip_prefix(&format!("sfproxy: {}: ", path.display()))
        .unwrap_or_else(|| panic!("names the file: {line}"));
    rest.split([':', ' ']).next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]

async fn missing_keys_are_named_under_their_own_table() {
    let dir = key_dir();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "org without login_url",
            replace(GOOD, "login_url = \"https://login.salesforce.com\"\n", ""),
            "orgs.acme",
        ),
        (
            "second org without login_url",
            replace(
                GOOD,
                "[[routes]]",
                "[orgs.globex]\nclient_id = \"x\"\nprivate_key_file = \"acme.key\"\n\n[[routes]]",
            ),
            "orgs.globex",
        ),
        (
            "route without user",
            replace(GOOD, "user = \"erp@acme.example\"\n", ""),
            "routes",
        ),
    ];
    for (name, text, table) in cases {
        let path = dir.path().join("missing.toml");
        std::fs::write(&path, text).unwrap();
        let output = run(&["run", "--config", path.to_str().unwrap()], dir.path()).await;
        let line = refused_config(&output);
        let key = named_key(&line, &path);
        assert!(
            key.starts_with(table),
            "{name}: the key {key:?} should be in [{table}]: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn configs_that_expose_a_salesforce_user_refuse_to_start() {
    let dir = key_dir();
    let hash = "ab".repeat(32);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wildcard listen without [clients]",
            replace(GOOD, "127.0.0.1:0", "0.0.0.0:0"),
            "proxy.listen",
        ),
        (
            "client open to the whole internet without a secret",
            format!("{GOOD}\n[clients.erp]\nnetworks = [\"0.0.0.0/0\"]\n"),
            "clients.erp",
        ),
        (
            "client open to most of the internet in two halves, without a secret",
            format!("{GOOD}\n[clients.erp]\nnetworks = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n"),
            "clients.erp",
        ),
        (
            "client with neither networks nor secret",
            format!("{GOOD}\n[clients.erp]\n"),
            "clients.erp",
        ),
        (
            "one good client does not excuse an open one",
            format!(
                "{GOOD}\n[clients.ok]\nsecret_sha256 = \"{hash}\"\n[clients.open]\nnetworks = [\"::/0\"]\n"
            ),
            "clients.open",
        ),
    ];
    for (name, text, key) in cases {
        let path = dir.path().join("exposed.toml");
        std::fs::write(&path, text).unwrap();
        let output = run(&["run", "--config", path.to_str().unwrap()], dir.path()).await;
        let line = refused_config(&output);
        assert!(line.contains(&format!(": {key}: ")), "{name}: {line}");
        assert!(
            line.contains("anyone who can reach the port"),
            "{name}: says why: {line}"
        );
    }

    // The same wildcard listener is fine once every client must prove who it is.
    let path = dir.path().join("guarded.toml");
    std::fs::write(
        &path,
        replace(GOOD, "127.0.0.1:0", "0.0.0.0:0")
            + &format!("\n[clients.erp]\nsecret_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let running = Running::start(
        &["run", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    )
    .await
    .wait_ready()
    .await;
    let listen = running.ready["listen"].as_str().unwrap();
    assert!(listen.starts_with("0.0.0.0:"));
    // And a caller without the secret is refused, before any route or login.
    let proxy = listen.replace("0.0.0.0", "http://127.0.0.1");
    let reply = curl(&["-x", &proxy, "http://acme.my.salesforce.com/services/data"]).await;
    assert_eq!(reply.status, 407, "{}", reply.body);
    assert_eq!(reply.error_code(), "PROXY_AUTH_REQUIRED");
}

#[tokio::test(flavor = "multi_thread")]
async fn networks_that_together_cover_more_than_a_slash_8_refuse_to_start() {
    let dir = key_dir();
    let slash8s = |range: std::ops::Range<u16>| -> String {
        let nets: Vec<String> = range.map(|i| format!("\"{i}.0.0.0/8\"")).collect();
        format!("[{}]", nets.join(", "))
    };
    let cases = [
        (
            format!("{GOOD}\n[clients.erp]\nnetworks = {}\n", slash8s(0..256)),
            "clients.erp",
        ),
        (
            format!("{GOOD}\n[clients.erp]\nnetworks = {}\n", slash8s(1..129)),
            "clients.erp",
        ),
        // Each client one public /8, two together; the second one is named, with the first.
        (
            format!(
                "{GOOD}\n[clients.erp]\nnetworks = [\"11.0.0.0/8\"]\n\
                 [clients.wms]\nnetworks = [\"12.0.0.0/8\"]\n"
            ),
            "clients.wms",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("exposed.toml");
        std::fs::write(&path, text).unwrap();
        let line = refused_config(&run_bounded(&path, dir.path()).await);
        assert!(line.contains(&format!(": {key}: has no secret")), "{line}");
        assert!(
            line.contains("cover more public address space than one /8"),
            "{line}"
        );
        assert!(line.contains("anyone who can reach the port"), "{line}");
    }
    let line = {
        let path = dir.path().join("exposed.toml");
        refused_config(&run_bounded(&path, dir.path()).await)
    };
    assert!(line.contains("together with those of erp"), "{line}");

    // Private ranges, and one public /8 however often it is listed, still start.
    let path = dir.path().join("private.toml");
    std::fs::write(
        &path,
        format!(
            "{GOOD}\n[clients.erp]\nnetworks = [\"10.0.0.0/8\", \"172.16.0.0/12\", \
             \"192.168.0.0/16\", \"11.0.0.0/8\"]\n[clients.wms]\nnetworks = [\"11.0.0.0/8\"]\n"
        ),
    )
    .unwrap();
    Running::start(
        &["run", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    )
    .await
    .wait_ready()
    .await;
}

/// `sfproxy run` on `config`, stopped if it has not exited within 20 s (a FIFO used to block it
/// for ever).
async fn run_bounded(config: &Path, dir: &Path) -> Output {
    let child = Command::new(binary())
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir(dir)
        .env_remove("SFPROXY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sfproxy");
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("a refused config exits at once")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_the_config_names_are_read_only_if_small_and_regular() {
    let dir = key_dir();
    let fifo = dir.path().join("fifo.key");
    support::mkfifo(&fifo);
    let big = dir.path().join("big.key");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    let ca = sfproxy::intercept::ca::generate("CN=cli test CA", 30, &[]).unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("ca.key"), &ca.key_pem).unwrap();
    let intercept = |cert: &str, key: &str| {
        replace(
            GOOD,
            "[orgs.acme]",
            &format!(
                "[proxy.intercept]\nca_cert_file = \"{cert}\"\nca_key_file = \"{key}\"\n\n[orgs.acme]"
            ),
        )
    };
    let key_at = |path: &str| replace(GOOD, "\"acme.key\"", &format!("\"{path}\""));
    let fifo_path = fifo.to_str().unwrap();
    let big_path = big.to_str().unwrap();
    let cases = [
        (
            key_at("/dev/zero"),
            "orgs.acme.private_key_file",
            "/dev/zero: it is a device, not a regular file",
        ),
        (
            key_at(fifo_path),
            "orgs.acme.private_key_file",
            "it is a FIFO, not a regular file",
        ),
        (
            key_at(big_path),
            "orgs.acme.private_key_file",
            "it is larger than 1 MiB",
        ),
        (
            key_at(dir.path().to_str().unwrap()),
            "orgs.acme.private_key_file",
            "it is a directory",
        ),
        (
            replace(
                GOOD,
                "[orgs.acme]",
                "ca_file = \"/dev/zero\"\n\n[orgs.acme]",
            ),
            "proxy.ca_file",
            "/dev/zero: it is a device",
        ),
        (
            replace(
                GOOD,
                "[orgs.acme]",
                &format!("ca_file = \"{fifo_path}\"\n\n[orgs.acme]"),
            ),
            "proxy.ca_file",
            "it is a FIFO",
        ),
        (
            intercept(fifo_path, "ca.key"),
            "proxy.intercept.ca_cert_file",
            "it is a FIFO",
        ),
        (
            intercept("ca.crt", "/dev/zero"),
            "proxy.intercept.ca_key_file",
            "it is a device",
        ),
        (
            intercept("ca.crt", big_path),
            "proxy.intercept.ca_key_file",
            "larger than 1 MiB",
        ),
    ];
    for (text, key, says) in cases {
        let path = dir.path().join("files.toml");
        std::fs::write(&path, text).unwrap();
        let line = refused_config(&run_bounded(&path, dir.path()).await);
        assert!(
            line.contains(&format!(": {key}: cannot read ")),
            "{key}: {line}"
        );
        assert!(line.contains(says), "{key}: {line}");
    }
    // The config file itself.
    let line = refused_config(&run_bounded(&fifo, dir.path()).await);
    assert!(line.contains("cannot read: it is a FIFO"), "{line}");

    // The intercept CA's own files, once readable, must still be a good CA.
    let path = dir.path().join("files.toml");
    std::fs::write(&path, intercept("ca.crt", "ca.key")).unwrap();
    Running::start(
        &["run", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    )
    .await
    .wait_ready()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_intercept_ca_that_is_not_a_ca_refuses_to_start() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let dir = key_dir();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
    let leaf = CertificateParams::new(vec!["sfproxy.salesforce.com".to_owned()]).unwrap();
    let mut no_sign = CertificateParams::default();
    no_sign.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    no_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    for (params, says) in [
        (
            leaf,
            "ca_cert_file is not a CA certificate (no basic constraints CA:TRUE)",
        ),
        (no_sign, "its key usage lacks keyCertSign"),
    ] {
        std::fs::write(
            dir.path().join("ca.crt"),
            params.self_signed(&key).unwrap().pem(),
        )
        .unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(
            &path,
            replace(
                GOOD,
                "[orgs.acme]",
                "[proxy.intercept]\nca_cert_file = \"ca.crt\"\nca_key_file = \"ca.key\"\n\n[orgs.acme]",
            ),
        )
        .unwrap();
        let line = refused_config(&run_bounded(&path, dir.path()).await);
        assert!(line.contains(": proxy.intercept: "), "{line}");
        assert!(line.contains(says), "{line}");
    }
}

/// A long-running `sfproxy` child with JSON logs; stderr is read line by line.
struct Running {
    /// Held for `kill_on_drop`: dropping a `Running` stops the proxy.
    _child: Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<String>,
    /// The `sfproxy ready` event.
    ready: serde_json::Value,
}

impl Running {
    async fn start(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(binary())
            .args(["--log-format", "json"])
            .args(args)
            .current_dir(dir)
            .env_remove("SFPROXY_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sfproxy");
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Running {
            _child: child,
            stderr,
            seen: Vec::new(),
            ready: serde_json::Value::Null,
        }
    }

    /// Reads stderr until the proxy says it is ready.
    async fn wait_ready(mut self) -> Running {
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if event["message"] == "sfproxy ready" {
                        return Some(event);
                    }
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(event)) => self.ready = event,
            _ => panic!("sfproxy did not become ready: {:?}", self.seen),
        }
        self
    }

    fn url(&self) -> String {
        format!("http://{}", self.ready["listen"].as_str().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sfproxy_config_env_is_used_when_there_is_no_flag() {
    let dir = key_dir();
    let good = dir.path().join("from-env.toml");
    std::fs::write(&good, GOOD).unwrap();
    let good = good.to_str().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    // Nothing in the working directory: a default lookup would fail differently.
    let cwd = tempfile::tempdir().unwrap();

    let running = Running::start(&["run"], cwd.path(), &[("SFPROXY_CONFIG", good)])
        .await
        .wait_ready()
        .await;
    assert_eq!(running.ready["config"], good);
    // It serves that config's routes (and refuses the rest without going anywhere).
    let reply = curl(&["-x", &running.url(), "http://evil.example/"]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
    drop(running);

    let output = run_with_env(&["run"], cwd.path(), &[("SFPROXY_CONFIG", missing)]).await;
    let line = refused_config(&output);
    assert!(line.contains(&format!("{missing}: ")), "{line}");
    assert!(line.contains("cannot read"), "{line}");

    // --config wins over the environment.
    let output = run_with_env(
        &["run", "--config", missing],
        cwd.path(),
        &[("SFPROXY_CONFIG", good)],
    )
    .await;
    let line = refused_config(&output);
    assert!(line.contains(missing), "{line}");
}

/// `sfproxy` to completion with extra environment (`run_sfproxy` clears `SFPROXY_CONFIG`).
async fn run_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("SFPROXY_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run sfproxy")
}

#[tokio::test(flavor = "multi_thread")]
async fn sfproxy_toml_in_the_working_directory_is_the_default() {
    let dir = key_dir();
    let output = run(&["run"], dir.path()).await;
    let line = refused_config(&output);
    assert!(
        line.starts_with("sfproxy: sfproxy.toml: sfproxy.toml: cannot read"),
        "{line}"
    );

    std::fs::write(dir.path().join("sfproxy.toml"), GOOD).unwrap();
    let running = Running::start(&["run"], dir.path(), &[])
        .await
        .wait_ready()
        .await;
    assert_eq!(running.ready["config"], "sfproxy.toml");
    let reply = curl(&["-x", &running.url(), "http://evil.example/"]).await;
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");
}

/// Reads `reader` line by line into `sink` until it ends.
fn drain<R: AsyncRead + Unpin + Send + 'static>(reader: R, sink: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_starts_and_its_printed_commands_work() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("SFPROXY_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sfproxy demo");
    let log = Arc::new(Mutex::new(String::new()));
    drain(child.stderr.take().unwrap(), log.clone());
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    // Read what it prints up to "Ctrl-C stops it.".
    let mut printed = String::new();
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C stops it") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(finished, Ok(true)),
        "demo did not print its commands; stdout: {printed}\nlog: {}",
        log.lock().unwrap()
    );

    // The printed proxy address is the real one, not the :0 asked for.
    let listen = printed
        .split("curl -x http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no curl -x command: {printed}"))
        .to_owned();
    assert!(!listen.ends_with(":0"), "{listen}");
    let proxy = format!("http://{listen}");
    let limits = "http://demo.my.salesforce.com/services/data/v61.0/limits";
    assert!(
        printed.contains(&format!("curl -x {proxy} {limits}")),
        "{printed}"
    );
    let gateway = format!("{proxy}/demo/services/data/v61.0/limits");
    assert!(printed.contains(&format!("curl {gateway}")), "{printed}");
    let workdir = printed
        .lines()
        .find_map(|l| l.strip_prefix("Config, key and certificates: "))
        .map(|d| PathBuf::from(d.trim()))
        .unwrap_or_else(|| panic!("no work directory: {printed}"));
    assert!(workdir.join("sfproxy.toml").is_file());

    // Both printed commands, as printed.
    let reply = curl(&["-x", &proxy, limits]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["DailyApiRequests"]["Max"].is_number());
    assert!(reply.header("sforce-limit-info").is_some());
    let reply = curl(&[&gateway]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["DailyApiRequests"]["Remaining"].is_number());
    let reply = curl(&["-x", &proxy, "http://evil.example/"]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.error_code(), "PROXY_NO_ROUTE");

    // SIGTERM stops it cleanly and it takes its generated key with it.
    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("demo stops within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}; log: {}", log.lock().unwrap());
    assert!(!workdir.exists(), "{} was left behind", workdir.display());
}

/// A client secret's SHA-256 (any 64 hex digits: these tests never send the secret).
const SECRET_SHA256: &str = "0b6d8a9b1c54c9b4b6a2ac6b2f4eb4c3c0e0e6d8d0c85d0b4f4b8f9d0b4a2c11";

#[tokio::test(flavor = "multi_thread")]
async fn keygen_logins_key_writes_a_key_check_accepts() {
    use base64::Engine;
    let org = support::Org::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keygen = [
        "keygen",
        "--logins-key",
        "--name",
        "logins",
        "--dir",
        "certs",
    ];
    let output = run(&keygen, dir.path()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("key_file = \"certs/logins.key\""),
        "{stdout}"
    );
    let path = dir.path().join("certs/logins.key");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim_end())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // Never overwritten without --force.
    let again = run(&keygen, dir.path()).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    let config = format!(
        "{}\n[clients.erp]\nsecret_sha256 = \"{SECRET_SHA256}\"\n\n[logins]\n\
         key_file = \"certs/logins.key\"\nsession_ttl = \"2h\"\n{}",
        org.config("", ""),
        support::route("erp", &["acme.example"], support::USER, "logins = true"),
    );
    let config_path = dir.path().join("sfproxy.toml");
    std::fs::write(&config_path, config).unwrap();
    let output = run(
        &["check", "--config", config_path.to_str().unwrap()],
        dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let line = stdout.lines().next().unwrap();
    assert!(line.starts_with("legacy logins: key_file "), "{line}");
    assert!(line.contains("logins.key"), "{line}");
    assert!(
        line.contains("session_ttl=2h max_failures_per_minute=10"),
        "{line}"
    );
    assert!(line.ends_with("routes: erp"), "{line}");
    assert!(stdout.contains("route=erp org=acme"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logins_route_without_logins_or_admitting_a_client_without_a_secret_exits_64() {
    let dir = key_dir();
    let path = dir.path().join("sfproxy.toml");
    let logins_route = replace(
        GOOD,
        "user = \"erp@acme.example\"\n",
        "user = \"erp@acme.example\"\nlogins = true\n",
    );

    let no_table = format!("{logins_route}\n[clients.erp]\nsecret_sha256 = \"{SECRET_SHA256}\"\n");
    std::fs::write(&path, no_table).unwrap();
    let output = run(&["check", "--config", path.to_str().unwrap()], dir.path()).await;
    let line = refused_config(&output);
    assert!(line.contains("routes.erp.logins: "), "{line}");
    assert!(line.contains("[logins]"), "{line}");

    let secretless = format!(
        "{logins_route}\n[clients.erp]\nsecret_sha256 = \"{SECRET_SHA256}\"\n\n\
         [clients.batch]\nnetworks = [\"127.0.0.1/32\"]\n\n[logins]\n"
    );
    std::fs::write(&path, secretless).unwrap();
    let output = run(&["check", "--config", path.to_str().unwrap()], dir.path()).await;
    let line = refused_config(&output);
    assert!(line.contains("routes.erp.logins: "), "{line}");
    assert!(line.contains("client \"batch\" has no secret"), "{line}");
}
