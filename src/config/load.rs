//! What a config is read from, once, when it is loaded: the file itself, the private keys it
//! names (files or environment variables), the `ca_file` certificates and the interception CA.
//! Files are not trusted: regular files only, bounded in size, never blocking on a FIFO or a
//! device. Environment values are never quoted back.

use std::path::{Path, PathBuf};

use base64::Engine;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::{
    error::ConfigError,
    model::{KeySource, SigningKey},
    raw::RawIntercept,
};
use crate::intercept::ca::InterceptCa;

/// The most any file the config names (the config itself, keys, certificates) may hold: they are
/// a few KB, and a path to `/dev/zero` or a huge file must not fill the memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file the config names: only a regular file, at most [`MAX_FILE_BYTES`]. Opened
/// non-blocking, so a FIFO nobody writes (or a device) is refused at once instead of blocking
/// the thread; the type is checked again on the opened file, so a swap after the first check
/// cannot slip a FIFO or a device in. The error is `cannot read PATH: why`.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    read_regular(path).map_err(|why| format!("cannot read {}: {why}", path.display()))
}

/// The config file's text; the error says why, without the path (the caller names it).
pub(super) fn read_config(path: &Path) -> Result<String, String> {
    read_regular(path)
        .map_err(|why| format!("cannot read: {why}"))
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_owned()))
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

/// Reads the extra trust anchors of `proxy.ca_file`.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE", path.display()));
    }
    Ok(certs)
}

/// The value of the environment variable a `*_env` key names. Neither the value nor the name is
/// ever quoted back: a config template that put the key or secret itself where its variable's
/// name belongs would otherwise print it.
pub(super) fn env_value(key: &str, var: &str) -> Result<String, ConfigError> {
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
pub(super) fn load_signing_key(pem: &[u8]) -> Result<SigningKey, String> {
    let key = EncodingKey::from_rsa_pem(pem).map_err(|e| format!("not a usable key ({e})"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &serde_json::json!({}), &key)
        .map_err(|e| format!("cannot sign RS256 with it ({e})"))?;
    Ok(SigningKey(key))
}

/// `[proxy.intercept]`: the CA certificate and key, loaded and proven to issue leaves.
pub(super) fn load_intercept_ca(
    raw: RawIntercept,
    base: &Path,
) -> Result<InterceptCa, ConfigError> {
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

/// The 32-byte key of `table` (`logins`, `shared`) from its `key_file` or `key_env` (at most one):
/// 32 raw bytes or their base64, whitespace around it ignored. `None` when neither is set.
/// Errors name the file but never quote a variable's value.
pub(super) fn read_key32(
    table: &str,
    file: Option<PathBuf>,
    var: Option<String>,
    base: &Path,
) -> Result<Option<([u8; 32], KeySource)>, ConfigError> {
    let (what, contents, source) = match (file, var) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{table}.key_env"),
                "set at most one of key_file and key_env",
            ));
        }
        (None, None) => return Ok(None),
        (Some(file), None) => {
            let path = base.join(file);
            let key = format!("{table}.key_file");
            let bytes = read_file(&path).map_err(|e| ConfigError::new(&key, e))?;
            (
                key,
                (bytes, path.display().to_string()),
                KeySource::File(path),
            )
        }
        (None, Some(var)) => {
            let key = format!("{table}.key_env");
            let value = env_value(&key, &var)?;
            let said = "the environment variable it names".to_owned();
            (key, (value.into_bytes(), said), KeySource::Env(var))
        }
    };
    let (bytes, named) = contents;
    let decoded = match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(raw) => return Ok(Some((raw, source))),
        Err(_) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()
            })
            .ok_or_else(|| {
                ConfigError::new(
                    &what,
                    format!("{named} is neither 32 raw bytes nor base64 text"),
                )
            })?,
    };
    let raw = <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
        ConfigError::new(
            &what,
            format!(
                "{named} holds {} bytes, not 32 (write one with `sfproxy keygen --{table}-key`)",
                decoded.len()
            ),
        )
    })?;
    Ok(Some((raw, source)))
}
