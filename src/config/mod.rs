//! The configuration file: TOML in, one validated [`Config`] out.
//!
//! Two steps, as sozu does: serde reads the file into `Raw*` structs that mirror it exactly
//! (unknown keys refused), then one fallible conversion checks everything a running proxy would
//! otherwise discover too late — keys that do not sign, URLs that are not https, routes naming
//! unknown orgs — and every error names the key at fault. The same conversion refuses a config
//! that would hand a Salesforce user to anyone who can reach the port.
//!
//! This file is the front: [`Config::load`] and what the rest of the proxy names. The steps, each
//! naming the siblings it uses and never this file: `raw` (the file's serde types and TOML
//! errors), `load` (reading what the config names: the file, keys, environment values, CA
//! certificates, once and bounded), `validate` (raw into the model; `org` for an org's table,
//! `exposure` for the refuse-to-start check, `shared` for `[shared]`, `instances` for where a session may be sent), and
//! `model` (what the proxy runs on, plain data). `defaults` holds every default and bound;
//! `error` the [`ConfigError`].

use std::path::{Path, PathBuf};

mod defaults;
mod error;
mod exposure;
mod instances;
mod load;
mod model;
mod org;
mod raw;
mod shared;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use defaults::*;
pub use error::ConfigError;
pub use model::Config;
pub(crate) use model::*;

impl Config {
    /// The config file to read: `--config`, else `$SFPROXY_CONFIG`, else `sfproxy.toml`.
    pub fn path_from(flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
    }

    /// Reads and validates a config file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            load::read_config(path).map_err(|e| ConfigError::new(path.display().to_string(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
    }

    pub(crate) fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        validate::validate(raw::parse(text)?, base)
    }
}
