//! REST, Bulk 1.0 and echo tests: session checks, Salesforce's error shapes, streaming bodies.

use super::*;

#[tokio::test]
async fn limits_over_tls_then_401_after_expiry() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let auth = format!("Bearer {token}");
    let (status, headers, body) = get(
        &f,
        "/services/data/v62.0/limits",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200);
    let limits: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(limits["DailyApiRequests"]["Max"], 15000);
    assert_eq!(headers["sforce-limit-info"], "api-usage=1/15000");
    let (status, headers, _) = get(&f, "/services/data/", &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["sforce-limit-info"], "api-usage=2/15000");

    f.org.expire_sessions();
    assert_eq!(f.org.live_sessions(), 0);
    let (status, headers, body) = get(
        &f,
        "/services/data/v62.0/limits",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(headers.get("sforce-limit-info").is_none());
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let xml = [
        ("authorization", auth.as_str()),
        ("accept", "application/xml"),
    ];
    let (status, _, body) = get(&f, "/services/data/v62.0/limits", &xml).await;
    assert_eq!(status, 401);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("<errorCode>INVALID_SESSION_ID</errorCode>")
    );
    let (status, _, _) = get(&f, "/services/data/v62.0/limits", &[]).await;
    assert_eq!(status, 401);

    let seen = f.org.requests();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.iter().map(|r| r.session_valid).collect::<Vec<_>>(),
        [true, true, false, false, false]
    );
    assert_eq!(seen[0].path_and_query, "/services/data/v62.0/limits");
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && *v == auth)
    );
}

#[tokio::test]
async fn rest_resources_bulk_and_non_api_users() {
    let f = fixture().await;
    let auth = format!("Bearer {}", login(&f, USER).await);
    let h = [("authorization", auth.as_str())];
    let (status, _, body) = get(
        &f,
        "/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
        &h,
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["totalSize"].clone(), body["done"].clone()),
        (json!(0), json!(true))
    );
    assert_eq!(body["query"], "SELECT Id FROM Account");
    let (status, _, _) = get(&f, "/services/data/v62.0/sobjects/Account", &h).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(
        &f,
        Method::POST,
        "/services/data/v62.0/sobjects/Account",
        &h,
        r#"{"Name":"x"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["success"],
        true
    );
    let (status, _, body) = get(&f, "/services/data/v62.0/nothing", &h).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()[0]["errorCode"],
        "NOT_FOUND"
    );

    // Bulk 1.0 only honours X-SFDC-Session, and answers a dead one with 400.
    let token = auth.trim_start_matches("Bearer ");
    let (status, _, body) = get(&f, "/services/async/62.0/job", &h).await;
    assert_eq!(status, 400);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("<exceptionCode>InvalidSessionId</exceptionCode>")
    );
    let (status, _, _) = get(&f, "/services/async/62.0/job", &[("x-sfdc-session", token)]).await;
    assert_eq!(status, 200);

    let norest = format!("Bearer {}", login(&f, "norest@example.com").await);
    let (status, _, body) = get(
        &f,
        "/services/data/v62.0/limits",
        &[("authorization", &norest)],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()[0]["message"],
        "This session is not valid for use with the REST API"
    );
    assert!(f.org.requests().last().unwrap().session_valid);
}

#[tokio::test]
async fn echo_streams_and_hashes_bodies_over_http1_too() {
    let mut f = fixture().await;
    let auth = format!("Bearer {}", login(&f, USER).await);
    let big = vec![b'x'; 3 * 1024 * 1024];
    let expected: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &big)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let h = [("authorization", auth.as_str()), ("x-custom", "1")];
    let (status, _, body) = send(&f, Method::PUT, "/services/apexrest/echo?a=b", &h, big)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["bodyLen"], 3 * 1024 * 1024);
    assert_eq!(body["bodySha256"], expected);
    assert_eq!(body["body"], Value::Null);
    assert_eq!(
        (body["method"].clone(), body["query"].clone()),
        (json!("PUT"), json!("a=b"))
    );
    assert_eq!(body["headers"]["x-custom"], "1");

    f.client = client(&f.ca_pem, false);
    let (status, _, body) = send(&f, Method::POST, "/echo/deeper", &h, "hello")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["body"].clone(), body["path"].clone()),
        (json!("hello"), json!("/echo/deeper"))
    );
    assert_eq!(f.org.requests().last().unwrap().body_len, 5);
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http1_still_works() {
    let mut f = fixture().await;
    for (client, version) in [
        (&f.client, http::Version::HTTP_2),
        (&client(&f.ca_pem, false), http::Version::HTTP_11),
    ] {
        let req = Request::get(format!("{}/services/data/", f.org.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 401);
    }
    // Also over the IP literal, which the certificate covers as an iPAddress SAN.
    let req = Request::get(format!("https://127.0.0.1:{}/echo", f.org.addr().port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(f.client.request(req).await.unwrap().status(), 401);
    let addr = f.org.addr();
    f.org.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
