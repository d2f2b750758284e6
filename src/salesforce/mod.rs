//! All of Salesforce's wire knowledge: its domains and login audiences, the login (the JWT assertion, the token endpoint, and the
//! cache of sessions that keeps the proxy far below Salesforce's 3,600 logins per user per hour,
//! and the minting of new ones behind its login guard), where each API reads the session, the answers that say it expired,
//! the `Sforce-Limit-Info` header, and the hints for refused logins. The layers ask; only this
//! module knows how Salesforce says it.

pub(crate) mod assertion;
pub(crate) mod cache;
pub(crate) mod credential;
pub(crate) mod domains;
pub(crate) mod expiry;
pub(crate) mod guard;
pub(crate) mod hints;
pub(crate) mod limit_info;
pub(crate) mod login;
pub(crate) mod minting;
pub(crate) mod soap;
pub(crate) mod token;

/// A stand-in org with one approved user `u` (consumer key `ck`), its org, and a token client
/// trusting the stand-in's TLS: what the unit tests of sessions log in against.
#[cfg(test)]
pub(crate) mod fixture {
    use std::sync::Arc;

    use rustls_pki_types::{CertificateDer, pem::PemObject};

    use crate::{
        config::Org,
        mock_org::{MockOrg, MockOrgConfig, MockUser},
        pki,
        salesforce::token::TokenClient,
    };

    pub(crate) async fn standin() -> (MockOrg, TokenClient, Arc<Org>) {
        let app = pki::connected_app_cert("t", 1).unwrap();
        let (ca, tls) = pki::tls_ca_and_server(&["localhost", "127.0.0.1"]).unwrap();
        let mock = MockOrg::start(MockOrgConfig {
            consumer_key: "ck".into(),
            certificate_pem: app.cert_pem.clone(),
            users: vec![MockUser {
                username: "u".into(),
                approved: true,
                rest_api: true,
            }],
            audience: "https://login.salesforce.com".into(),
            tls,
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tokens = TokenClient::new(crate::upstream::client::pooled_client(tls));
        let org = Arc::new(Org::for_tests(&mock.url(), "ck", &app.key_pem));
        (mock, tokens, org)
    }
}
