//! The JWT bearer assertion (RFC 7523) Salesforce exchanges for a session.
//!
//! Claims are exactly what Salesforce documents: `iss` the consumer key, `sub` the username,
//! `aud` the login host, `exp` a short time ahead in UTC seconds. `iat` is accepted and helps
//! when reading Salesforce's login history; nothing else is sent.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use crate::config::Org;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Claims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
}

/// A signed assertion. It can be exchanged for a session for a few minutes, so it is as secret as
/// a token: `Debug` hides it and it is never logged.
pub(crate) struct Assertion(String);

impl Assertion {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Assertion(<redacted>)")
    }
}

pub(crate) fn claims<'a>(org: &'a Org, user: &'a str, now: SystemTime) -> Claims<'a> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Claims {
        iss: &org.client_id,
        sub: user,
        aud: &org.audience,
        exp: (now + org.assertion_ttl).as_secs(),
        iat: now.as_secs(),
    }
}

/// Signs the claims with the org's key, RS256 (`{"typ":"JWT","alg":"RS256"}`, no `kid`).
pub(crate) fn sign(org: &Org, user: &str) -> Result<Assertion, jsonwebtoken::errors::Error> {
    let claims = claims(org, user, SystemTime::now());
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &org.key.0).map(Assertion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Org;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn signed_assertion_verifies_and_carries_salesforce_claims() {
        let pair = crate::pki::connected_app_cert("test", 1).unwrap();
        let org = Org {
            assertion_ttl: Duration::from_secs(120),
            ..Org::for_tests("https://login.salesforce.com", "3MVG9", &pair.key_pem)
        };
        let jwt = sign(&org, "u@acme.com").unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert!(header.kid.is_none());

        let key = DecodingKey::from_rsa_pem(pair.cert_pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["https://login.salesforce.com"]);
        validation.set_issuer(&["3MVG9"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(jwt.expose(), &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(data["sub"], "u@acme.com");
        let ttl = data["exp"].as_u64().unwrap() - data["iat"].as_u64().unwrap();
        assert_eq!(ttl, 120);
        assert!(!format!("{jwt:?}").contains(jwt.expose()));
    }
}
