//! End-to-end tests of the stand-in org over real TLS, with a client that trusts only the
//! throwaway CA, so they also prove the generated certificates work for h2 and HTTP/1.1.
//! This file holds the shared fixture; the tests live in `token_tests`, `api_tests`,
//! `soap_tests` and `soap_data_tests`.

mod api_tests;
mod legacy_tests;
mod soap_data_tests;
mod soap_tests;
mod token_tests;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::*;
use crate::pki;

const CONSUMER_KEY: &str = "3MVG9mock.consumer.key";
const AUDIENCE: &str = "https://login.salesforce.com";
const USER: &str = "integration@example.com";

type TestClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Fixture {
    org: MockOrg,
    app: pki::KeyAndCert,
    ca_pem: String,
    client: TestClient,
}

fn client(ca_pem: &str, http2: bool) -> TestClient {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.build()
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn fixture() -> Fixture {
    let app = pki::connected_app_cert("sfproxy test app", 30).unwrap();
    let (ca, server) = pki::tls_ca_and_server(&["localhost", "127.0.0.1"]).unwrap();
    let user = |name: &str, approved, rest_api| MockUser {
        username: name.into(),
        approved,
        rest_api,
    };
    let org = MockOrg::start(MockOrgConfig {
        consumer_key: CONSUMER_KEY.into(),
        certificate_pem: app.cert_pem.clone(),
        users: vec![
            user(USER, true, true),
            user("unapproved@example.com", false, true),
            user("norest@example.com", true, false),
        ],
        audience: AUDIENCE.into(),
        tls: server,
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    Fixture {
        org,
        app,
        client: client(&ca.cert_pem, true),
        ca_pem: ca.cert_pem,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(key_pem: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({"iss": CONSUMER_KEY, "sub": sub, "aud": AUDIENCE, "exp": now() + 150})
}

async fn send(
    f: &Fixture,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(u16, HeaderMap, Bytes), hyper_util::client::legacy::Error> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", f.org.url()));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = f
        .client
        .request(req.body(Full::new(body.into())).unwrap())
        .await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

async fn token_request(f: &Fixture, assertion: &str) -> (u16, Value) {
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, body) = send(f, Method::POST, "/services/oauth2/token", &ct, form)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn login(f: &Fixture, sub: &str) -> String {
    let (status, body) = token_request(f, &sign(&f.app.key_pem, &claims(sub))).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(f: &Fixture, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Bytes) {
    send(f, Method::GET, path, headers, Bytes::new())
        .await
        .unwrap()
}
