//! An `[orgs.NAME]` table validated into an [`Org`]: its login URL and token endpoint, the JWT
//! audience, the signing key (read and proven to sign), lifetimes and login limits, where its
//! sessions may be sent, and the digest that decides whether its sessions survive a reload.

use std::path::Path;

use aws_lc_rs::digest;
use http::Uri;

use crate::salesforce::domains::infer_audience;

use super::{
    defaults::{
        DEFAULT_ASSERTION_TTL, DEFAULT_LOGIN_TIMEOUT, DEFAULT_MAX_LOGINS_PER_HOUR,
        DEFAULT_REJECTED_BACKOFF, DEFAULT_SESSION_TTL, DEFAULT_UNAVAILABLE_BACKOFF,
        MAX_ASSERTION_TTL,
    },
    error::{ConfigError, positive},
    load::{env_value, load_signing_key, read_file},
    model::{InstanceHost, InstancePolicy, InstanceUrl, Org},
    raw::RawOrg,
};

/// `login_url`: https, a host, and optionally a path (Experience Cloud logins live under
/// `https://<site>.force.com/<prefix>`).
pub(super) fn parse_login_url(raw: &str) -> Result<Uri, String> {
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

pub(super) fn validate_org(name: &str, raw: RawOrg, base: &Path) -> Result<Org, ConfigError> {
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
        let key_digest = digest::digest(&digest::SHA256, &pem);
        // A session kept across a reload must still be one the new policy allows.
        let policy = format!("{instances:?}");
        let mut all = digest::Context::new(&digest::SHA256);
        for part in [
            login_url.as_bytes(),
            audience.as_bytes(),
            client_id.as_bytes(),
            key_digest.as_ref(),
            instance.as_deref().unwrap_or("").as_bytes(),
            policy.as_bytes(),
        ] {
            all.update(&(part.len() as u64).to_be_bytes());
            all.update(part);
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(all.finish().as_ref());
        id
    };
    Ok(Org {
        name: name.to_owned(),
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
    })
}

#[cfg(test)]
impl Org {
    /// An org for unit tests: `login_url` (and the token URL under it), the key of `key_pem`,
    /// defaults elsewhere; tests override fields with struct update syntax.
    pub(crate) fn for_tests(login_url: &str, client_id: &str, key_pem: &str) -> Org {
        use std::time::Duration;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        Org {
            name: "acme".into(),
            token_url: format!("{login_url}/services/oauth2/token")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            audience: "https://login.salesforce.com".into(),
            client_id: client_id.to_owned(),
            key: super::model::SigningKey(key),
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
        }
    }
}
