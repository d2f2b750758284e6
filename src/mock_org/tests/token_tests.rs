//! Token endpoint tests: the success shape, every documented rejection, injected failures.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn token_success_has_salesforce_fields_and_new_token_each_time() {
    let f = fixture().await;
    let (status, body) = token_request(&f, &sign(&f.app.key_pem, &claims(USER))).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("00D000000000001!AR"), "{token}");
    assert!(token.len() > 100);
    assert_eq!(body["scope"], "api");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["instance_url"], f.org.url());
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("{}/id/00D", f.org.url())), "{id}");
    assert!(body["issued_at"].as_str().unwrap().parse::<u64>().is_ok());
    assert!(!body["signature"].as_str().unwrap().is_empty());
    assert!(body.get("expires_in").is_none() && body.get("refresh_token").is_none());

    f.org
        .set_instance_url(Some("https://acme.my.salesforce.com".into()));
    let second = login(&f, USER).await;
    assert_ne!(second, token);
    let (_, body) = token_request(&f, &sign(&f.app.key_pem, &claims(USER))).await;
    assert_eq!(body["instance_url"], "https://acme.my.salesforce.com");
    assert_eq!(f.org.token_requests(), 3);
    assert_eq!(f.org.live_sessions(), 3);
}

#[tokio::test]
async fn token_rejections_match_salesforce() {
    let f = fixture().await;
    let other = pki::connected_app_cert("other app", 1).unwrap();
    let with = |k: &str, v: Value| {
        let mut c = claims(USER);
        c[k] = v;
        c
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(USER),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let cases = [
        (
            sign(
                &f.app.key_pem,
                &with("aud", json!("https://acme.my.salesforce.com")),
            ),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            sign(&f.app.key_pem, &with("iss", json!("wrong"))),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            sign(&f.app.key_pem, &with("exp", json!(now() - 5))),
            "invalid_grant",
            "expired authorization code",
        ),
        (
            sign(&f.app.key_pem, &with("exp", json!(now() * 1000))),
            "invalid_grant",
            "expired authorization code",
        ),
        (
            sign(&f.app.key_pem, &with("exp", json!(now() + 3600))),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            sign(&other.key_pem, &claims(USER)),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            sign(&f.app.key_pem, &claims("nobody@example.com")),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            sign(&f.app.key_pem, &claims("unapproved@example.com")),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (hs256, "invalid_grant", "invalid assertion"),
        ("not.a.jwt".to_owned(), "invalid_grant", "invalid assertion"),
    ];
    for (assertion, error, description) in &cases {
        let (status, body) = token_request(&f, assertion).await;
        assert_eq!(status, 400, "{description}: {body}");
        assert_eq!(body["error"], *error, "{body}");
        assert_eq!(body["error_description"], *description, "{body}");
    }
    let form = "grant_type=authorization_code&code=x";
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, body) = send(&f, Method::POST, "/services/oauth2/token", &ct, form)
        .await
        .unwrap();
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(body["error_description"], "grant type not supported");
    assert_eq!(f.org.token_requests(), cases.len() + 1);
    assert_eq!(f.org.live_sessions(), 0);
}

#[tokio::test]
async fn injected_token_failures_are_consumed_in_order() {
    let mut f = fixture().await;
    let assertion = sign(&f.app.key_pem, &claims(USER));
    f.org.fail_next_token_requests(
        2,
        TokenFailure::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: "ip restricted".into(),
        },
    );
    f.org.fail_next_token_requests(
        1,
        TokenFailure::Raw {
            status: 503,
            content_type: "text/html".into(),
            body: "<html>down</html>".into(),
        },
    );
    f.org.fail_next_token_requests(2, TokenFailure::Drop);
    f.org
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(300)));
    for _ in 0..2 {
        let (status, body) = token_request(&f, &assertion).await;
        assert_eq!(
            (status, body["error_description"].as_str()),
            (400, Some("ip restricted"))
        );
    }
    let (status, body) = token_request(&f, &assertion).await;
    assert_eq!((status, body), (503, Value::Null));
    let form =
        format!("grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion={assertion}");
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    // Dropped: an h2 stream reset first, then a closed HTTP/1.1 connection.
    for http2 in [true, false] {
        f.client = client(&f.ca_pem, http2);
        let sent = send(
            &f,
            Method::POST,
            "/services/oauth2/token",
            &ct,
            form.clone(),
        )
        .await;
        assert!(sent.is_err(), "http2={http2}");
    }
    let started = Instant::now();
    let (status, _) = token_request(&f, &assertion).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (status, _) = token_request(&f, &assertion).await;
    assert_eq!(status, 200);
    assert_eq!(f.org.token_requests(), 7);
    assert_eq!(f.org.live_sessions(), 2);
    f.org.shutdown().await;
}
