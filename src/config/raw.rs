//! The config file exactly as written: serde's view of it, unknown keys refused, and the one
//! line a file that does not read says. Nothing here is checked beyond its TOML types; the
//! validation turns it into the model, naming the key at fault.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use indexmap::IndexMap;
use ipnet::IpNet;
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::error::ConfigError;

/// Reads the file's TOML, naming the key at fault (`proxy.lisen (line 2): unknown field ...`).
pub(super) fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(document).map_err(|e| value_error(text, &e))
}

/// The line a byte offset of the file is on, counted from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A value of the wrong type, a missing or unknown key: serde's path to it says the key
/// (`orgs.b` and "missing field `login_url`" make `orgs.b.login_url`), the span its line.
/// Indices of arrays are left out (`routes.user`, not `routes[1].user`), as the key is written
/// in the file; the line tells one route from another.
fn value_error(text: &str, error: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let inner = error.inner();
    let message = inner.message().trim().replace('\n', " ");
    let mut key: Vec<&str> = Vec::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Map { key: name } => key.push(name),
            Segment::Enum { variant } => key.push(variant),
            Segment::Seq { .. } | Segment::Unknown => {}
        }
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        key.push(field);
    }
    let key = if key.is_empty() {
        "config".to_owned()
    } else {
        key.join(".")
    };
    match inner.span() {
        Some(span) => ConfigError::new(
            format!("{key} (line {})", line_of(text, span.start)),
            message,
        ),
        None => ConfigError::new(key, message),
    }
}

/// A file that is not TOML has no path to a key yet: the key is read from the table header
/// above the error and the line it is on.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return ConfigError::new("config", message);
    };
    let line_no = line_of(text, span.start);
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    // The table the error is in.
    let table = text
        .lines()
        .take(line_no)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = if line.starts_with('[') {
        ""
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) proxy: RawProxy,
    #[serde(default)]
    pub(super) orgs: IndexMap<String, RawOrg>,
    #[serde(default)]
    pub(super) clients: IndexMap<String, RawClient>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    /// Present: sfproxy answers legacy logins (SOAP `login()`, password grants) itself.
    pub(super) logins: Option<RawLogins>,
    /// Present: replicas share sessions through Redis.
    pub(super) shared: Option<RawShared>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShared {
    pub(super) redis_url: String,
    pub(super) password_env: Option<String>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) key_env: Option<String>,
    pub(super) prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogins {
    pub(super) key_file: Option<PathBuf>,
    pub(super) key_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) session_ttl: Option<Duration>,
    pub(super) max_failures_per_minute: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) listen: Option<SocketAddr>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) replay_limit: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) request_timeout: Option<Duration>,
    pub(super) admin_listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    pub(super) shutdown_grace: Option<Duration>,
    pub(super) max_header_bytes: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) header_timeout: Option<Duration>,
    pub(super) max_body: Option<ByteSize>,
    pub(super) max_connections: Option<usize>,
    pub(super) workers: Option<usize>,
    pub(super) intercept: Option<RawIntercept>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntercept {
    pub(super) ca_cert_file: PathBuf,
    pub(super) ca_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    pub(super) login_url: String,
    pub(super) audience: Option<String>,
    pub(super) client_id: String,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) private_key_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) session_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) assertion_ttl: Option<Duration>,
    pub(super) instance_url: Option<String>,
    #[serde(default)]
    pub(super) warm: bool,
    #[serde(default, with = "humantime_serde")]
    pub(super) login_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) unavailable_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) rejected_backoff: Option<Duration>,
    pub(super) max_logins_per_hour: Option<u32>,
    /// Where a token response's `instance_url` may point besides the defaults.
    pub(super) instance_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default)]
    pub(super) networks: Vec<IpNet>,
    pub(super) secret_sha256: Option<String>,
    pub(super) secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) hosts: Vec<String>,
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) strip_prefix: bool,
    pub(super) org: String,
    pub(super) user: String,
    pub(super) clients: Option<Vec<String>>,
    #[serde(default)]
    pub(super) logins: bool,
}
