//! The interception CA: made by `sfproxy keygen --ca`, loaded from `[proxy.intercept]`, and the
//! leaf certificates it issues for the Salesforce hosts callers tunnel to.
//!
//! The CA carries a name constraint permitting only `salesforce.com`, `force.com` and the suffixes
//! the operator adds, and excluding every IP address: callers trust it, so a leaked CA key must
//! not be able to impersonate anything else. Leaves are short-lived and made on demand.

use std::{fmt, sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::{crypto::aws_lc_rs::sign::any_supported_type, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

use crate::pki::{KeyAndCert, PkiError, set_validity, subject};

/// Name suffixes every interception CA permits.
pub(crate) const PERMITTED: &[&str] = &["salesforce.com", "force.com"];
/// Leaves live a week and are renewed a day before they expire.
const LEAF_DAYS: u32 = 7;
pub(crate) const LEAF_LIFETIME: Duration = Duration::from_secs(LEAF_DAYS as u64 * 86_400);
pub(crate) const LEAF_RENEW_BEFORE: Duration = Duration::from_secs(86_400);

/// Makes an interception CA (ECDSA P-256) constrained to [`PERMITTED`] plus `permit`.
pub fn generate(name: &str, days: u32, permit: &[String]) -> Result<KeyAndCert, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        PkiError::KeyGeneration {
            what: "interception CA",
            source,
        }
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut permitted: Vec<GeneralSubtree> = PERMITTED
        .iter()
        .map(|s| GeneralSubtree::DnsName((*s).to_owned()))
        .collect();
    for suffix in permit {
        let suffix = suffix
            .trim()
            .trim_start_matches("*.")
            .trim_start_matches('.');
        if suffix.is_empty() || suffix.contains(['/', ':', ' ']) {
            return Err(PkiError::Subject(format!("--permit {suffix:?}")));
        }
        permitted.push(GeneralSubtree::DnsName(suffix.to_owned()));
    }
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    set_validity(&mut params, days)?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::Certificate {
            what: "interception CA",
            source,
        })?;
    Ok(KeyAndCert {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// A loaded interception CA, ready to issue leaves. `Debug` never shows the key.
pub struct InterceptCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
}

impl fmt::Debug for InterceptCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InterceptCa(<key redacted>)")
    }
}

impl InterceptCa {
    /// Loads the CA and proves its key signs leaves that chain to its certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| format!("ca_key_file is not a usable private key ({e})"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| format!("ca_cert_file is not a certificate ({e})"))?;
        let ca_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("ca_cert_file is not PEM ({e})"))?;
        check_is_ca(&ca_der)?;
        let ca = Self { issuer, ca_der };
        let probe = ca
            .leaf("sfproxy-check.salesforce.com")
            .map_err(|e| format!("cannot issue certificates with this CA ({e})"))?;
        verify_chain(&ca.ca_der, &probe.cert[0], "sfproxy-check.salesforce.com").map_err(|e| {
            format!("certificates it issues do not verify against ca_cert_file ({e}): is ca_key_file its key, and is it a CA?")
        })?;
        Ok(ca)
    }

    /// The same certificate and the same key: leaves issued by one verify as the other's.
    pub(crate) fn same_ca(&self, other: &InterceptCa) -> bool {
        self.ca_der == other.ca_der
            && self.issuer.key().serialized_der() == other.issuer.key().serialized_der()
    }

    /// A fresh leaf for `host` (DNS name or IP literal), chained with the CA certificate.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, String> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_DAYS).map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = any_supported_type(&private).map_err(|e| e.to_string())?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            signing,
        )))
    }
}

/// Refuses a certificate that is not a CA: `CA:TRUE` basic constraints, and `keyCertSign` when
/// it has a key usage. Callers add it as a trust anchor, and trust anchors' own extensions are
/// not checked by every TLS stack (webpki ignores them): an end-entity certificate would work
/// with some callers and fail with others.
fn check_is_ca(der: &CertificateDer<'_>) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("ca_cert_file is not a certificate ({e})"))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| format!("ca_cert_file has malformed basic constraints ({e})"))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(
            "ca_cert_file is not a CA certificate (no basic constraints CA:TRUE); make \
             one with `sfproxy keygen --ca`"
                .into(),
        );
    }
    let usage = cert
        .key_usage()
        .map_err(|e| format!("ca_cert_file has a malformed key usage ({e})"))?;
    if usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(
            "ca_cert_file may not sign certificates (its key usage lacks keyCertSign); \
             make one with `sfproxy keygen --ca`"
                .into(),
        );
    }
    Ok(())
}

/// Checks that `leaf` chains to `ca` for `host`, as a caller's TLS client would.
fn verify_chain(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    host: &str,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name =
        rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        leaf,
        &[],
        &name,
        &[],
        rustls_pki_types::UnixTime::now(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_verify_inside_the_constraint_and_nothing_outside_does() {
        let made = generate("CN=sfproxy test CA", 30, &["example.net".to_owned()]).unwrap();
        let ca = InterceptCa::from_pem(&made.cert_pem, &made.key_pem).unwrap();
        for host in [
            "acme.my.salesforce.com",
            "acme.lightning.force.com",
            "api.example.net",
        ] {
            let leaf = ca.leaf(host).unwrap();
            verify_chain(&ca.ca_der, &leaf.cert[0], host).unwrap();
        }
        // A leaked CA key still cannot vouch for anything else.
        for host in ["login.microsoftonline.com", "salesforce.com.evil.example"] {
            let leaf = ca.leaf(host).unwrap();
            assert!(
                verify_chain(&ca.ca_der, &leaf.cert[0], host).is_err(),
                "{host}"
            );
        }
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_certificate_that_is_not_a_ca_is_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = |params: CertificateParams| params.self_signed(&key).unwrap().pem();
        let mut leaf = CertificateParams::new(vec!["x.salesforce.com".to_owned()]).unwrap();
        leaf.is_ca = IsCa::ExplicitNoCa;
        let err = InterceptCa::from_pem(&pem(leaf.clone()), &key.serialize_pem()).unwrap_err();
        assert!(err.contains("CA:TRUE"), "{err}");
        leaf.is_ca = IsCa::NoCa;
        let err = InterceptCa::from_pem(&pem(leaf), &key.serialize_pem()).unwrap_err();
        assert!(err.contains("CA:TRUE"), "{err}");

        let mut no_sign = CertificateParams::default();
        no_sign.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        no_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let err = InterceptCa::from_pem(&pem(no_sign), &key.serialize_pem()).unwrap_err();
        assert!(err.contains("keyCertSign"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let made = generate("CN=a", 30, &[]).unwrap();
        let other = generate("CN=b", 30, &[]).unwrap();
        let err = InterceptCa::from_pem(&made.cert_pem, &other.key_pem).unwrap_err();
        assert!(err.contains("ca_key_file"), "{err}");
    }
}
