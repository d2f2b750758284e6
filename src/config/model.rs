//! The validated configuration the proxy runs on: plain data, built only by the validation in
//! [`super`], with the matching rules of hosts and paths beside the types they belong to.

use super::*;

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
    /// Extra trust anchors for the token host and instances, besides the webpki roots: the
    /// certificates of `ca_file`, read once, when the config is loaded.
    pub ca_certs: Vec<CertificateDer<'static>>,
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
    pub(super) fn parse(raw: &str) -> Result<Self, String> {
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
