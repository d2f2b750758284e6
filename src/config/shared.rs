//! `[shared]`: the Redis URL read apart (no password in it: that comes from `password_env`), the
//! key that seals what is stored there read once, now, and the bounds.

use std::path::Path;

use redis::{ConnectionAddr, IntoConnectionInfo};

use super::{
    defaults::{
        DEFAULT_SHARED_PREFIX, DEFAULT_SHARED_TIMEOUT, MAX_SHARED_TIMEOUT, MIN_SHARED_TIMEOUT,
    },
    error::ConfigError,
    load::{env_value, read_key32},
    model::{Password, SharedSettings},
    raw::RawShared,
};
use crate::shared::seal::SharedKey;

pub(super) fn validate_shared(raw: RawShared, base: &Path) -> Result<SharedSettings, ConfigError> {
    let url = raw.redis_url.trim().to_owned();
    let (tls, plain) = if let Some(rest) = url.strip_prefix("rediss://") {
        (true, format!("redis://{rest}"))
    } else if url.starts_with("redis://") {
        (false, url.clone())
    } else {
        return Err(ConfigError::new(
            "shared.redis_url",
            "must start with redis:// (or rediss:// for TLS), e.g. \
             \"redis://sessions.internal:6379/0\"",
        ));
    };
    // The URL is quoted in logs and by `sfproxy check`, so it must not carry the secret.
    let info = plain
        .as_str()
        .into_connection_info()
        .map_err(|e| ConfigError::new("shared.redis_url", format!("is not a Redis URL: {e}")))?;
    if info.redis_settings().password().is_some() {
        return Err(ConfigError::new(
            "shared.redis_url",
            "holds a password: put it in an environment variable and name that variable in \
             shared.password_env",
        ));
    }
    let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        return Err(ConfigError::new(
            "shared.redis_url",
            "must name a host and port (unix sockets are not supported)",
        ));
    };
    let password = raw
        .password_env
        .map(|var| env_value("shared.password_env", &var).map(Password))
        .transpose()?;
    let (key, key_source) =
        read_key32("shared", raw.key_file, raw.key_env, base)?.ok_or_else(|| {
            ConfigError::new(
                "shared.key_file",
                "required (or key_env): the key that seals every token stored in Redis; write \
                 one with `sfproxy keygen --shared-key --name shared` and give every replica \
                 the same",
            )
        })?;
    let prefix = raw
        .prefix
        .unwrap_or_else(|| DEFAULT_SHARED_PREFIX.to_owned());
    let plain_prefix = prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.' | b'/'));
    if !plain_prefix {
        return Err(ConfigError::new(
            "shared.prefix",
            "use at most 64 letters, digits and ':' '_' '-' '.' '/' (braces would change how a \
             Redis cluster places the keys)",
        ));
    }
    let timeout = raw.timeout.unwrap_or(DEFAULT_SHARED_TIMEOUT);
    if !(MIN_SHARED_TIMEOUT..=MAX_SHARED_TIMEOUT).contains(&timeout) {
        return Err(ConfigError::new(
            "shared.timeout",
            "must be between 10ms and 10s: it bounds every Redis command a login waits for",
        ));
    }
    Ok(SharedSettings {
        url,
        host,
        port,
        tls,
        db: info.redis_settings().db(),
        username: info.redis_settings().username().map(str::to_owned),
        password,
        key: SharedKey::from_bytes(&key).into(),
        key_source,
        prefix,
        timeout,
    })
}
