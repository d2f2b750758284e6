//! What makes Redis safe to share: every value sfproxy stores there is sealed (AES-256-GCM) and
//! bound to its key, and keys name an (org, user) by a keyed hash.
//!
//! Whoever can read Redis sees neither a token nor a user name: a value opens only under the
//! shared key and only at the key it was stored under (the key is the associated data), so it
//! cannot be moved to another user's key either. The names are an HMAC, not a plain hash, so a
//! guessable user name cannot be confirmed. The two uses get their own keys, derived from the
//! one in the file.

use std::fmt;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hmac,
};

/// The shared key, as two derived keys; `Debug` never shows them.
pub(crate) struct SharedKey {
    seal: LessSafeKey,
    name: hmac::Key,
    /// A digest of the key, so a reload can tell a changed key without comparing secrets.
    fingerprint: [u8; 32],
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

impl SharedKey {
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let derive = |purpose: &[u8]| {
            let mut out = [0u8; 32];
            out.copy_from_slice(hmac::sign(&root, purpose).as_ref());
            out
        };
        // 32 bytes is exactly AES-256's key length: the only way this can fail.
        #[allow(clippy::expect_used)]
        let seal = UnboundKey::new(&AES_256_GCM, &derive(b"sfproxy shared seal"))
            .expect("a 32-byte AES-256 key");
        Self {
            seal: LessSafeKey::new(seal),
            name: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"sfproxy shared name")),
            fingerprint: derive(b"sfproxy shared fingerprint"),
        }
    }

    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The hex HMAC of `parts` (length-prefixed, so no two lists collide), cut to 128 bits.
    pub(crate) fn name(&self, parts: &[&[u8]]) -> String {
        let mut context = hmac::Context::with_key(&self.name);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let tag = context.sign();
        let mut hex = String::with_capacity(32);
        for byte in &tag.as_ref()[..16] {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        hex
    }

    /// `nonce || ciphertext || tag` of `plain`, bound to `redis_key`.
    pub(crate) fn seal(&self, redis_key: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        let mut body = plain.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(redis_key.as_bytes()),
                &mut body,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The plaintext of a value [`seal`](Self::seal) stored at `redis_key`; `None` if it was
    /// sealed under another key, at another Redis key, or altered.
    pub(crate) fn open(&self, redis_key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(redis_key.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_under_its_key_at_its_redis_key() {
        let key = SharedKey::from_bytes(&[7; 32]);
        let sealed = key.seal("sfproxy:{a}:session", b"00D!token").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"token"));
        assert_eq!(
            key.open("sfproxy:{a}:session", &sealed).as_deref(),
            Some(&b"00D!token"[..])
        );
        assert_eq!(key.open("sfproxy:{b}:session", &sealed), None, "moved");
        let other = SharedKey::from_bytes(&[8; 32]);
        assert_eq!(other.open("sfproxy:{a}:session", &sealed), None);
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(key.open("sfproxy:{a}:session", &altered), None);
        assert_eq!(key.open("sfproxy:{a}:session", b"short"), None);
        assert_ne!(
            sealed,
            key.seal("sfproxy:{a}:session", b"00D!token").unwrap(),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn names_are_keyed_and_unambiguous() {
        let key = SharedKey::from_bytes(&[7; 32]);
        let name = key.name(&[b"acme", b"erp@acme.example"]);
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(name, key.name(&[b"acme", b"erp@acme.example"]));
        assert_ne!(name, key.name(&[b"acme", b"wms@acme.example"]));
        assert_ne!(key.name(&[b"ab", b"c"]), key.name(&[b"a", b"bc"]));
        assert_ne!(
            name,
            SharedKey::from_bytes(&[8; 32]).name(&[b"acme", b"erp@acme.example"])
        );
    }
}
