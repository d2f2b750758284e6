//! Key and certificate generation for `sfproxy demo`, `sfproxy keygen` and the tests.
//!
//! A Salesforce connected app that uses the JWT bearer flow needs an RSA key whose self-signed
//! X.509 certificate is uploaded under "Use digital signatures"; the stand-in org and the demo
//! also need a throwaway TLS CA and server certificate so that the proxy talks real HTTPS
//! without trusting anything beyond what it was told to. Everything is generated with rcgen on
//! the aws-lc-rs backend, the same crypto provider the rest of the crate uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A private key (PKCS#8 PEM, label "PRIVATE KEY") and its certificate (PEM).
#[derive(Clone)]
pub struct KeyAndCert {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for KeyAndCert {
    // The key must never end up in logs or panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndCert")
            .field("key_pem", &"<redacted>")
            .field("cert_pem", &self.cert_pem)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a {what} key: {source}")]
    KeyGeneration {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("building the {what} certificate: {source}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("validity of {days} days is out of range (1..={MAX_DAYS})")]
    InvalidValidity { days: u32 },
    #[error("a TLS server certificate needs at least one DNS name or IP address")]
    NoNames,
    #[error("{0:?} is not a subject part: use CN=, O=, OU=, L=, ST= or C=")]
    Subject(String),
}

/// A century: long enough for any real use, short enough to stay inside X.509 dates.
const MAX_DAYS: u32 = 36_500;

/// Certificates start an hour in the past so a peer whose clock lags a little accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

/// TLS certificates for the demo and tests: a week is plenty and keeps leaks harmless.
const TLS_DAYS: u32 = 7;

/// The certificate subject: `"CN=sfproxy acme, O=Acme"` (keys CN, O, OU, L, ST, C), or a bare
/// common name.
pub fn subject(text: &str) -> Result<rcgen::DistinguishedName, PkiError> {
    let mut name = rcgen::DistinguishedName::new();
    if !text.contains('=') {
        name.push(DnType::CommonName, text.trim());
        return Ok(name);
    }
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || PkiError::Subject(part.to_owned());
        let (key, value) = part.split_once('=').ok_or_else(bad)?;
        let kind = match key.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "C" => DnType::CountryName,
            _ => return Err(bad()),
        };
        name.push(kind, value.trim());
    }
    Ok(name)
}

/// RSA-2048 key and a self-signed X.509 certificate for a Salesforce connected app's "Use digital
/// signatures". `name` is a subject as [`subject`] reads it.
pub fn connected_app_cert(name: &str, days: u32) -> Result<KeyAndCert, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(|source| {
        PkiError::KeyGeneration {
            what: "connected app RSA",
            source,
        }
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name)?;
    set_validity(&mut params, days)?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::Certificate {
            what: "connected app",
            source,
        })?;
    Ok(KeyAndCert {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// A throwaway CA plus a TLS server certificate (ECDSA P-256) signed by it, valid for the given
/// DNS names and IP addresses (e.g. `["localhost", "127.0.0.1"]`). Returns `(ca, server)`, where
/// `ca.cert_pem` is what a client must trust and `server.cert_pem` holds the leaf only.
pub fn tls_ca_and_server(names: &[&str]) -> Result<(KeyAndCert, KeyAndCert), PkiError> {
    if names.is_empty() {
        return Err(PkiError::NoNames);
    }
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        PkiError::KeyGeneration {
            what: "CA ECDSA",
            source,
        }
    })?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sfproxy throwaway CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca_params, TLS_DAYS)?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|source| PkiError::Certificate { what: "CA", source })?;

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        PkiError::KeyGeneration {
            what: "TLS server ECDSA",
            source,
        }
    })?;
    let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    // CertificateParams::new puts IP literals in iPAddress SANs, which is what rustls checks.
    let mut server_params =
        CertificateParams::new(owned).map_err(|source| PkiError::Certificate {
            what: "TLS server",
            source,
        })?;
    server_params.distinguished_name = rcgen::DistinguishedName::new();
    server_params
        .distinguished_name
        .push(DnType::CommonName, names[0]);
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    set_validity(&mut server_params, TLS_DAYS)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|source| PkiError::Certificate {
            what: "TLS server",
            source,
        })?;

    Ok((
        KeyAndCert {
            key_pem: ca_key.serialize_pem(),
            cert_pem: ca_cert.pem(),
        },
        KeyAndCert {
            key_pem: server_key.serialize_pem(),
            cert_pem: server_cert.pem(),
        },
    ))
}

/// Valid from an hour ago (for peers whose clocks lag) for `days`.
pub(crate) fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    if days == 0 || days > MAX_DAYS {
        return Err(PkiError::InvalidValidity { days });
    }
    // rcgen's dates are `time` types; starting from its epoch helper and adding std durations
    // avoids a direct dependency on the `time` crate.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(BACKDATE);
    let not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = not_before;
    params.not_after = not_before + BACKDATE + Duration::from_secs(u64::from(days) * 86_400);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    #[test]
    fn connected_app_key_is_pkcs8_rsa_and_cert_parses() {
        let kc = connected_app_cert("sfproxy test", 30).unwrap();
        assert!(
            kc.key_pem
                .starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----"))
        );
        assert!(kc.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let certs: Vec<_> = CertificateDer::pem_slice_iter(kc.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 1);
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(kc.key_pem.as_bytes()).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        // jsonwebtoken must be able to sign with the key and verify with the certificate.
        jsonwebtoken::EncodingKey::from_rsa_pem(kc.key_pem.as_bytes()).unwrap();
        jsonwebtoken::DecodingKey::from_rsa_pem(kc.cert_pem.as_bytes()).unwrap();
        assert!(!format!("{kc:?}").contains("PRIVATE"));
    }

    #[test]
    fn validity_is_checked() {
        assert!(matches!(
            connected_app_cert("x", 0),
            Err(PkiError::InvalidValidity { days: 0 })
        ));
        assert!(matches!(tls_ca_and_server(&[]), Err(PkiError::NoNames)));
    }

    #[test]
    fn tls_server_chains_to_ca() {
        let (ca, server) = tls_ca_and_server(&["localhost", "127.0.0.1"]).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1"] {
            let sn = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &sn, &[], now)
                .unwrap();
        }
        let other = rustls_pki_types::ServerName::try_from("example.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], now)
                .is_err()
        );
        PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    }
}
