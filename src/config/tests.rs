use std::{path::Path, time::Duration};

use super::load::{MAX_FILE_BYTES, read_file};
use super::{org::parse_login_url, *};
use crate::salesforce::domains::{infer_audience, is_salesforce_host};

fn key_file() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pair = crate::pki::connected_app_cert("test", 1).unwrap();
    std::fs::write(dir.path().join("acme.key"), pair.key_pem).unwrap();
    dir
}

const ORG: &str = r#"
[orgs.acme]
login_url = "https://login.salesforce.com"
client_id = "3MVG9"
private_key_file = "acme.key"
"#;

const ROUTE: &str = r#"
[[routes]]
name = "r"
hosts = ["acme.my.salesforce.com"]
org = "acme"
user = "u@acme.com"
"#;

fn load(extra: &str) -> Result<Config, ConfigError> {
    let dir = key_file();
    Config::from_toml(&format!("{extra}\n{ORG}\n{ROUTE}"), dir.path())
}

#[test]
fn defaults_apply() {
    let config = load("").unwrap();
    assert_eq!(config.proxy.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.proxy.replay_limit, 1024 * 1024);
    let org = &config.routes[0].org;
    assert_eq!(org.audience, "https://login.salesforce.com");
    assert_eq!(
        org.token_url.to_string(),
        "https://login.salesforce.com/services/oauth2/token"
    );
    assert_eq!(config.routes[0].path_prefix, "/");
}

#[test]
fn audience_inference_follows_the_login_host() {
    let cases = [
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "https://test.salesforce.com",
        ),
        (
            "https://acme.my.salesforce.com",
            "https://login.salesforce.com",
        ),
        ("https://localhost:8443", "https://localhost:8443"),
    ];
    for (login, want) in cases {
        let url = parse_login_url(login).unwrap();
        assert_eq!(infer_audience(login, url.host().unwrap()), want, "{login}");
    }
}

#[test]
fn clients_keep_file_order() {
    let config = load(
        "[clients.zeta]\nnetworks = [\"10.0.0.0/8\"]\n[clients.alpha]\nnetworks = [\"10.1.0.0/16\"]\n",
    )
    .unwrap();
    let names: Vec<&str> = config.clients.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["zeta", "alpha"]);
}

#[test]
fn errors_name_the_key() {
    let err = load("[proxy]\nlisen = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.key.starts_with("proxy.lisen"), "{err}");
    assert!(err.message.contains("unknown field"), "{err}");

    let err = load("[proxy]\nlisten = \"nowhere\"\n").unwrap_err();
    assert!(err.key.starts_with("proxy.listen"), "{err}");

    let dir = key_file();
    let text = format!("{ORG}[orgs.b]\nclient_id = \"x\"\n{ROUTE}");
    let err = Config::from_toml(&text, dir.path()).unwrap_err();
    assert!(err.key.starts_with("orgs.b.login_url"), "{err}");
}

#[test]
fn plain_http_login_url_is_refused() {
    let dir = key_file();
    let text = ORG.replace("https://login", "http://login") + ROUTE;
    let err = Config::from_toml(&text, dir.path()).unwrap_err();
    assert_eq!(err.key, "orgs.acme.login_url");
    assert!(err.message.contains("not https"));
}

#[test]
fn exposing_configs_refuse_to_start() {
    let err = load("[proxy]\nlisten = \"0.0.0.0:3128\"\n").unwrap_err();
    assert_eq!(err.key, "proxy.listen");

    let err = load("[clients.erp]\nnetworks = [\"0.0.0.0/0\"]\n").unwrap_err();
    assert_eq!(err.key, "clients.erp");

    let err = load("[clients.erp]\n").unwrap_err();
    assert_eq!(err.key, "clients.erp");

    // Most of the internet in pieces is no better than all of it.
    for networks in [
        r#"["0.0.0.0/1", "128.0.0.0/1"]"#,
        r#"["10.0.0.0/8", "64.0.0.0/2"]"#,
        r#"["2000::/3"]"#,
    ] {
        let err = load(&format!("[clients.erp]\nnetworks = {networks}\n")).unwrap_err();
        assert_eq!(err.key, "clients.erp", "{networks}");
        assert!(err.message.contains("broader than /8"), "{err}");
    }
    for networks in [r#"["10.0.0.0/8", "192.168.0.0/16"]"#, r#"["fc00::/7"]"#] {
        load(&format!("[clients.erp]\nnetworks = {networks}\n")).unwrap();
    }

    // A secret makes the whole internet acceptable: the caller must prove who it is.
    let hex = "00".repeat(32);
    load(&format!(
        "[proxy]\nlisten = \"0.0.0.0:3128\"\n[clients.erp]\nsecret_sha256 = \"{hex}\"\n"
    ))
    .unwrap();
}

#[test]
fn exposure_counts_public_coverage_across_clients() {
    let slash8s = |range: std::ops::Range<u16>| -> String {
        let nets: Vec<String> = range.map(|i| format!("\"{i}.0.0.0/8\"")).collect();
        format!("[{}]", nets.join(", "))
    };
    for (clients, key) in [
        (format!("[clients.erp]\nnetworks = {}\n", slash8s(0..256)), "clients.erp"),
        (format!("[clients.erp]\nnetworks = {}\n", slash8s(0..128)), "clients.erp"),
        (format!("[clients.erp]\nnetworks = {}\n", slash8s(11..13)), "clients.erp"),
        // Across clients: each alone is one /8, together two.
        (
            "[clients.erp]\nnetworks = [\"11.0.0.0/8\"]\n[clients.wms]\nnetworks = [\"12.0.0.0/8\"]\n"
                .to_owned(),
            "clients.wms",
        ),
        (
            "[clients.erp]\nnetworks = [\"2001:db8::/32\", \"2001:db9::/32\"]\n".to_owned(),
            "clients.erp",
        ),
        (
            "[clients.erp]\nnetworks = [\"2001::/16\"]\n".to_owned(),
            "clients.erp",
        ),
    ] {
        let err = load(&clients).unwrap_err();
        assert_eq!(err.key, key, "{clients}");
        assert!(err.message.contains("cover more public address space"), "{err}");
    }
    let err = load(
        "[clients.erp]\nnetworks = [\"11.0.0.0/8\"]\n[clients.wms]\nnetworks = [\"12.0.0.0/8\"]\n",
    )
    .unwrap_err();
    assert!(err.message.contains("together with those of erp"), "{err}");
    for clients in [
        // One public /8, counted once however often it is listed or overlapped.
        "[clients.erp]\nnetworks = [\"11.0.0.0/8\", \"11.1.0.0/16\"]\n[clients.wms]\nnetworks = [\"11.0.0.0/8\"]\n",
        // Private space does not count.
        "[clients.erp]\nnetworks = [\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\", \"100.64.0.0/10\", \"11.0.0.0/8\"]\n",
        "[clients.erp]\nnetworks = [\"fc00::/7\", \"2001:db8::/32\"]\n",
        // A client with a secret is not exposure.
        "[clients.erp]\nnetworks = [\"11.0.0.0/8\"]\n[clients.deploy]\nnetworks = [\"12.0.0.0/8\"]\nsecret_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
    ] {
        load(clients).unwrap();
    }
}

#[test]
fn files_are_read_only_when_small_and_regular() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
    let fits = dir.path().join("fits.pem");
    std::fs::write(&fits, vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
    assert_eq!(read_file(&fits).unwrap().len(), MAX_FILE_BYTES as usize);
    let err = read_file(&big).unwrap_err();
    assert!(err.contains("larger than 1 MiB"), "{err}");
    let err = read_file(dir.path()).unwrap_err();
    assert!(err.contains("a directory, not a regular file"), "{err}");
    let err = read_file(Path::new("/dev/zero")).unwrap_err();
    assert!(err.contains("/dev/zero: it is a device"), "{err}");
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let err = read_file(&fifo).unwrap_err();
    assert!(err.contains("it is a FIFO"), "{err}");
}

#[test]
fn route_checks() {
    let err =
        load("[[routes]]\nname = \"x\"\nhosts = []\norg = \"acme\"\nuser = \"u\"\n").unwrap_err();
    assert_eq!(err.key, "routes.x.hosts");
    let err = load("[[routes]]\nname = \"x\"\nhosts = [\"a\"]\norg = \"nope\"\nuser = \"u\"\n")
        .unwrap_err();
    assert_eq!(err.key, "routes.x.org");
}

#[test]
fn env_keys_name_variables_and_never_quote_them() {
    let dir = tempfile::tempdir().unwrap();
    // A key pasted where a variable name belongs, made here: no key material in the source.
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let body = pem.lines().nth(1).unwrap().to_owned();
    let org = ORG.replace(
        "private_key_file = \"acme.key\"",
        &format!("private_key_env = \"\"\"{pem}\"\"\""),
    );
    let err = Config::from_toml(&format!("{org}{ROUTE}"), dir.path()).unwrap_err();
    assert_eq!(err.key, "orgs.acme.private_key_env");
    assert!(
        !err.to_string().contains(&body) && !err.to_string().contains("BEGIN"),
        "{err}"
    );

    let org = ORG.replace(
        "private_key_file = \"acme.key\"",
        "private_key_env = \"SFPROXY_TEST_UNSET_KEY_VAR\"",
    );
    let err = Config::from_toml(&format!("{org}{ROUTE}"), dir.path()).unwrap_err();
    assert_eq!(err.key, "orgs.acme.private_key_env");
    assert!(err.message.contains("not set"), "{err}");

    // A secret that happens to look like a variable name is not quoted either.
    let err = load("[clients.erp]\nsecret_env = \"hunter2hunter2\"\n").unwrap_err();
    assert_eq!(err.key, "clients.erp.secret_env");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn client_debug_hides_the_secret_hash() {
    let hex = "ab".repeat(32);
    let config = load(&format!("[clients.erp]\nsecret_sha256 = \"{hex}\"\n")).unwrap();
    let debug = format!("{:?}", config.clients);
    assert!(
        debug.contains("erp") && !debug.contains("abab") && !debug.contains("171"),
        "{debug}"
    );
}

#[test]
fn key_must_be_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let ec = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("acme.key"), ec.serialize_pem()).unwrap();
    let err = Config::from_toml(&format!("{ORG}{ROUTE}"), dir.path()).unwrap_err();
    assert_eq!(err.key, "orgs.acme.private_key_file");
    assert!(!err.message.contains("BEGIN"), "no key material in errors");
}

#[test]
fn host_patterns() {
    let sub = HostPattern::parse("*.Example.com").unwrap();
    assert!(sub.matches("a.example.com"));
    assert!(!sub.matches("example.com"));
    assert!(!sub.matches("evilexample.com"));
    assert!(HostPattern::parse("*").unwrap().matches("anything"));
    assert!(HostPattern::parse("a b").is_err());
    assert!(HostPattern::parse("acme.my.salesforce.com:443").is_err());
    assert!(HostPattern::parse("[::1]").unwrap().matches("[::1]"));
}

#[test]
fn salesforce_hosts_are_its_domains_and_their_subdomains_only() {
    for host in [
        "login.salesforce.com",
        "acme.my.salesforce.com",
        "acme--uat.sandbox.my.salesforce.com",
        "na123.salesforce.com",
        "salesforce.com",
        "acme.my.salesforce.mil",
        "site.force.com",
        "acme.my.sfcrmproducts.cn",
    ] {
        assert!(is_salesforce_host(host), "{host}");
    }
    for host in [
        "evilsalesforce.com",
        "salesforce.com.evil.example",
        "localhost",
        "127.0.0.1",
        "acme.my.site.com",
        "salesforce-setup.com",
    ] {
        assert!(!is_salesforce_host(host), "{host}");
    }
}

fn policy_for(login: &str, listed: &[&str]) -> InstancePolicy {
    let listed = listed
        .iter()
        .map(|entry| InstanceHost::parse(entry).unwrap())
        .collect();
    InstancePolicy::new(&login.parse().unwrap(), listed)
}

fn allows(policy: &InstancePolicy, url: &str) -> bool {
    policy.allows(&InstanceUrl::parse(url).unwrap())
}

#[test]
fn a_salesforce_login_allows_salesforce_instances_on_443_only() {
    for login in [
        "https://login.salesforce.com",
        "https://acme.my.salesforce.com:443",
        "https://acme.my.site.force.com/customers",
    ] {
        let policy = policy_for(login, &[]);
        assert!(allows(&policy, "https://acme.my.salesforce.com"), "{login}");
        assert!(
            allows(&policy, "https://ACME.my.salesforce.com.:443"),
            "{login}"
        );
        assert!(allows(&policy, "https://eu12.salesforce.com"), "{login}");
        assert!(allows(&policy, "https://gov.my.salesforce.mil"), "{login}");
        assert!(
            !allows(&policy, "https://acme.my.salesforce.com:8443"),
            "{login}"
        );
        assert!(!allows(&policy, "https://127.0.0.1"), "{login}");
        assert!(!allows(&policy, "https://127.0.0.1:9"), "{login}");
        assert!(!allows(&policy, "https://evilsalesforce.com"), "{login}");
    }
}

#[test]
fn a_stand_in_login_allows_its_own_host_and_port_only() {
    let policy = policy_for("https://localhost:8443", &[]);
    assert!(allows(&policy, "https://localhost:8443"));
    assert!(allows(&policy, "https://LOCALHOST:8443"));
    assert!(!allows(&policy, "https://localhost:8444"));
    assert!(!allows(&policy, "https://localhost"));
    assert!(!allows(&policy, "https://127.0.0.1:8443"));
    assert!(!allows(&policy, "https://acme.my.salesforce.com"));
    // A Salesforce host on another port is not Salesforce's: its own host and port only.
    let odd = policy_for("https://login.salesforce.com:8443", &[]);
    assert!(allows(&odd, "https://login.salesforce.com:8443"));
    assert!(!allows(&odd, "https://acme.my.salesforce.com"));
}

#[test]
fn listed_instance_hosts_add_hosts_domains_and_ports() {
    let policy = policy_for(
        "https://login.salesforce.com",
        &[
            "crm.example.com",
            "*.gov.example",
            "127.0.0.1:9443",
            "[::1]:8443",
        ],
    );
    assert!(allows(&policy, "https://crm.example.com"));
    assert!(
        !allows(&policy, "https://crm.example.com:8443"),
        "no port: 443 only"
    );
    assert!(allows(&policy, "https://a.gov.example"));
    assert!(!allows(&policy, "https://gov.example"), "subdomains only");
    assert!(allows(&policy, "https://127.0.0.1:9443"));
    assert!(!allows(&policy, "https://127.0.0.1:9444"));
    assert!(allows(&policy, "https://[::1]:8443"));
    assert!(
        allows(&policy, "https://acme.my.salesforce.com"),
        "the defaults stay"
    );
}

#[test]
fn bad_instance_hosts_are_refused_naming_the_key() {
    for bad in [
        "*",
        "a b",
        "host:0",
        "host:99999",
        "host:x",
        "https://host",
        "",
    ] {
        let dir = key_file();
        let text = format!("{ORG}instance_hosts = [{bad:?}]\n{ROUTE}");
        let err = Config::from_toml(&text, dir.path()).unwrap_err();
        assert_eq!(err.key, "orgs.acme.instance_hosts", "{bad}: {err}");
    }
    let config = load("").unwrap();
    assert!(config.routes[0].org.instances.listed.is_empty());
}

#[test]
fn workers_default_to_the_cores_and_are_bounded() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(load("").unwrap().proxy.workers, cores);
    assert_eq!(load("[proxy]\nworkers = 3\n").unwrap().proxy.workers, 3);
    for bad in ["0", "1025"] {
        let err = load(&format!("[proxy]\nworkers = {bad}\n")).unwrap_err();
        assert_eq!(err.key, "proxy.workers");
        assert!(err.message.contains("between 1 and 1024"), "{err}");
    }
}

#[test]
fn debug_redacts_the_key() {
    let config = load("").unwrap();
    let text = format!("{config:?}");
    assert!(text.contains("<redacted>"));
}

/// `extra` before the org, `route_extra` inside the route, with the logins key file written
/// beside the org key.
fn load_logins(extra: &str, route_extra: &str) -> Result<Config, ConfigError> {
    let dir = key_file();
    std::fs::write(dir.path().join("logins.key"), [7u8; 32]).unwrap();
    Config::from_toml(
        &format!("{extra}\n{ORG}\n{ROUTE}{route_extra}\n"),
        dir.path(),
    )
}

const SECRET_CLIENT: &str = "[clients.erp]\nsecret_sha256 = \"\
    0000000000000000000000000000000000000000000000000000000000000000\"\n";

#[test]
fn logins_default_and_are_absent_unless_configured() {
    assert!(load("").unwrap().logins.is_none());
    assert!(!load("").unwrap().routes[0].logins);
    let config = load_logins(&format!("{SECRET_CLIENT}[logins]\n"), "logins = true").unwrap();
    let logins = config.logins.as_ref().unwrap();
    assert!(logins.key.is_none());
    assert_eq!(logins.session_ttl, DEFAULT_LOGINS_SESSION_TTL);
    assert_eq!(logins.max_failures_per_minute, 10);
    assert!(config.logins_key_source.is_none());
    assert!(config.routes[0].logins);
}

#[test]
fn the_logins_key_is_read_once_from_one_source() {
    let config = load_logins(
        "[logins]\nkey_file = \"logins.key\"\nsession_ttl = \"30m\"\nmax_failures_per_minute = 3\n",
        "",
    )
    .unwrap();
    let logins = config.logins.as_ref().unwrap();
    assert!(logins.key.is_some());
    assert_eq!(logins.session_ttl, Duration::from_secs(1800));
    assert_eq!(logins.max_failures_per_minute, 3);
    assert!(matches!(
        &config.logins_key_source,
        Some(KeySource::File(p)) if p.ends_with("logins.key")
    ));
    let err =
        load_logins("[logins]\nkey_file = \"logins.key\"\nkey_env = \"K\"\n", "").unwrap_err();
    assert_eq!(err.key, "logins.key_env", "{err}");
    let err = load_logins("[logins]\nkey_file = \"acme.key\"\n", "").unwrap_err();
    assert_eq!(err.key, "logins.key_file", "{err}");
    let err = load_logins("[logins]\nkey_file = \"missing.key\"\n", "").unwrap_err();
    assert_eq!(err.key, "logins.key_file", "{err}");
}

#[test]
fn logins_bounds_are_refused_naming_the_key() {
    for bad in ["0s", "500ms", "8d"] {
        let err = load_logins(&format!("[logins]\nsession_ttl = \"{bad}\"\n"), "").unwrap_err();
        assert_eq!(err.key, "logins.session_ttl", "{bad}");
        assert!(err.message.contains("7 days"), "{err}");
    }
    assert!(load_logins("[logins]\nsession_ttl = \"7d\"\n", "").is_ok());
    let err = load_logins("[logins]\nmax_failures_per_minute = 0\n", "").unwrap_err();
    assert_eq!(err.key, "logins.max_failures_per_minute");
    let err = load_logins("[logins]\nkey_fil = \"x\"\n", "").unwrap_err();
    assert!(err.key.starts_with("logins.key_fil"), "{err}");
}

#[test]
fn a_logins_route_needs_the_table_and_clients_with_secrets() {
    let err = load_logins(SECRET_CLIENT, "logins = true").unwrap_err();
    assert_eq!(err.key, "routes.r.logins");
    assert!(err.message.contains("add [logins]"), "{err}");

    let err = load_logins("[logins]\n", "logins = true").unwrap_err();
    assert_eq!(err.key, "routes.r.logins");
    assert!(err.message.contains("admits no client"), "{err}");

    let open = "[clients.batch]\nnetworks = [\"10.0.0.0/24\"]\n";
    let err =
        load_logins(&format!("{SECRET_CLIENT}{open}[logins]\n"), "logins = true").unwrap_err();
    assert_eq!(err.key, "routes.r.logins");
    assert!(
        err.message.contains("client \"batch\" has no secret"),
        "{err}"
    );

    // Leaving the secret-less client out of the route is enough.
    let config = load_logins(
        &format!("{SECRET_CLIENT}{open}[logins]\n"),
        "clients = [\"erp\"]\nlogins = true",
    )
    .unwrap();
    assert!(config.routes[0].logins);
}

fn load_shared(table: &str) -> Result<Config, ConfigError> {
    let dir = key_file();
    std::fs::write(dir.path().join("shared.key"), [9u8; 32]).unwrap();
    Config::from_toml(&format!("[shared]\n{table}\n{ORG}\n{ROUTE}"), dir.path())
}

#[test]
fn shared_is_read_apart_and_defaults_apply() {
    assert!(load("").unwrap().shared.is_none());
    let config = load_shared(
        "redis_url = \"rediss://app@sessions.internal:6380/2\"\nkey_file = \"shared.key\"",
    )
    .unwrap();
    let shared = config.shared.as_ref().unwrap();
    assert_eq!(
        (shared.host.as_str(), shared.port, shared.db, shared.tls),
        ("sessions.internal", 6380, 2, true)
    );
    assert_eq!(shared.username.as_deref(), Some("app"));
    assert_eq!(shared.prefix, DEFAULT_SHARED_PREFIX);
    assert_eq!(shared.timeout, DEFAULT_SHARED_TIMEOUT);
    assert!(
        !format!("{shared:?}").contains("[9, 9"),
        "the key never shows"
    );
}

#[test]
fn shared_mistakes_are_refused_naming_the_key() {
    let key = "key_file = \"shared.key\"";
    for (table, at, says) in [
        (
            format!("redis_url = \"http://r:6379\"\n{key}"),
            "shared.redis_url",
            "redis://",
        ),
        (
            format!("redis_url = \"redis://:hunter2@r:6379\"\n{key}"),
            "shared.redis_url",
            "password_env",
        ),
        (
            "redis_url = \"redis://r:6379\"".to_owned(),
            "shared.key_file",
            "required",
        ),
        (
            "redis_url = \"redis://r\"\nkey_file = \"acme.key\"".to_owned(),
            "shared.key_file",
            "32",
        ),
        (
            format!("redis_url = \"redis://r\"\n{key}\nkey_env = \"K\""),
            "shared.key_env",
            "at most one",
        ),
        (
            format!("redis_url = \"redis://r\"\n{key}\npassword_env = \"SFPROXY_TEST_UNSET\""),
            "shared.password_env",
            "not set",
        ),
    ] {
        let err = load_shared(&table).unwrap_err();
        assert_eq!(err.key, at, "{table}: {err}");
        assert!(err.to_string().contains(says), "{table}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    for (extra, at) in [
        ("prefix = \"a{b}\"", "shared.prefix"),
        ("timeout = \"1ms\"", "shared.timeout"),
        ("timeout = \"1m\"", "shared.timeout"),
    ] {
        let err = load_shared(&format!("redis_url = \"redis://r\"\n{key}\n{extra}")).unwrap_err();
        assert_eq!(err.key, at, "{extra}: {err}");
    }
}
