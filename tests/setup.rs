//! The setup tools through the real binary: `sfproxy keygen` writes a key and certificate the
//! connected app (here the stand-in org) accepts, and `sfproxy check` proves a config works,
//! route by route, before traffic depends on it.
//!
//! Not covered: check's clock-skew warning. The stand-in's `Date` header is hyper's, from this
//! host's clock, so a skew cannot be produced without changing the stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use sfproxy::mock_org::{MockUser, TokenFailure};
use support::{AUDIENCE, CONSUMER_KEY, OTHER_USER, Org, Proxy, USER, curl, route};

const HOST: &str = "acme.my.salesforce.com";
/// A user the connected app has not been approved for: invalid_grant.
const UNAPPROVED: &str = "new@acme.example";
/// A user whose profile lacks "API Enabled": logins work, the API says no.
const NO_API: &str = "noapi@acme.example";
/// The exit status of a refused config or usage error (CLI contract).
const EXIT_CONFIG: i32 = 64;

/// `sfproxy ARGS` to completion, without blocking the runtime (the stand-in runs on it).
async fn sfproxy(args: &[&str], dir: &Path) -> Output {
    let child = tokio::process::Command::new(support::binary())
        .args(args)
        .current_dir(dir)
        .env_remove("SFPROXY_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sfproxy");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("sfproxy finished within 30 s")
        .expect("sfproxy output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `openssl ARGS` when openssl is installed; `None` (and a note) when it is not.
async fn openssl(args: &[&str]) -> Option<Output> {
    match tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("openssl is not installed: certificate fields not checked");
            None
        }
        Err(error) => panic!("openssl: {error}"),
    }
}

// ---- keygen

#[tokio::test(flavor = "multi_thread")]
async fn keygen_writes_a_private_key_and_certificate_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.to_str().unwrap();
    let key = certs.join("acme.key");
    let crt = certs.join("acme.crt");

    let output = sfproxy(
        &["keygen", "--name", "acme", "--dir", certs_arg],
        dir.path(),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let crt_pem = std::fs::read_to_string(&crt).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM: {}",
        key_pem.lines().next().unwrap_or_default()
    );
    assert!(crt_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(mode(&key), 0o600, "only the owner may read the key");
    // The next steps of the connected-app setup, naming the files.
    let said = stdout(&output);
    assert!(said.contains("Use digital signatures"), "{said}");
    assert!(said.contains(key.to_str().unwrap()), "{said}");
    assert!(said.contains(crt.to_str().unwrap()), "{said}");
    assert!(said.contains("sfproxy check"), "{said}");
    assert!(!said.contains("BEGIN"), "no key material on stdout");

    if let Some(out) = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-subject"]).await
    {
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            "subject=CN = sfproxy acme",
            "the default subject"
        );
        // The certificate holds the key's public half.
        let cert_pub = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"])
            .await
            .unwrap();
        let key_pub = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"])
            .await
            .unwrap();
        assert!(key_pub.status.success(), "{}", stderr(&key_pub));
        assert_eq!(
            stdout(&cert_pub),
            stdout(&key_pub),
            "certificate and key match"
        );
        let text = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"])
            .await
            .unwrap();
        assert!(
            stdout(&text).contains("Private-Key: (2048 bit")
                || stdout(&text).contains("Private-Key: (3072 bit")
                || stdout(&text).contains("Private-Key: (4096 bit"),
            "an RSA key: {}",
            stdout(&text).lines().next().unwrap_or_default()
        );
    }

    // Again without --force: refused, both files untouched.
    let output = sfproxy(
        &["keygen", "--name", "acme", "--dir", certs_arg],
        dir.path(),
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        key_pem,
        "key untouched"
    );
    assert_eq!(
        std::fs::read_to_string(&crt).unwrap(),
        crt_pem,
        "certificate untouched"
    );

    // Only the certificate exists: still refused (the pair would not match).
    std::fs::remove_file(&key).unwrap();
    let output = sfproxy(
        &["keygen", "--name", "acme", "--dir", certs_arg],
        dir.path(),
    )
    .await;
    assert!(!output.status.success());
    assert!(
        !key.exists(),
        "no key written beside a certificate it does not match"
    );
    std::fs::write(&key, &key_pem).unwrap();
    chmod(&key, 0o644);

    // With --force: replaced, and the replaced key is tightened to 0600.
    let output = sfproxy(
        &["keygen", "--name", "acme", "--dir", certs_arg, "--force"],
        dir.path(),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_ne!(std::fs::read_to_string(&key).unwrap(), key_pem, "a new key");
    assert_ne!(
        std::fs::read_to_string(&crt).unwrap(),
        crt_pem,
        "a new certificate"
    );
    assert_eq!(mode(&key), 0o600);

    // The default directory is ./certs; a name that is not a file name is refused.
    let output = sfproxy(&["keygen", "--name", "erp"], dir.path()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(certs.join("erp.key").exists() && certs.join("erp.crt").exists());
    let output = sfproxy(
        &["keygen", "--name", "../evil", "--dir", certs_arg],
        dir.path(),
    )
    .await;
    assert!(!output.status.success());
    assert!(!dir.path().join("evil.key").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_honours_subject_and_days() {
    let dir = tempfile::tempdir().unwrap();
    let output = sfproxy(
        &[
            "keygen",
            "--name",
            "acme",
            "--dir",
            ".",
            "--subject",
            "CN=x, O=Acme",
            "--days",
            "10",
        ],
        dir.path(),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("valid 10 days"),
        "{}",
        stdout(&output)
    );
    let crt = dir.path().join("acme.crt");
    let crt = crt.to_str().unwrap();
    let Some(subject) = openssl(&["x509", "-in", crt, "-noout", "-subject"]).await else {
        return;
    };
    assert_eq!(stdout(&subject).trim(), "subject=CN = x, O = Acme");
    // Valid for 10 days: still valid in 9, expired in 11.
    let day = 24 * 60 * 60;
    let in_9 = openssl(&[
        "x509",
        "-in",
        crt,
        "-noout",
        "-checkend",
        &(9 * day).to_string(),
    ])
    .await
    .unwrap();
    assert!(in_9.status.success(), "valid in 9 days: {}", stdout(&in_9));
    let in_11 = openssl(&[
        "x509",
        "-in",
        crt,
        "-noout",
        "-checkend",
        &(11 * day).to_string(),
    ])
    .await
    .unwrap();
    assert!(
        !in_11.status.success(),
        "expired in 11 days: {}",
        stdout(&in_11)
    );
    let dates = openssl(&["x509", "-in", crt, "-noout", "-startdate", "-enddate"])
        .await
        .unwrap();
    assert!(stdout(&dates).contains("notAfter="), "{}", stdout(&dates));
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_output_is_accepted_by_the_stand_in_org() {
    let dir = tempfile::tempdir().unwrap();
    let output = sfproxy(&["keygen", "--name", "acme", "--dir", "certs"], dir.path()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let key_file = dir.path().join("certs/acme.key");
    let certificate = std::fs::read_to_string(dir.path().join("certs/acme.crt")).unwrap();

    // The connected app holds the generated certificate; the proxy signs with the generated key.
    let org = Org::with_app_certificate(certificate, key_file, vec![support::user(USER)]).await;
    let proxy = Proxy::start(&(org.config("", "") + &route("erp", &[HOST], USER, "")));
    let reply = curl(&[
        "-x",
        &proxy.url(),
        &format!("http://{HOST}/services/apexrest/echo"),
    ])
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["user"], USER);
    assert_eq!(org.mock.token_requests(), 1);
    assert!(org.mock.requests()[0].session_valid);
}

// ---- check

/// A stand-in org with a good user, an unapproved one and one without API access, and a
/// directory for config files next to a copy of its key (mode 0600).
struct CheckSetup {
    org: Org,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl CheckSetup {
    async fn start() -> CheckSetup {
        let org = Org::with_users(vec![
            support::user(USER),
            support::user(OTHER_USER),
            MockUser {
                username: UNAPPROVED.to_owned(),
                approved: false,
                rest_api: true,
            },
            MockUser {
                username: NO_API.to_owned(),
                approved: true,
                rest_api: false,
            },
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("acme.key");
        std::fs::copy(&org.key_file, &key).unwrap();
        chmod(&key, 0o600);
        CheckSetup { org, dir, key }
    }

    /// `[proxy]` and `[orgs.acme]` (and `[orgs.sandbox]`, same stand-in, wrong audience).
    fn config(&self, routes: &str) -> PathBuf {
        let config = format!(
            r#"[proxy]
listen = "127.0.0.1:0"
ca_file = "{ca}"

[orgs.acme]
login_url = "{url}"
audience = "{AUDIENCE}"
client_id = "{CONSUMER_KEY}"
private_key_file = "acme.key"

[orgs.sandbox]
login_url = "{url}"
audience = "https://test.salesforce.com"
client_id = "{CONSUMER_KEY}"
private_key_file = "acme.key"
{routes}"#,
            ca = self.org.ca_file.display(),
            url = self.org.mock.url(),
        );
        let path = self.dir.path().join("sfproxy.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    async fn check(&self, routes: &str, extra: &[&str]) -> Output {
        let path = self.config(routes);
        let mut args = vec!["check", "--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        sfproxy(&args, self.dir.path()).await
    }

    fn ok_line(&self, route: &str, user: &str) -> String {
        format!(
            "route={route} org=acme user={user} instance={} OK",
            self.org.mock.url()
        )
    }
}

fn route_in(org: &str, name: &str, user: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nhosts = [\"{name}.example\"]\norg = \"{org}\"\nuser = \"{user}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_a_good_config_with_one_ok_line_per_route() {
    let setup = CheckSetup::start().await;
    let routes = route_in("acme", "erp", USER) + &route_in("acme", "wms", OTHER_USER);
    let output = setup.check(&routes, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [setup.ok_line("erp", USER), setup.ok_line("wms", OTHER_USER)]
    );
    assert_eq!(stderr(&output).trim(), "", "no warning for a 0600 key");
    // It really logged in and called the API, once per route.
    assert_eq!(setup.org.mock.token_requests(), 2);
    let seen = setup.org.mock.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|r| r.path_and_query == "/services/data/" && r.session_valid)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_each_failed_route_with_salesforce_error_and_hint() {
    let setup = CheckSetup::start().await;
    let routes = route_in("acme", "erp", USER)
        + &route_in("acme", "new", UNAPPROVED)
        + &route_in("sandbox", "uat", USER)
        + &route_in("acme", "noapi", NO_API);
    let output = setup.check(&routes, &[]).await;
    let code = output.status.code();
    assert!(
        code != Some(0) && code != Some(EXIT_CONFIG),
        "failed routes: non-zero, not the config status ({code:?})"
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per route:\n{text}");
    assert_eq!(
        lines[0],
        setup.ok_line("erp", USER),
        "the good route still passes"
    );

    let unapproved = lines[1];
    assert!(
        unapproved.starts_with(&format!("route=new org=acme user={UNAPPROVED} FAILED: ")),
        "{unapproved}"
    );
    assert!(
        unapproved.contains("invalid_grant: user hasn't approved this consumer"),
        "Salesforce's error: {unapproved}"
    );
    assert!(
        unapproved.contains("(hint: ")
            && unapproved.contains("Admin approved users are pre-authorized"),
        "the hint: {unapproved}"
    );

    let audience = lines[2];
    assert!(
        audience.starts_with(&format!("route=uat org=sandbox user={USER} FAILED: ")),
        "{audience}"
    );
    assert!(
        audience.contains("invalid_grant: audience is invalid"),
        "{audience}"
    );
    assert!(
        audience.contains("(hint: ") && audience.contains("https://login.salesforce.com"),
        "{audience}"
    );

    // The login works but the API refuses the session: the line says so, with the instance.
    let no_api = lines[3];
    assert!(
        no_api.starts_with(&format!(
            "route=noapi org=acme user={NO_API} instance={} FAILED: ",
            setup.org.mock.url()
        )),
        "{no_api}"
    );
    assert!(no_api.contains("401"), "{no_api}");
    assert!(no_api.contains("INVALID_SESSION_ID"), "{no_api}");

    // --route NAME checks that route only.
    let output = setup.check(&routes, &["--route", "erp"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).lines().collect::<Vec<_>>(),
        [setup.ok_line("erp", USER)]
    );
    let output = setup.check(&routes, &["--route", "new"]).await;
    assert_ne!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("route=new ") && text.contains("FAILED"),
        "{text}"
    );

    // An unknown route is a usage error, naming the routes there are.
    let output = setup.check(&routes, &["--route", "nope"]).await;
    assert_eq!(
        output.status.code(),
        Some(EXIT_CONFIG),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("nope"), "{}", stderr(&output));
    assert!(stderr(&output).contains("erp"), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "nothing checked");
}

/// The refusals added to the hint table: a frozen user, the app's scopes, clock skew, an
/// approval missing; each line of `check` carries Salesforce's words and what to change.
#[tokio::test(flavor = "multi_thread")]
async fn check_hints_at_frozen_users_scopes_clocks_and_approvals() {
    let setup = CheckSetup::start().await;
    setup.org.mock.set_user_frozen(OTHER_USER, true);
    let output = setup.check(&route_in("acme", "wms", OTHER_USER), &[]).await;
    let text = stdout(&output);
    assert!(
        text.contains("invalid_grant: inactive user")
            && text.contains("(hint: the integration user is frozen or deactivated"),
        "{text}"
    );
    setup.org.mock.set_user_frozen(OTHER_USER, false);

    for (error, description, hint_says) in [
        (
            "invalid_scope",
            "the requested scope is not allowed",
            "Manage user data via APIs (api)",
        ),
        (
            "expired_assertion",
            "assertion expired",
            "sync this host's clock",
        ),
        (
            "invalid_grant",
            "user is not admin approved to access this app",
            "Admin approved users are pre-authorized",
        ),
    ] {
        setup.org.mock.fail_next_token_requests(
            1,
            TokenFailure::OAuth {
                status: 400,
                error: error.into(),
                description: description.into(),
            },
        );
        let output = setup.check(&route_in("acme", "erp", USER), &[]).await;
        assert_ne!(output.status.code(), Some(0));
        let text = stdout(&output);
        assert!(
            text.starts_with(&format!("route=erp org=acme user={USER} FAILED: "))
                && text.contains(&format!("{error}: {description} (hint: "))
                && text.contains(hint_says),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_about_a_readable_key_and_refuses_a_bad_config() {
    let setup = CheckSetup::start().await;
    let routes = route_in("acme", "erp", USER);

    chmod(&setup.key, 0o644);
    let output = setup.check(&routes, &[]).await;
    assert_eq!(output.status.code(), Some(0), "a warning, not a failure");
    let warnings = stderr(&output);
    let key = setup.key.display().to_string();
    let warning = warnings
        .lines()
        .find(|l| l.contains("chmod 600"))
        .unwrap_or_else(|| panic!("no chmod 600 warning: {warnings:?}"));
    assert!(warning.contains(&format!("chmod 600 {key}")), "{warning}");
    assert!(warning.contains("orgs.acme.private_key_file"), "{warning}");
    assert_eq!(
        stdout(&output).lines().collect::<Vec<_>>(),
        [setup.ok_line("erp", USER)]
    );

    // A config error: exit 64, the key named, nothing checked.
    chmod(&setup.key, 0o600);
    let logins = setup.org.mock.token_requests();
    let bad = routes.replace("org = \"acme\"", "org = \"nope\"");
    let output = setup.check(&bad, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(EXIT_CONFIG),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("routes.erp.org"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), "");
    assert_eq!(
        setup.org.mock.token_requests(),
        logins,
        "no login on a refused config"
    );

    let output = sfproxy(&["check", "--config", "missing.toml"], setup.dir.path()).await;
    assert_eq!(
        output.status.code(),
        Some(EXIT_CONFIG),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
}
