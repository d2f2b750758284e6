//! The configuration file: TOML in, one validated [`Config`] out.
//!
//! Two steps, as sozu does: serde reads the file into `Raw*` structs that mirror it exactly
//! (unknown keys refused), then one fallible conversion checks everything a running proxy would
//! otherwise discover too late — keys that do not sign, URLs that are not https, routes naming
//! unknown orgs — and every error names the key at fault. The same conversion refuses a config
//! that would hand a Salesforce user to anyone who can reach the port.
//!
//! Here: loading and the conversion. Beside it: `raw` (the file's serde types), `model` (what
//! the proxy runs on), `files` (reading what the config names, bounded), `instances` (where a
//! session may be sent), `exposure` (the refuse-to-start check).

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytesize::ByteSize;
use http::{Uri, uri::Authority};
use indexmap::IndexMap;
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::{
    intercept::ca::InterceptCa,
    metrics::{OrgMetrics, RouteMetrics},
};

mod exposure;
mod files;
mod instances;
mod model;
mod raw;
#[cfg(test)]
mod tests;

use exposure::check_exposure;
use files::read_regular;
pub use files::{MAX_FILE_BYTES, read_ca_file, read_file};
pub use instances::{InstanceHost, InstancePolicy, SALESFORCE_DOMAINS, is_salesforce_host};
pub use model::*;
use raw::*;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
pub const DEFAULT_REPLAY_LIMIT: ByteSize = ByteSize::mib(1);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Salesforce does not say how long a session lives (2 h of inactivity by default): reuse a token
/// well within that, and rely on the 401 replay for the rest.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(60 * 60);
pub const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(2 * 60);
/// Salesforce's documented ceiling for a JWT's `exp`.
pub const MAX_ASSERTION_TTL: Duration = Duration::from_secs(3 * 60);
/// How long a login (its token requests and retries) may take before it counts as unavailable.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the token host failed, callers get the remembered error this long.
pub const DEFAULT_UNAVAILABLE_BACKOFF: Duration = Duration::from_secs(5);
/// After Salesforce refused the assertion, callers get the remembered refusal this long.
pub const DEFAULT_REJECTED_BACKOFF: Duration = Duration::from_secs(30);
/// A sixth of Salesforce's 3,600 logins per user per hour: room for other tools using the user.
pub const DEFAULT_MAX_LOGINS_PER_HOUR: u32 = 600;
pub const DEFAULT_MAX_HEADER_BYTES: ByteSize = ByteSize::kib(64);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bulk API 2.0 takes up to 150 MB per upload.
pub const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(200);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// More serving threads than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;
/// hyper needs room for at least a request line and a few headers.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PATH_PREFIX: &str = "/";
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const CONFIG_ENV: &str = "SFPROXY_CONFIG";
pub const DEFAULT_CONFIG_FILE: &str = "sfproxy.toml";

/// A config problem, naming the key at fault (`orgs.acme.login_url: ...`); an empty key is a
/// problem with the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// The config file to read: `--config`, else `$SFPROXY_CONFIG`, else `sfproxy.toml`.
    pub fn path_from(flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
    }

    /// Reads and validates a config file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_regular(path)
            .map_err(|why| format!("cannot read: {why}"))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_owned()))
            .map_err(|e| ConfigError::new(path.display().to_string(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
    }

    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        validate(raw, base)
    }
}

/// One line for a TOML error: the key (from the table header and the line) and what is wrong.
fn toml_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return ConfigError::new("config", message);
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    // The table the error is in: a missing field points at the table's own header line.
    let table = text
        .lines()
        .take(line_no)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = if line.starts_with('[') {
        // "missing field `login_url`": name the field under its table.
        message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("")
    } else {
        line.split('=').next().map(str::trim).unwrap_or("")
    };
    let key = match (table, key.is_empty()) {
        (Some(table), false) => format!("{table}.{key}"),
        (Some(table), true) => table,
        (None, false) => key.to_owned(),
        (None, true) => "config".to_owned(),
    };
    ConfigError::new(format!("{key} (line {line_no})"), message)
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let proxy = ProxySettings {
        listen: match raw.proxy.listen {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::new("proxy.listen", "bad built-in default"))?,
        },
        ca_certs: match raw.proxy.ca_file.map(|p| base.join(p)) {
            Some(path) => {
                read_ca_file(&path).map_err(|message| ConfigError::new("proxy.ca_file", message))?
            }
            None => Vec::new(),
        },
        replay_limit: usize::try_from(raw.proxy.replay_limit.unwrap_or(DEFAULT_REPLAY_LIMIT).0)
            .map_err(|_| ConfigError::new("proxy.replay_limit", "too large"))?,
        request_timeout: positive(
            "proxy.request_timeout",
            raw.proxy.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        )?,
        admin_listen: raw.proxy.admin_listen,
        shutdown_grace: raw.proxy.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_header_bytes: usize::try_from(
            raw.proxy
                .max_header_bytes
                .unwrap_or(DEFAULT_MAX_HEADER_BYTES)
                .0,
        )
        .ok()
        .filter(|n| (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                "proxy.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} B and {MAX_HEADER_BYTES} B"),
            )
        })?,
        header_timeout: positive(
            "proxy.header_timeout",
            raw.proxy.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
        )?,
        max_body: raw.proxy.max_body.unwrap_or(DEFAULT_MAX_BODY).0,
        max_connections: raw
            .proxy
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1),
        workers: match raw.proxy.workers {
            Some(n) if (1..=MAX_WORKERS).contains(&n) => n,
            Some(_) => {
                return Err(ConfigError::new(
                    "proxy.workers",
                    format!("must be between 1 and {MAX_WORKERS}"),
                ));
            }
            // The cores this process may run on (CPU affinity, a cgroup's CPU quota).
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        intercept: raw
            .proxy
            .intercept
            .map(|raw| load_intercept_ca(raw, base))
            .transpose()?
            .map(Arc::new),
    };
    if proxy
        .admin_listen
        .is_some_and(|admin| admin == proxy.listen && admin.port() != 0)
    {
        return Err(ConfigError::new(
            "proxy.admin_listen",
            "is the same address as proxy.listen; the admin port must be a port of its own",
        ));
    }

    let mut orgs = HashMap::new();
    for (name, org) in raw.orgs {
        let org = validate_org(&name, org, base)?;
        orgs.insert(name, Arc::new(org));
    }

    let mut clients = Vec::new();
    for (name, client) in raw.clients {
        clients.push(validate_client(&name, client)?);
    }
    check_exposure(&proxy, &clients)?;

    if raw.routes.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "no [[routes]]: the proxy would serve nothing; add one naming an org and a user",
        ));
    }
    let mut routes: Vec<Arc<Route>> = Vec::new();
    for (i, route) in raw.routes.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        if routes.iter().any(|r| *r.name == *route.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!(
                    "{:?} is used by an earlier route; names must be unique",
                    route.name
                ),
            ));
        }
        routes.push(Arc::new(validate_route(&key, route, &orgs, &clients)?));
    }

    Ok(Config {
        proxy,
        orgs,
        clients,
        routes,
    })
}

fn load_intercept_ca(raw: RawIntercept, base: &Path) -> Result<InterceptCa, ConfigError> {
    let read = |key: &str, path: &Path| {
        let path = base.join(path);
        read_file(&path)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
            })
            .map_err(|e| ConfigError::new(format!("proxy.intercept.{key}"), e))
    };
    let cert = read("ca_cert_file", &raw.ca_cert_file)?;
    let key = read("ca_key_file", &raw.ca_key_file)?;
    InterceptCa::from_pem(&cert, &key).map_err(|m| ConfigError::new("proxy.intercept", m))
}

fn positive(key: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(key, "must be longer than zero"))
    } else {
        Ok(value)
    }
}

/// `login_url`: https, a host, and optionally a path (Experience Cloud logins live under
/// `https://<site>.force.com/<prefix>`).
fn parse_login_url(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .parse()
        .map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{raw:?} is not https: sfproxy sends assertions over TLS only"
        ));
    }
    match uri.authority() {
        None => Err(format!("{raw:?} has no host")),
        Some(a) if a.as_str().contains('@') => {
            Err(format!("{raw:?} must not carry user information"))
        }
        Some(_) if uri.query().is_some() => Err(format!("{raw:?} must not have a query")),
        Some(_) => Ok(uri),
    }
}

/// The JWT `aud` when not configured: login/test for Salesforce hosts, the login URL itself for a
/// stand-in (`../shared/salesforce.md`: the audience is the login host, never the My Domain).
pub fn infer_audience(login_url: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let first_label = host.split('.').next().unwrap_or("");
    // Sandboxes: test.salesforce.com, enhanced `*.sandbox.my.salesforce.com`, legacy
    // `mydomain--sandbox.my.salesforce.com` and `csNN.salesforce.com` instances.
    let legacy_sandbox = (host.ends_with(".my.salesforce.com") && first_label.contains("--"))
        || (first_label.len() > 2
            && first_label.starts_with("cs")
            && first_label[2..].chars().all(|c| c.is_ascii_digit())
            && host.ends_with(".salesforce.com"));
    if host == "test.salesforce.com"
        || host.ends_with(".sandbox.my.salesforce.com")
        || legacy_sandbox
    {
        "https://test.salesforce.com".to_owned()
    } else if host == "salesforce.com" || host.ends_with(".salesforce.com") {
        "https://login.salesforce.com".to_owned()
    } else {
        login_url.to_owned()
    }
}

fn validate_org(name: &str, raw: RawOrg, base: &Path) -> Result<Org, ConfigError> {
    let key = |field: &str| format!("orgs.{name}.{field}");
    let login_url = raw.login_url.trim().trim_end_matches('/').to_owned();
    let login = parse_login_url(&login_url).map_err(|m| ConfigError::new(key("login_url"), m))?;
    let token_url: Uri = format!("{login_url}/services/oauth2/token")
        .parse()
        .map_err(|e| ConfigError::new(key("login_url"), format!("{e}")))?;
    let audience = match raw.audience {
        Some(a) if a.trim().is_empty() => {
            return Err(ConfigError::new(key("audience"), "must not be empty"));
        }
        Some(a) => a.trim().to_owned(),
        None => infer_audience(&login_url, login.host().unwrap_or_default()),
    };
    if raw.client_id.trim().is_empty() {
        return Err(ConfigError::new(key("client_id"), "must not be empty"));
    }
    let mut key_file = None;
    let key_source = if raw.private_key_env.is_some() && raw.private_key_file.is_none() {
        key("private_key_env")
    } else {
        key("private_key_file")
    };
    let pem = match (raw.private_key_file, raw.private_key_env) {
        (Some(file), None) => {
            let path = base.join(file);
            let pem = read_file(&path).map_err(|e| ConfigError::new(key("private_key_file"), e))?;
            key_file = Some(path);
            pem
        }
        (None, Some(var)) => env_value(&key("private_key_env"), &var)?.into_bytes(),
        _ => {
            return Err(ConfigError::new(
                key("private_key_file"),
                "set exactly one of private_key_file and private_key_env",
            ));
        }
    };
    let signing_key = load_signing_key(&pem).map_err(|m| {
        ConfigError::new(
            key_source,
            format!("{m}; expected an RSA private key in PEM (PKCS#8 or PKCS#1)"),
        )
    })?;
    let assertion_ttl = positive(
        &key("assertion_ttl"),
        raw.assertion_ttl.unwrap_or(DEFAULT_ASSERTION_TTL),
    )?;
    if assertion_ttl > MAX_ASSERTION_TTL {
        return Err(ConfigError::new(
            key("assertion_ttl"),
            "must be at most 3m: Salesforce rejects a JWT whose exp is further ahead",
        ));
    }
    let instance_url = raw
        .instance_url
        .map(|u| InstanceUrl::parse(u.trim().trim_end_matches('/')))
        .transpose()
        .map_err(|m| ConfigError::new(key("instance_url"), m))?;
    let listed = raw
        .instance_hosts
        .unwrap_or_default()
        .iter()
        .map(|entry| InstanceHost::parse(entry))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ConfigError::new(key("instance_hosts"), m))?;
    let instances = InstancePolicy::new(&login, listed);
    let client_id = raw.client_id.trim().to_owned();
    let settings_id = {
        let instance = instance_url.as_ref().map(ToString::to_string);
        let key_digest = sha256(&pem);
        // A session kept across a reload must still be one the new policy allows.
        let policy = format!("{instances:?}");
        let mut all = Vec::new();
        for part in [
            login_url.as_bytes(),
            audience.as_bytes(),
            client_id.as_bytes(),
            &key_digest,
            instance.as_deref().unwrap_or("").as_bytes(),
            policy.as_bytes(),
        ] {
            all.extend_from_slice(&(part.len() as u64).to_be_bytes());
            all.extend_from_slice(part);
        }
        sha256(&all)
    };
    Ok(Org {
        name: name.to_owned(),
        login_url,
        token_url,
        audience,
        client_id,
        key: signing_key,
        session_ttl: positive(
            &key("session_ttl"),
            raw.session_ttl.unwrap_or(DEFAULT_SESSION_TTL),
        )?,
        assertion_ttl,
        instance_url,
        instances,
        warm: raw.warm,
        key_file,
        login_timeout: positive(
            &key("login_timeout"),
            raw.login_timeout.unwrap_or(DEFAULT_LOGIN_TIMEOUT),
        )?,
        unavailable_backoff: raw
            .unavailable_backoff
            .unwrap_or(DEFAULT_UNAVAILABLE_BACKOFF),
        rejected_backoff: raw.rejected_backoff.unwrap_or(DEFAULT_REJECTED_BACKOFF),
        max_logins_per_hour: match raw
            .max_logins_per_hour
            .unwrap_or(DEFAULT_MAX_LOGINS_PER_HOUR)
        {
            0 => {
                return Err(ConfigError::new(
                    key("max_logins_per_hour"),
                    "must be at least 1",
                ));
            }
            n if n > 3600 => {
                return Err(ConfigError::new(
                    key("max_logins_per_hour"),
                    "must be at most 3600: Salesforce's own limit per user per hour",
                ));
            }
            n => n,
        },
        settings_id,
        metrics: OrgMetrics::default(),
    })
}

/// The value of the environment variable a `*_env` key names. Neither the value nor the name is
/// ever quoted back: a config template that put the key or secret itself where its variable's
/// name belongs would otherwise print it.
fn env_value(key: &str, var: &str) -> Result<String, ConfigError> {
    let is_name = var.len() <= 255
        && var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        return Err(ConfigError::new(
            key,
            "must be the name of an environment variable (letters, digits and _), not a value",
        ));
    }
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(ConfigError::new(
            key,
            "the environment variable it names is not set, is empty, or is not UTF-8",
        )),
    }
}

/// Parses the PEM and signs a throwaway token with it, so a key that cannot sign RS256 fails at
/// start rather than on the first request. The error text never includes key material.
fn load_signing_key(pem: &[u8]) -> Result<SigningKey, String> {
    let key = EncodingKey::from_rsa_pem(pem).map_err(|e| format!("not a usable key ({e})"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &serde_json::json!({}), &key)
        .map_err(|e| format!("cannot sign RS256 with it ({e})"))?;
    Ok(SigningKey(key))
}

fn validate_client(name: &str, raw: RawClient) -> Result<Client, ConfigError> {
    let key = |field: &str| format!("clients.{name}.{field}");
    let secret_sha256 = match (raw.secret_sha256, raw.secret_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key("secret_env"),
                "set at most one of secret_sha256 and secret_env",
            ));
        }
        (Some(hex), None) => Some(parse_sha256(&hex).ok_or_else(|| {
            ConfigError::new(key("secret_sha256"), "must be 64 hexadecimal digits")
        })?),
        (None, Some(var)) => Some(sha256(env_value(&key("secret_env"), &var)?.as_bytes())),
        (None, None) => None,
    };
    if name.contains(':') {
        return Err(ConfigError::new(
            format!("clients.{name}"),
            "a client name must not contain ':' (it is the user of Proxy-Authorization: Basic)",
        ));
    }
    Ok(Client {
        name: name.into(),
        networks: raw.networks.into_iter().map(|n| n.trunc()).collect(),
        secret_sha256,
    })
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn validate_route(
    key: &str,
    raw: RawRoute,
    orgs: &HashMap<String, Arc<Org>>,
    clients: &[Client],
) -> Result<Route, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
    }
    if raw.name == crate::metrics::NO_ROUTE {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!(
                "{:?} is reserved: it labels requests refused before a route was chosen",
                crate::metrics::NO_ROUTE
            ),
        ));
    }
    let key = format!("routes.{}", raw.name);
    let org = orgs.get(&raw.org).cloned().ok_or_else(|| {
        ConfigError::new(
            format!("{key}.org"),
            format!("no [orgs.{}] is configured", raw.org),
        )
    })?;
    if raw.hosts.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.hosts"),
            "must name at least one host",
        ));
    }
    let hosts = raw
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ConfigError::new(format!("{key}.hosts"), m))?;
    let path_prefix = raw
        .path_prefix
        .unwrap_or_else(|| DEFAULT_PATH_PREFIX.to_owned());
    if !path_prefix.starts_with('/') || path_prefix.contains(['?', '#']) {
        return Err(ConfigError::new(
            format!("{key}.path_prefix"),
            format!("{path_prefix:?} must be a path starting with '/'"),
        ));
    }
    if raw.user.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.user"), "must not be empty"));
    }
    if let Some(names) = &raw.clients {
        for name in names {
            if !clients.iter().any(|c| *c.name == **name) {
                return Err(ConfigError::new(
                    format!("{key}.clients"),
                    format!("no [clients.{name}] is configured"),
                ));
            }
        }
    }
    Ok(Route {
        name: raw.name.into(),
        hosts,
        path_prefix,
        strip_prefix: raw.strip_prefix,
        org,
        user: raw.user.trim().to_owned(),
        clients: raw.clients,
        metrics: RouteMetrics::default(),
    })
}
