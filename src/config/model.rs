//! The validated configuration the proxy runs on: plain data, built only by the validation
//! (`validate`, `org`), shared read-only by every request. How a request is matched against a
//! route lives with route choice (`layer::route`), where a session may be sent with the instance
//! rules (`instances`), and the metric handles of orgs and routes are attached by the stack.

use std::{fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use http::{Uri, uri::Authority};
use ipnet::IpNet;
use jsonwebtoken::EncodingKey;
use rustls_pki_types::CertificateDer;

use crate::{
    intercept::ca::InterceptCa, salesforce::login::sealed::LoginsKey, shared::seal::SharedKey,
};

/// The validated configuration the proxy runs on.
#[derive(Debug)]
pub struct Config {
    pub(crate) proxy: ProxySettings,
    /// In file order: without credentials, the first client whose networks hold the source wins.
    pub(crate) clients: Vec<Client>,
    pub(crate) routes: Vec<Arc<Route>>,
    /// `[logins]`: `None`, sfproxy never answers a legacy login.
    pub(crate) logins: Option<LoginsSettings>,
    /// Where the logins key came from, for `sfproxy check` (its line and permission warning).
    pub(crate) logins_key_source: Option<KeySource>,
    /// `[shared]`: `None`, each process keeps its own sessions.
    pub(crate) shared: Option<SharedSettings>,
}

/// `[shared]`: the Redis through which replicas share sessions, their logins, the login budget
/// and remembered failures.
#[derive(Debug, Clone)]
pub(crate) struct SharedSettings {
    /// `redis_url` as written (it never holds a password: that comes from `password_env`).
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `rediss://`: TLS, with the trust of the token host (webpki roots plus `ca_file`).
    pub(crate) tls: bool,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Password>,
    pub(crate) key: Arc<SharedKey>,
    pub(crate) key_source: KeySource,
    pub(crate) prefix: String,
    /// Per Redis command; past it the process carries on alone.
    pub(crate) timeout: Duration,
}

impl SharedSettings {
    /// Whether a reload may keep the connection made for `self`.
    pub(crate) fn same_as(&self, other: &SharedSettings) -> bool {
        self.url == other.url
            && self.password.as_ref().map(Password::expose)
                == other.password.as_ref().map(Password::expose)
            && self.key.fingerprint() == other.key.fingerprint()
            && self.prefix == other.prefix
            && self.timeout == other.timeout
    }
}

/// The Redis password, read from `password_env`; `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Password(pub(crate) String);

impl Password {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// `[logins]`: how sfproxy answers SOAP `login()` and OAuth password grants itself.
#[derive(Debug, Clone)]
pub(crate) struct LoginsSettings {
    /// None: no key_file/key_env; the running proxy makes one at start and keeps it across reloads.
    pub(crate) key: Option<Arc<LoginsKey>>,
    /// How long a handed-out session id is accepted.
    pub(crate) session_ttl: Duration,
    /// Wrong passwords per source address in a minute before every login from it fails.
    pub(crate) max_failures_per_minute: u32,
}

/// A key's `key_file` (the path, resolved) or `key_env` (the variable's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    pub(crate) listen: SocketAddr,
    /// Extra trust anchors for the token host and instances, besides the webpki roots: the
    /// certificates of `ca_file`, read once, when the config is loaded.
    pub(crate) ca_certs: Vec<CertificateDer<'static>>,
    pub(crate) replay_limit: usize,
    pub(crate) request_timeout: Duration,
    /// Health, readiness and metrics; off unless set.
    pub(crate) admin_listen: Option<SocketAddr>,
    /// How long requests in flight may take to finish after SIGTERM/SIGINT.
    pub(crate) shutdown_grace: Duration,
    /// The request line and headers together.
    pub(crate) max_header_bytes: usize,
    /// The whole header section must arrive within this (slowloris).
    pub(crate) header_timeout: Duration,
    pub(crate) max_body: u64,
    pub(crate) max_connections: usize,
    /// Serving threads; by default one per core the process may use.
    pub(crate) workers: usize,
    /// The CA for CONNECT interception; `None`: CONNECT is refused (405).
    pub(crate) intercept: Option<Arc<InterceptCa>>,
}

#[derive(Debug)]
pub(crate) struct Org {
    pub(crate) name: String,
    /// `{login_url}/services/oauth2/token`.
    pub(crate) token_url: Uri,
    pub(crate) audience: String,
    pub(crate) client_id: String,
    pub(crate) key: SigningKey,
    pub(crate) session_ttl: Duration,
    pub(crate) assertion_ttl: Duration,
    /// When set, the upstream for this org whatever the token response says.
    pub(crate) instance_url: Option<InstanceUrl>,
    /// Which `instance_url` of a token response sessions may be sent to.
    pub(crate) instances: InstancePolicy,
    /// Mint sessions at start and keep them fresh; readiness waits for them.
    pub(crate) warm: bool,
    /// Where the key was read from, for `sfproxy check`'s permission warning.
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) login_timeout: Duration,
    pub(crate) unavailable_backoff: Duration,
    pub(crate) rejected_backoff: Duration,
    pub(crate) max_logins_per_hour: u32,
    /// Digest of every setting that makes a session (login URL, audience, client id, key,
    /// instance, instance hosts): sessions survive a reload exactly when it is unchanged.
    pub(crate) settings_id: [u8; 32],
}

/// The org's RSA private key, held only as a signing key; `Debug` never shows it.
pub(crate) struct SigningKey(pub(crate) EncodingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) name: Arc<str>,
    pub(crate) networks: Vec<IpNet>,
    /// SHA-256 of the secret; the secret itself is never kept.
    pub(crate) secret_sha256: Option<[u8; 32]>,
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
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) path_prefix: String,
    pub(crate) strip_prefix: bool,
    pub(crate) org: Arc<Org>,
    pub(crate) user: String,
    /// `None`: every client.
    pub(crate) clients: Option<Vec<String>>,
    /// Answer SOAP `login()` and password grants for this route's user (needs `[logins]`).
    pub(crate) logins: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Any,
    /// `*.example.com`: held as `.example.com`, matches subdomains only.
    Subdomains(String),
    Exact(String),
}

impl HostPattern {
    /// A `hosts` entry of a route (and the host of an `instance_hosts` entry).
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
}

/// An https origin a session may be sent to: scheme https, a host, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceUrl(pub(crate) Authority);

impl InstanceUrl {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
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

/// One `instance_hosts` entry: `"host"`, `"*.domain"` (subdomains only), either with `:port`
/// (else port 443 only, as https has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceHost {
    pub(super) host: HostPattern,
    pub(super) port: u16,
}

/// Where sessions of an org may be sent when the token response names the instance (the rules
/// are in `instances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstancePolicy {
    /// `login_url`'s host and port when it is not a Salesforce host on 443.
    pub(super) login: Option<(String, u16)>,
    pub(super) listed: Vec<InstanceHost>,
}
