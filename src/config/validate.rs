//! The second step: the raw file into the model, in the order the file reads — `[proxy]`,
//! `[logins]`, the orgs, the clients (and whether they expose a user), the routes — stopping at the first
//! problem, named by its key. Everything a running proxy would otherwise discover too late is
//! checked here: keys that do not sign, URLs that are not https, routes naming unknown orgs.

use std::{collections::HashMap, path::Path, sync::Arc};

use aws_lc_rs::digest;

use super::{
    defaults::{
        DEFAULT_HEADER_TIMEOUT, DEFAULT_LISTEN, DEFAULT_LOGINS_SESSION_TTL, DEFAULT_MAX_BODY,
        DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FAILURES_PER_MINUTE, DEFAULT_MAX_HEADER_BYTES,
        DEFAULT_PATH_PREFIX, DEFAULT_REPLAY_LIMIT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
        MAX_HEADER_BYTES, MAX_LOGINS_SESSION_TTL, MAX_WORKERS, MIN_HEADER_BYTES,
        MIN_LOGINS_SESSION_TTL,
    },
    error::{ConfigError, positive},
    exposure::check_exposure,
    load::{env_value, load_intercept_ca, read_ca_file, read_key32},
    model::{Client, Config, HostPattern, KeySource, LoginsSettings, Org, ProxySettings, Route},
    org::validate_org,
    raw::{RawClient, RawConfig, RawLogins, RawProxy, RawRoute},
    shared::validate_shared,
};
use crate::salesforce::login::sealed::LoginsKey;

pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let proxy = validate_proxy(raw.proxy, base)?;
    let (logins, logins_key_source) = match raw.logins {
        Some(raw) => {
            let (settings, source) = validate_logins(raw, base)?;
            (Some(settings), source)
        }
        None => (None, None),
    };

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
        let route = validate_route(&key, route, &orgs, &clients)?;
        if route.logins {
            check_logins_route(&route, logins.is_some(), &clients)?;
        }
        routes.push(Arc::new(route));
    }

    Ok(Config {
        proxy,
        clients,
        routes,
        logins,
        logins_key_source,
        shared: raw
            .shared
            .map(|raw| validate_shared(raw, base))
            .transpose()?,
    })
}

/// `[logins]`: the key read once, now (a file or a variable, never both), and the bounds.
fn validate_logins(
    raw: RawLogins,
    base: &Path,
) -> Result<(LoginsSettings, Option<KeySource>), ConfigError> {
    let (key, source) = match read_key32("logins", raw.key_file, raw.key_env, base)? {
        Some((bytes, source)) => (Some(Arc::new(LoginsKey::from_bytes(&bytes))), Some(source)),
        None => (None, None),
    };
    let session_ttl = raw.session_ttl.unwrap_or(DEFAULT_LOGINS_SESSION_TTL);
    if !(MIN_LOGINS_SESSION_TTL..=MAX_LOGINS_SESSION_TTL).contains(&session_ttl) {
        return Err(ConfigError::new(
            "logins.session_ttl",
            "must be between 1s and 7 days (\"168h\"): a handed-out session id cannot be \
             revoked short of a new key",
        ));
    }
    let max_failures_per_minute = raw
        .max_failures_per_minute
        .unwrap_or(DEFAULT_MAX_FAILURES_PER_MINUTE);
    if max_failures_per_minute == 0 {
        return Err(ConfigError::new(
            "logins.max_failures_per_minute",
            "must be at least 1: 0 would refuse every login after the first wrong password",
        ));
    }
    Ok((
        LoginsSettings {
            key,
            session_ttl,
            max_failures_per_minute,
        },
        source,
    ))
}

/// A route answering legacy logins needs `[logins]`, and every client it admits needs a
/// secret: the login's password is that secret, so a client known only by its network would
/// let anyone there log in with any password.
fn check_logins_route(
    route: &Route,
    logins_table: bool,
    clients: &[Client],
) -> Result<(), ConfigError> {
    let key = format!("routes.{}.logins", route.name);
    if !logins_table {
        return Err(ConfigError::new(
            key,
            "is true but there is no [logins] table: add [logins] (with key_file or key_env to \
             keep handed-out sessions across restarts)",
        ));
    }
    let admitted: Vec<&Client> = match &route.clients {
        Some(names) => clients
            .iter()
            .filter(|c| names.iter().any(|n| **n == *c.name))
            .collect(),
        None => clients.iter().collect(),
    };
    if admitted.is_empty() {
        return Err(ConfigError::new(
            key,
            "admits no client: a legacy login's password is its client's secret; add a \
             [clients.NAME] with secret_sha256 or secret_env",
        ));
    }
    if let Some(client) = admitted.iter().find(|c| c.secret_sha256.is_none()) {
        return Err(ConfigError::new(
            key,
            format!(
                "client {:?} has no secret: a legacy login's password is its client's secret; \
                 give it secret_sha256 or secret_env, or leave it out of this route's clients",
                &*client.name
            ),
        ));
    }
    Ok(())
}

fn validate_proxy(raw: RawProxy, base: &Path) -> Result<ProxySettings, ConfigError> {
    let proxy = ProxySettings {
        listen: match raw.listen {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::new("proxy.listen", "bad built-in default"))?,
        },
        ca_certs: match raw.ca_file.map(|p| base.join(p)) {
            Some(path) => {
                read_ca_file(&path).map_err(|message| ConfigError::new("proxy.ca_file", message))?
            }
            None => Vec::new(),
        },
        replay_limit: usize::try_from(raw.replay_limit.unwrap_or(DEFAULT_REPLAY_LIMIT).0)
            .map_err(|_| ConfigError::new("proxy.replay_limit", "too large"))?,
        request_timeout: positive(
            "proxy.request_timeout",
            raw.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        )?,
        admin_listen: raw.admin_listen,
        shutdown_grace: raw.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_header_bytes: usize::try_from(
            raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES).0,
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
            raw.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
        )?,
        max_body: raw.max_body.unwrap_or(DEFAULT_MAX_BODY).0,
        max_connections: raw
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1),
        workers: match raw.workers {
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
    Ok(proxy)
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
        (None, Some(var)) => {
            // Kept as identify compares it: the SHA-256 of the secret, never the secret.
            let secret = env_value(&key("secret_env"), &var)?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
            Some(hash)
        }
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
        logins: raw.logins,
    })
}
