//! The session ids sfproxy hands out at a legacy login: `{orgId}!{sealed}`, Salesforce's own
//! form, where `sealed` is the client, route, user, expiry and a tag of the client's secret under
//! the logins key (AES-256-GCM). Nothing is kept: any process with the same key accepts them,
//! and changing a client's secret ends the ids handed out with the old one.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.0
    }
}

/// Who a handed-out session id was given to, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handout {
    pub(crate) client: String,
    pub(crate) route: String,
    pub(crate) user: String,
    /// Unix seconds; the id is refused from this second on.
    pub(crate) expires: u64,
    /// [`secret_tag`] of the client's secret when the id was handed out.
    pub(crate) secret: [u8; SECRET_TAG_LEN],
}

pub(crate) const SECRET_TAG_LEN: usize = 8;

/// What an id keeps of the client's secret (its SHA-256): enough to tell a changed secret, and
/// nothing to guess it by (the id is sealed besides).
pub(crate) fn secret_tag(secret_sha256: &[u8; 32]) -> [u8; SECRET_TAG_LEN] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"sfproxy logins secret tag\0");
    context.update(secret_sha256);
    let digest = context.finish();
    let mut tag = [0u8; SECRET_TAG_LEN];
    tag.copy_from_slice(&digest.as_ref()[..SECRET_TAG_LEN]);
    tag
}

/// Why a presented session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsealed {
    /// Ours and intact, but past its expiry.
    Expired,
    /// Not one of ours, tampered with, or sealed under another key.
    Invalid,
}

/// The plaintext's layout version.
const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// `{org_id15}!{base64url(nonce || ciphertext || tag)}`, the org id prefix authenticated as
/// associated data. Err if the prefix is not alphanumeric, a string is longer than 255 bytes, or
/// the random number generator fails.
pub(crate) fn seal(key: &LoginsKey, org_id15: &str, handout: &Handout) -> Result<String, String> {
    if org_id15.is_empty() || !org_id15.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("the org id is not alphanumeric".to_owned());
    }
    let mut plain = Vec::with_capacity(
        1 + 8
            + SECRET_TAG_LEN
            + 3
            + handout.client.len()
            + handout.route.len()
            + handout.user.len()
            + TAG_LEN,
    );
    plain.push(VERSION);
    plain.extend_from_slice(&handout.expires.to_be_bytes());
    plain.extend_from_slice(&handout.secret);
    for (what, text) in [
        ("client", &handout.client),
        ("route", &handout.route),
        ("user", &handout.user),
    ] {
        let len =
            u8::try_from(text.len()).map_err(|_| format!("the {what} is longer than 255 bytes"))?;
        plain.push(len);
        plain.extend_from_slice(text.as_bytes());
    }
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| "the system random number generator failed".to_owned())?;
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(org_id15.as_bytes()),
            &mut plain,
        )
        .map_err(|_| "sealing the session id failed".to_owned())?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + plain.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&plain);
    Ok(format!("{org_id15}!{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// The handout a presented session id carries, if it is one of ours under `key` and not expired
/// at `now` (unix seconds). Never panics, whatever is presented.
pub(crate) fn open(key: &LoginsKey, presented: &str, now: u64) -> Result<Handout, Unsealed> {
    let (prefix, sealed) = presented.split_once('!').ok_or(Unsealed::Invalid)?;
    let mut bytes = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| Unsealed::Invalid)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(Unsealed::Invalid);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[..NONCE_LEN]);
    let plain = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(prefix.as_bytes()),
            &mut bytes[NONCE_LEN..],
        )
        .map_err(|_| Unsealed::Invalid)?;
    let handout = decode(plain).ok_or(Unsealed::Invalid)?;
    if now >= handout.expires {
        return Err(Unsealed::Expired);
    }
    Ok(handout)
}

/// The plaintext's fields; None if it is not in [`VERSION`]'s layout.
fn decode(plain: &[u8]) -> Option<Handout> {
    let (&version, rest) = plain.split_first()?;
    if version != VERSION {
        return None;
    }
    let (expires, rest) = rest.split_first_chunk::<8>()?;
    let (secret, mut rest) = rest.split_first_chunk::<SECRET_TAG_LEN>()?;
    let mut strings = [String::new(), String::new(), String::new()];
    for slot in &mut strings {
        let (&len, tail) = rest.split_first()?;
        let (text, tail) = tail.split_at_checked(usize::from(len))?;
        *slot = std::str::from_utf8(text).ok()?.to_owned();
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    let [client, route, user] = strings;
    Some(Handout {
        client,
        route,
        user,
        expires: u64::from_be_bytes(*expires),
        secret: *secret,
    })
}

/// The 15-character form of a 15- or 18-character org id (anything shorter as it is).
pub(crate) fn org_id15(org_id: &str) -> &str {
    org_id.get(..15).unwrap_or(org_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> LoginsKey {
        LoginsKey::from_bytes(&[byte; 32])
    }

    fn handout() -> Handout {
        Handout {
            client: "erp".to_owned(),
            route: "prod".to_owned(),
            user: "erp@acme.com".to_owned(),
            expires: 2_000_000_000,
            secret: secret_tag(&[7; 32]),
        }
    }

    const ORG: &str = "00D000000000001";

    #[test]
    fn opens_what_it_sealed() {
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        assert!(sealed.starts_with("00D000000000001!"));
        assert_eq!(open(&key(1), &sealed, 1_999_999_999), Ok(handout()));
    }

    #[test]
    fn seals_differently_each_time() {
        let a = seal(&key(1), ORG, &handout()).unwrap();
        let b = seal(&key(1), ORG, &handout()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn output_is_printable_ascii_without_spaces() {
        let long = Handout {
            client: "c".repeat(255),
            route: "é".repeat(127),
            user: "<&\"'> \n".to_owned(),
            expires: u64::MAX,
            secret: [0xff; SECRET_TAG_LEN],
        };
        for handout in [handout(), long.clone()] {
            let sealed = seal(&key(1), ORG, &handout).unwrap();
            assert!(sealed.bytes().all(|b| b.is_ascii_graphic()), "{sealed}");
            assert_eq!(open(&key(1), &sealed, 0), Ok(handout));
        }
    }

    #[test]
    fn refuses_strings_over_255_bytes_and_odd_prefixes() {
        let mut long = handout();
        long.user = "u".repeat(256);
        assert!(seal(&key(1), ORG, &long).is_err());
        assert!(seal(&key(1), "00D!x", &handout()).is_err());
        assert!(seal(&key(1), "", &handout()).is_err());
    }

    #[test]
    fn expires_at_its_second_after_authentication() {
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        assert_eq!(
            open(&key(1), &sealed, 2_000_000_000),
            Err(Unsealed::Expired)
        );
        assert_eq!(open(&key(1), &sealed, u64::MAX), Err(Unsealed::Expired));
        // Another key's expired id is Invalid, not Expired: nothing is told before authentication.
        assert_eq!(open(&key(2), &sealed, u64::MAX), Err(Unsealed::Invalid));
    }

    #[test]
    fn refuses_another_key() {
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        assert_eq!(open(&key(2), &sealed, 0), Err(Unsealed::Invalid));
    }

    #[test]
    fn refuses_a_swapped_prefix() {
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        let (_, rest) = sealed.split_once('!').unwrap();
        for prefix in [
            "00D000000000002",
            "00D000000000001EAA",
            "",
            "00D00000000000",
        ] {
            let swapped = format!("{prefix}!{rest}");
            assert_eq!(
                open(&key(1), &swapped, 0),
                Err(Unsealed::Invalid),
                "{prefix}"
            );
        }
    }

    #[test]
    fn refuses_any_tampered_byte() {
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        let bytes = sealed.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'z', b'0', b'-', b'_', b'!', b'=', b' '] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut tampered = bytes.to_vec();
                tampered[i] = replacement;
                let tampered = String::from_utf8(tampered).unwrap();
                assert_eq!(
                    open(&key(1), &tampered, 0),
                    Err(Unsealed::Invalid),
                    "{tampered}"
                );
            }
        }
        // Truncated or extended.
        for end in 0..bytes.len() {
            assert_eq!(open(&key(1), &sealed[..end], 0), Err(Unsealed::Invalid));
        }
        for extra in ["A", "AA", "AAAA", "="] {
            let longer = format!("{sealed}{extra}");
            assert_eq!(open(&key(1), &longer, 0), Err(Unsealed::Invalid));
        }
    }

    #[test]
    fn refuses_a_well_sealed_foreign_layout() {
        // Authentic under the key but not our layout: a wrong version, trailing bytes, short.
        for plain in [
            vec![2u8; 20],
            vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9],
            vec![VERSION, 0, 0],
            vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0xff, 0xfe],
        ] {
            let mut in_out = plain;
            let nonce = [7u8; NONCE_LEN];
            key(1)
                .aead()
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(ORG.as_bytes()),
                    &mut in_out,
                )
                .unwrap();
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&in_out);
            let presented = format!("{ORG}!{}", URL_SAFE_NO_PAD.encode(sealed));
            assert_eq!(open(&key(1), &presented, 0), Err(Unsealed::Invalid));
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        // xorshift: reproducible noise without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!=+/ é\0"
                .chars()
                .collect();
        let sealed = seal(&key(1), ORG, &handout()).unwrap();
        for round in 0..5000 {
            let presented: String = if round % 2 == 0 {
                let len = (next() % 120) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let mut chars: Vec<char> = sealed.chars().collect();
                for _ in 0..=(next() % 4) {
                    let at = (next() % chars.len() as u64) as usize;
                    chars[at] = alphabet[(next() % alphabet.len() as u64) as usize];
                }
                chars.into_iter().collect()
            };
            if presented == sealed {
                continue;
            }
            assert_eq!(
                open(&key(1), &presented, 0),
                Err(Unsealed::Invalid),
                "{presented}"
            );
        }
    }

    #[test]
    fn org_id15_takes_the_first_15() {
        assert_eq!(org_id15("00D000000000001EAA"), "00D000000000001");
        assert_eq!(org_id15("00D000000000001"), "00D000000000001");
        assert_eq!(org_id15("00D"), "00D");
        assert_eq!(org_id15("ééééééééé"), "ééééééééé");
    }
}
