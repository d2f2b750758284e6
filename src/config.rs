//! The configuration file: TOML in, one validated [`Config`] out.
//!
//! Two steps, as sozu does: serde reads the file into `Raw*` structs that mirror it exactly
//! (unknown keys refused), then one fallible conversion checks everything a running proxy would
//! otherwise discover too late — keys that do not sign, URLs that are not https, routes naming
//! unknown orgs — and every error names the key at fault. The same conversion refuses a config
//! that would hand a Salesforce user to anyone who can reach the port.

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
use serde::Deserialize;

use crate::{
    intercept::ca::InterceptCa,
    metrics::{OrgMetrics, RouteMetrics},
};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    orgs: IndexMap<String, RawOrg>,
    #[serde(default)]
    clients: IndexMap<String, RawClient>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<SocketAddr>,
    ca_file: Option<PathBuf>,
    replay_limit: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    admin_listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    max_header_bytes: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    header_timeout: Option<Duration>,
    max_body: Option<ByteSize>,
    max_connections: Option<usize>,
    workers: Option<usize>,
    intercept: Option<RawIntercept>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntercept {
    ca_cert_file: PathBuf,
    ca_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    login_url: String,
    audience: Option<String>,
    client_id: String,
    private_key_file: Option<PathBuf>,
    private_key_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    session_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    assertion_ttl: Option<Duration>,
    instance_url: Option<String>,
    #[serde(default)]
    warm: bool,
    #[serde(default, with = "humantime_serde")]
    login_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    unavailable_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    rejected_backoff: Option<Duration>,
    max_logins_per_hour: Option<u32>,
    /// Where a token response's `instance_url` may point besides the defaults.
    instance_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default)]
    networks: Vec<IpNet>,
    secret_sha256: Option<String>,
    secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    hosts: Vec<String>,
    path_prefix: Option<String>,
    #[serde(default)]
    strip_prefix: bool,
    org: String,
    user: String,
    clients: Option<Vec<String>>,
}

/// The validated configuration the proxy runs on.
#[derive(Debug)]
pub struct Config {
    pub proxy: ProxySettings,
    pub orgs: HashMap<String, Arc<Org>>,
    /// In file order: without credentials, the first client whose networks hold the source wins.
    pub clients: Vec<Client>,
    pub routes: Vec<Arc<Route>>,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    /// Extra trust anchors (PEM) for the token host and instances, besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    pub replay_limit: usize,
    pub request_timeout: Duration,
    /// Health, readiness and metrics; off unless set.
    pub admin_listen: Option<SocketAddr>,
    /// How long requests in flight may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// The request line and headers together.
    pub max_header_bytes: usize,
    /// The whole header section must arrive within this (slowloris).
    pub header_timeout: Duration,
    pub max_body: u64,
    pub max_connections: usize,
    /// Serving threads; by default one per core the process may use.
    pub workers: usize,
    /// The CA for CONNECT interception; `None`: CONNECT is refused (405).
    pub intercept: Option<Arc<InterceptCa>>,
}

#[derive(Debug)]
pub struct Org {
    pub name: String,
    pub login_url: String,
    /// `{login_url}/services/oauth2/token`.
    pub token_url: Uri,
    pub audience: String,
    pub client_id: String,
    pub key: SigningKey,
    pub session_ttl: Duration,
    pub assertion_ttl: Duration,
    /// When set, the upstream for this org whatever the token response says.
    pub instance_url: Option<InstanceUrl>,
    /// Which `instance_url` of a token response sessions may be sent to.
    pub instances: InstancePolicy,
    /// Mint sessions at start and keep them fresh; readiness waits for them.
    pub warm: bool,
    /// Where the key was read from, for `sfproxy check`'s permission warning.
    pub key_file: Option<PathBuf>,
    pub login_timeout: Duration,
    pub unavailable_backoff: Duration,
    pub rejected_backoff: Duration,
    pub max_logins_per_hour: u32,
    /// Digest of every setting that makes a session (login URL, audience, client id, key,
    /// instance, instance hosts): sessions survive a reload exactly when it is unchanged.
    pub settings_id: [u8; 32],
    pub metrics: OrgMetrics,
}

#[cfg(test)]
impl Org {
    /// An org for unit tests: `login_url` (and the token URL under it), the key of `key_pem`,
    /// defaults elsewhere; tests override fields with struct update syntax.
    pub fn for_tests(login_url: &str, client_id: &str, key_pem: &str) -> Org {
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        Org {
            name: "acme".into(),
            login_url: login_url.to_owned(),
            token_url: format!("{login_url}/services/oauth2/token")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            audience: "https://login.salesforce.com".into(),
            client_id: client_id.to_owned(),
            key: SigningKey(key),
            session_ttl: Duration::from_secs(60),
            assertion_ttl: Duration::from_secs(60),
            instance_url: None,
            instances: InstancePolicy::new(
                &login_url.parse().unwrap_or_else(|e| panic!("{e}")),
                Vec::new(),
            ),
            warm: false,
            key_file: None,
            login_timeout: Duration::from_secs(5),
            unavailable_backoff: DEFAULT_UNAVAILABLE_BACKOFF,
            rejected_backoff: DEFAULT_REJECTED_BACKOFF,
            max_logins_per_hour: DEFAULT_MAX_LOGINS_PER_HOUR,
            settings_id: [0; 32],
            metrics: OrgMetrics::default(),
        }
    }
}

/// The org's RSA private key, held only as a signing key; `Debug` never shows it.
pub struct SigningKey(pub EncodingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Clone)]
pub struct Client {
    pub name: Arc<str>,
    pub networks: Vec<IpNet>,
    /// SHA-256 of the secret; the secret itself is never kept.
    pub secret_sha256: Option<[u8; 32]>,
}

/// Without the secret's hash: an unsalted SHA-256 of a weak secret is as good as the secret.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("networks", &self.networks)
            .field("secret", &self.secret_sha256.map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub org: Arc<Org>,
    pub user: String,
    /// `None`: every client.
    pub clients: Option<Vec<String>>,
    pub metrics: RouteMetrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    /// `*.example.com`: held as `.example.com`, matches subdomains only.
    Subdomains(String),
    Exact(String),
}

impl HostPattern {
    fn parse(raw: &str) -> Result<Self, String> {
        let host = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if host == "*" {
            return Ok(Self::Any);
        }
        let (pattern, name) = match host.strip_prefix("*.") {
            Some(rest) => (Self::Subdomains(format!(".{rest}")), rest.to_owned()),
            None => (Self::Exact(host.clone()), host.clone()),
        };
        let ipv6 = name.starts_with('[')
            && name.ends_with(']')
            && name[1..name.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok();
        let valid = ipv6
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                && !name.contains(".."));
        if valid {
            Ok(pattern)
        } else {
            Err(format!(
                "{raw:?} is not a host name (use \"name\", \"*.domain\", \"[ipv6]\" or \"*\", \
                 without a port: the port is ignored when matching)"
            ))
        }
    }

    /// `host` is already lower-case, without port or trailing dot.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            Self::Exact(name) => host == name,
        }
    }
}

impl Route {
    /// Segment-aware: `/acme` matches `/acme` and `/acme/x`, not `/acmex`.
    pub fn matches_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.path_prefix.as_str()) {
            Some(rest) => {
                self.path_prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
            }
            None => false,
        }
    }

    pub fn admits(&self, client: &str) -> bool {
        self.clients
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == client))
    }
}

/// An https origin a session may be sent to: scheme https, a host, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUrl(pub Authority);

impl InstanceUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: Uri = raw
            .parse()
            .map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "{raw:?} is not https: sfproxy sends Salesforce sessions over TLS only"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{raw:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{raw:?} must not carry user information"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("{raw:?} must be an origin only, without a path"));
        }
        Ok(Self(authority))
    }
}

impl fmt::Display for InstanceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.0)
    }
}

/// The domains Salesforce serves orgs' instances and My Domains from (`acme.my.salesforce.com`,
/// `na123.salesforce.com`, Experience Cloud `*.force.com`, legacy `*.cloudforce.com` and
/// `*.database.com`, Government Cloud Plus Defense `*.salesforce.mil` / `*.force.mil`, and the
/// Alibaba-operated China cloud `*.sfcrmproducts.cn` / `*.sfcrmapps.cn`). Source: Salesforce Help,
/// "Allow the Required Domains" and "My Domain URL Formats"; their Setup, Sites and content
/// domains (`salesforce-setup.com`, `site.com`, `salesforce-sites.com`, `force-user-content.com`,
/// ...) serve no API and are left out.
pub const SALESFORCE_DOMAINS: &[&str] = &[
    "salesforce.com",
    "force.com",
    "cloudforce.com",
    "database.com",
    "salesforce.mil",
    "force.mil",
    "sfcrmproducts.cn",
    "sfcrmapps.cn",
];

/// `host` (lower-case, no trailing dot) is one of [`SALESFORCE_DOMAINS`] or under one.
pub fn is_salesforce_host(host: &str) -> bool {
    SALESFORCE_DOMAINS.iter().any(|domain| {
        host.strip_suffix(domain)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
    })
}

/// A host and port, lower-case, without the trailing dot; the port 443 when not given.
fn host_and_port(authority: &Authority) -> (String, u16) {
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    (host, authority.port_u16().unwrap_or(443))
}

/// One `instance_hosts` entry: `"host"`, `"*.domain"` (subdomains only), either with `:port`
/// (else port 443 only, as https has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHost {
    host: HostPattern,
    port: u16,
}

impl InstanceHost {
    fn parse(raw: &str) -> Result<Self, String> {
        let entry = raw.trim();
        let (host, port) = match entry.rsplit_once(':') {
            // A bracketed IPv6 address without a port has colons but ends with `]`.
            Some((host, port)) if !entry.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{raw:?}: {port:?} is not a port (1-65535)"))?;
                (host, port)
            }
            _ => (entry, 443),
        };
        let pattern = HostPattern::parse(host).map_err(|_| {
            format!("{raw:?} is not an instance host (use \"host\", \"*.domain\" or \"host:port\")")
        })?;
        if pattern == HostPattern::Any {
            return Err(format!(
                "{raw:?} would send sessions wherever a token response points: name the hosts \
                 or \"*.domain\""
            ));
        }
        Ok(Self {
            host: pattern,
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.matches(host)
    }
}

/// Where sessions of an org may be sent when the token response names the instance: a hostile or
/// mistaken token endpoint must not make sfproxy dial (and report on) any host and port it likes.
/// By default, port 443 under [`SALESFORCE_DOMAINS`] when `login_url` is a Salesforce host, and
/// the login host and port itself when it is not (a stand-in); plus the `instance_hosts` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePolicy {
    /// `login_url`'s host and port when it is not a Salesforce host on 443.
    login: Option<(String, u16)>,
    listed: Vec<InstanceHost>,
}

impl InstancePolicy {
    pub fn new(login_url: &Uri, listed: Vec<InstanceHost>) -> Self {
        let login = login_url
            .authority()
            .map(host_and_port)
            .filter(|(host, port)| !(*port == 443 && is_salesforce_host(host)));
        Self { login, listed }
    }

    /// Whether a session may be sent to `instance`.
    pub fn allows(&self, instance: &InstanceUrl) -> bool {
        let (host, port) = host_and_port(&instance.0);
        let default = match &self.login {
            None => port == 443 && is_salesforce_host(&host),
            Some((login_host, login_port)) => *login_host == host && *login_port == port,
        };
        default || self.listed.iter().any(|entry| entry.matches(&host, port))
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
        ca_file: raw.proxy.ca_file.map(|p| base.join(p)),
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
    if let Some(ca_file) = &proxy.ca_file {
        crate::upstream::read_ca_file(ca_file)
            .map_err(|message| ConfigError::new("proxy.ca_file", message))?;
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

/// The most any file the config names (the config itself, keys, certificates) may hold: they are
/// a few KB, and a path to `/dev/zero` or a huge file must not fill the memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file the config names: only a regular file, at most [`MAX_FILE_BYTES`]. Opened
/// non-blocking, so a FIFO nobody writes (or a device) is refused at once instead of blocking
/// the thread; the type is checked again on the opened file, so a swap after the first check
/// cannot slip a FIFO or a device in. The error is `cannot read PATH: why`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    read_regular(path).map_err(|why| format!("cannot read {}: {why}", path.display()))
}

/// [`read_file`], the error without the path.
fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    not_regular(&meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    not_regular(&meta)?;
    let too_large = "it is larger than 1 MiB; a key or certificate file is a few KB";
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large.into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte over the limit tells a file that grew since the check.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large.into());
    }
    Ok(bytes)
}

/// Refuses anything but a regular file, saying what it is instead.
fn not_regular(meta: &std::fs::Metadata) -> Result<(), String> {
    let file_type = meta.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    let mut kind = if file_type.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            kind = "a FIFO";
        } else if file_type.is_char_device() || file_type.is_block_device() {
            kind = "a device";
        } else if file_type.is_socket() {
            kind = "a socket";
        }
    }
    Err(format!("it is {kind}, not a regular file"))
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

/// The broadest networks a client without a secret may have: 10.0.0.0/8 and fc00::/7 (private
/// ranges) pass; 0.0.0.0/1 or 2000::/3, most of the internet, do not.
const MIN_OPEN_PREFIX_V4: u8 = 8;
const MIN_OPEN_PREFIX_V6: u8 = 7;
/// How much public address space the clients without a secret may cover together: a /8 of
/// IPv4 (as one network may), and a /32 of IPv6 — the block a regional registry allocates to
/// an ISP or a large organisation, more than any one organisation's own callers sit in. (A /8
/// of IPv6 would let half the allocated internet in.)
const MAX_OPEN_PREFIX_V4: u8 = 8;
const MAX_OPEN_PREFIX_V6: u8 = 32;
/// Address space no stranger on the internet calls from: private (RFC 1918, ULA), shared
/// (RFC 6598), loopback and link-local. Not counted as exposure.
const NOT_PUBLIC: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Refuses configs under which anyone who can reach the port would act as a Salesforce user.
fn check_exposure(proxy: &ProxySettings, clients: &[Client]) -> Result<(), ConfigError> {
    if clients.is_empty() && !proxy.listen.ip().is_loopback() {
        return Err(ConfigError::new(
            "proxy.listen",
            format!(
                "{} is not a loopback address and there is no [clients] table: anyone who can \
                 reach the port would act as the routes' Salesforce users; add [clients.NAME] \
                 with networks and/or a secret",
                proxy.listen
            ),
        ));
    }
    let mut open: Vec<IpNet> = Vec::new();
    let mut open_clients: Vec<&str> = Vec::new();
    for client in clients {
        if client.secret_sha256.is_some() {
            continue;
        }
        let too_broad = client.networks.is_empty()
            || client.networks.iter().any(|n| match n {
                IpNet::V4(n) => n.prefix_len() < MIN_OPEN_PREFIX_V4,
                IpNet::V6(n) => n.prefix_len() < MIN_OPEN_PREFIX_V6,
            });
        if too_broad {
            return Err(ConfigError::new(
                format!("clients.{}", client.name),
                format!(
                    "has no secret and no networks, or networks broader than /{MIN_OPEN_PREFIX_V4} \
                     (IPv4) or /{MIN_OPEN_PREFIX_V6} (IPv6): anyone who can reach the port from \
                     them would be this client; narrow networks or set secret_sha256/secret_env"
                ),
            ));
        }
        // Coverage, not prefix sizes: 256 /8s are the whole internet, in one client or many.
        open.extend(client.networks.iter().copied());
        open_clients.push(&client.name);
        let (v4, v6) = public_coverage(&open);
        if v4 > 1 << (32 - MAX_OPEN_PREFIX_V4) || v6 > 1 << (64 - MAX_OPEN_PREFIX_V6) {
            let together = if open_clients.len() > 1 {
                format!(
                    " together with those of {}",
                    open_clients[..open_clients.len() - 1].join(", ")
                )
            } else {
                String::new()
            };
            return Err(ConfigError::new(
                format!("clients.{}", client.name),
                format!(
                    "has no secret, and its networks{together} cover more public address space \
                     than one /{MAX_OPEN_PREFIX_V4} (IPv4) or /{MAX_OPEN_PREFIX_V6} (IPv6): anyone \
                     who can reach the port from them would be a client; narrow networks or set \
                     secret_sha256/secret_env"
                ),
            ));
        }
    }
    Ok(())
}

/// How much public space `networks` cover, overlaps counted once: IPv4 in addresses, IPv6 in
/// /64s (a smaller network counts as one).
fn public_coverage(networks: &[IpNet]) -> (u64, u128) {
    let not_public: Vec<IpNet> = NOT_PUBLIC.iter().filter_map(|n| n.parse().ok()).collect();
    let (mut v4, mut v6) = (0u64, 0u128);
    for net in IpNet::aggregate(&networks.to_vec()) {
        // Merged networks do not overlap, and a CIDR block and a reserved one overlap only when
        // one holds the other.
        let size = |n: &IpNet| -> u128 {
            match n {
                IpNet::V4(n) => 1u128 << (32 - n.prefix_len()),
                IpNet::V6(n) => 1u128 << (64 - n.prefix_len().min(64)),
            }
        };
        let reserved: u128 = not_public
            .iter()
            .filter(|p| {
                matches!(
                    (p, &net),
                    (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
                )
            })
            .map(|p| {
                if p.contains(&net) {
                    size(&net)
                } else if net.contains(p) {
                    size(p)
                } else {
                    0
                }
            })
            .sum();
        let public = size(&net).saturating_sub(reserved);
        match net {
            IpNet::V4(_) => v4 += u64::try_from(public).unwrap_or(u64::MAX),
            IpNet::V6(_) => v6 += public,
        }
    }
    (v4, v6)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let org = &config.orgs["acme"];
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
        let err = load("[clients.erp]\nnetworks = [\"11.0.0.0/8\"]\n[clients.wms]\nnetworks = [\"12.0.0.0/8\"]\n").unwrap_err();
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
        let err = load("[[routes]]\nname = \"x\"\nhosts = []\norg = \"acme\"\nuser = \"u\"\n")
            .unwrap_err();
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
        assert!(config.orgs["acme"].instances.listed.is_empty());
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
}
