//! The session ids sfproxy hands out at a legacy login: `{orgId}!{sealed}`, Salesforce's own
//! form, where `sealed` is the client, route, user and expiry under the logins key (AES-256-GCM).
//! Nothing is kept: any process with the same key accepts them.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use base64::Engine;

/// The key that seals handed-out session ids; `Debug` never shows it.
pub(crate) struct LoginsKey(LessSafeKey);

impl fmt::Debug for LoginsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginsKey(<redacted>)")
    }
}

impl LoginsKey {
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        // 32 bytes is exactly AES-256's key length: the only way this can fail.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key");
        Self(LessSafeKey::new(key))
    }

    /// A fresh random key (handed-out ids then end with the process).
    pub(crate) fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A key file's or variable's contents: 32 raw bytes, or their base64 (whitespace around it
    /// ignored).
    pub(crate) fn parse(contents: &[u8]) -> Result<Self, String> {
        if let Ok(raw) = <[u8; 32]>::try_from(contents) {
            return Ok(Self::from_bytes(&raw));
        }
        let text = std::str::from_utf8(contents)
            .map_err(|_| "is neither 32 raw bytes nor base64 text".to_owned())?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "is neither 32 raw bytes nor base64 text".to_owned())?;
        let raw = <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
            format!(
                "holds {} bytes, not 32 (write one with `sfproxy keygen --logins-key`)",
                decoded.len()
            )
        })?;
        Ok(Self::from_bytes(&raw))
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.0
    }
}
