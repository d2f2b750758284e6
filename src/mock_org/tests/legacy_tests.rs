//! What a caller that logs in the legacy way needs, and what must never reach Salesforce: SOAP
//! `login` and password / client-credentials grants counted and refused; the REST records
//! simple-salesforce reads and writes after its login (query, create, get, update, delete); the
//! session each request carried.

use super::soap_tests::{PARTNER, U, envelope, soap};
use super::*;

/// simple-salesforce's own login envelope (security token given), byte for byte but the values.
const SIMPLE_SALESFORCE_LOGIN: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope
        xmlns:xsd="http://www.w3.org/2001/XMLSchema"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:urn="urn:partner.soap.sforce.com">
    <env:Header>
        <urn:CallOptions>
            <urn:client>simple-salesforce</urn:client>
            <urn:defaultNamespace>sf</urn:defaultNamespace>
        </urn:CallOptions>
    </env:Header>
    <env:Body>
        <n1:login xmlns:n1="urn:partner.soap.sforce.com">
            <n1:username>integration@example.com</n1:username>
            <n1:password>secret</n1:password>
        </n1:login>
    </env:Body>
</env:Envelope>"#;

#[tokio::test]
async fn soap_logins_are_counted_and_refused() {
    let f = fixture().await;
    let (status, _, body) = soap(
        &f,
        U,
        &[("soapaction", "login")],
        SIMPLE_SALESFORCE_LOGIN.to_owned(),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:PROXY_TEST_FAILURE</faultcode>"),
        "{body}"
    );
    assert!(body.contains("sf:LoginFault"), "{body}");
    assert!(!body.contains("<sessionId>"), "{body}");
    // Enterprise, with a session header or not, and on the org-id path: all counted.
    let enterprise = envelope(
        "urn:enterprise.soap.sforce.com",
        None,
        "",
        "<urn:login><urn:username>u</urn:username><urn:password>p</urn:password></urn:login>",
    );
    let (status, _, _) = soap(&f, "/services/Soap/c/61.0/00D000000000001", &[], enterprise).await;
    assert_eq!(status, 500);
    let token = login(&f, USER).await;
    let partner = envelope(PARTNER, Some(&token), "", "<urn:login/>");
    let (status, _, body) = soap(&f, U, &[], partner).await;
    assert_eq!(status, 500);
    assert!(body.contains("PROXY_TEST_FAILURE"), "{body}");
    assert_eq!(f.org.legacy_logins(), 3);
    assert_eq!(
        f.org.legacy_login_kinds(),
        ["soap:partner", "soap:enterprise", "soap:partner"]
    );
    // Recorded like any call; one session was issued, by the JWT login.
    assert_eq!(f.org.soap_calls()[0].operation, "login");
    assert_eq!(f.org.issued_sessions(), std::slice::from_ref(&token));
    assert_eq!(f.org.requests()[2].session.as_deref(), Some(token.as_str()));
    assert_eq!(f.org.requests()[0].session, None);
    // Other operations are not legacy logins.
    let info = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    let (status, _, _) = soap(&f, U, &[], info).await;
    assert_eq!(status, 200);
    assert_eq!(f.org.legacy_logins(), 3);
}

#[tokio::test]
async fn password_and_client_credentials_grants_are_counted_and_refused() {
    let f = fixture().await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    // An injected failure is not used up by a legacy login.
    f.org.fail_next_token_requests(
        1,
        TokenFailure::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: "injected".into(),
        },
    );
    for body in [
        "grant_type=password&client_id=k&client_secret=s&username=u&password=p",
        "grant_type=client_credentials",
    ] {
        let (status, _, answer) = send(&f, Method::POST, "/services/oauth2/token", &form, body)
            .await
            .unwrap();
        assert_eq!(status, 400);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["error"], "invalid_grant", "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("must never forward a legacy login"),
            "{answer}"
        );
    }
    assert_eq!(f.org.legacy_logins(), 2);
    assert_eq!(
        f.org.legacy_login_kinds(),
        ["oauth:password", "oauth:client_credentials"]
    );
    assert_eq!(f.org.token_requests(), 2);
    assert!(f.org.issued_sessions().is_empty());
    let (status, body) = token_request(&f, &sign(&f.app.key_pem, &claims(USER))).await;
    assert_eq!(
        (status, body["error_description"].clone()),
        (400, json!("injected"))
    );
    login(&f, USER).await;
    assert_eq!(
        f.org.legacy_logins(),
        2,
        "a JWT bearer login is no legacy login"
    );
    assert_eq!(f.org.issued_sessions().len(), 1);
}

/// A REST call as simple-salesforce makes it: JSON, `Authorization: Bearer`, `X-PrettyPrint`.
async fn rest(
    f: &Fixture,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, HeaderMap, Value) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("x-prettyprint", "1"),
    ];
    let (status, headers, body) = send(f, method, path, &headers, body.to_owned())
        .await
        .unwrap();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, headers, value)
}

#[tokio::test]
async fn rest_records_are_created_read_updated_queried_and_deleted() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let v = "/services/data/v59.0";
    let query = format!("{v}/query/?q=SELECT+Id%2C+Name+FROM+Account");
    let (status, _, body) = rest(&f, Method::GET, &query, &token, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], 0, "the REST data starts empty");

    let (status, _, created) = rest(
        &f,
        Method::POST,
        &format!("{v}/sobjects/Account/"),
        &token,
        r#"{"Name": "sfproxy test", "Industry": "Testing"}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!((id.len(), &id[..3]), (18, "001"));
    let url = format!("{v}/sobjects/Account/{id}");

    let (status, _, record) = rest(&f, Method::GET, &url, &token, "").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["Id"], id.as_str());
    assert_eq!(record["Name"], "sfproxy test");
    assert_eq!(record["Industry"], "Testing");
    assert_eq!(record["attributes"]["type"], "Account");
    assert_eq!(
        record["attributes"]["url"],
        format!("/services/data/v59.0/sobjects/Account/{id}")
    );
    // The 15-character form of the id finds it too.
    let (status, _, _) = rest(&f, Method::GET, &url[..url.len() - 3], &token, "").await;
    assert_eq!(status, 200);

    let (status, _, body) = rest(&f, Method::GET, &query, &token, "").await;
    assert_eq!(status, 200);
    assert_eq!(body["totalSize"], 1, "{body}");
    assert_eq!(
        body["records"][0],
        json!({
            "attributes": {"type": "Account", "url": format!("/services/data/v59.0/sobjects/Account/{id}")},
            "Id": id,
            "Name": "sfproxy test",
        })
    );
    let other = format!("{v}/query?q=SELECT+Id+FROM+Contact");
    let (_, _, body) = rest(&f, Method::GET, &other, &token, "").await;
    assert_eq!(body["totalSize"], 0);
    let bad = format!("{v}/query?q=SELECT+Id+FROM+Nope");
    let (status, _, body) = rest(&f, Method::GET, &bad, &token, "").await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_TYPE"))
    );

    let (status, headers, body) = rest(
        &f,
        Method::PATCH,
        &url,
        &token,
        r#"{"Name": "sfproxy test, renamed", "Id": "001000000000000AAA"}"#,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null);
    assert!(headers.get("content-type").is_none());
    let held = f.org.rest_record(&id).unwrap();
    assert_eq!(held["Name"], "sfproxy test, renamed");
    assert_eq!(held["Industry"], "Testing");
    assert_eq!(held["Id"], id.as_str(), "the Id is not writable");
    let (status, _, body) = rest(&f, Method::PATCH, &url, &token, "[1]").await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("JSON_PARSER_ERROR"))
    );

    let (status, _, body) = rest(&f, Method::DELETE, &url, &token, "").await;
    assert_eq!(status, 204, "{body}");
    assert!(f.org.rest_record(&id).is_none());
    let not_found =
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]);
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let (status, _, body) = rest(&f, method.clone(), &url, &token, "{}").await;
        assert_eq!((status, &body), (404, &not_found), "{method} after delete");
    }
    // Another object's path does not reach an Account.
    let (_, _, created) = rest(
        &f,
        Method::POST,
        &format!("{v}/sobjects/Account"),
        &token,
        "{}",
    )
    .await;
    let contact = format!("{v}/sobjects/Contact/{}", created["id"].as_str().unwrap());
    let (status, _, _) = rest(&f, Method::GET, &contact, &token, "").await;
    assert_eq!(status, 404);
    let (status, _, body) = rest(&f, Method::PUT, &url, &token, "{}").await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (405, json!("METHOD_NOT_ALLOWED"))
    );

    // Every call was recorded with the session it carried: the one the org issued.
    let seen = f.org.requests();
    assert!(seen.len() > 10);
    assert!(
        seen.iter()
            .all(|r| r.session.as_deref() == Some(token.as_str()))
    );
    assert_eq!(f.org.issued_sessions(), [token]);
    assert_eq!(f.org.legacy_logins(), 0);
}

#[tokio::test]
async fn rest_calls_record_their_session_or_none() {
    let f = fixture().await;
    let (status, _, _) = get(&f, "/services/data/v59.0/limits", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(
        &f,
        "/services/data/v59.0/limits",
        &[("authorization", "Bearer 00Dbogus!x")],
    )
    .await;
    assert_eq!(status, 401);
    let token = login(&f, USER).await;
    let (status, _, _) = get(
        &f,
        "/services/async/59.0/job",
        &[("x-sfdc-session", &format!(" {token} "))],
    )
    .await;
    assert_eq!(status, 200);
    let sessions: Vec<Option<String>> = f.org.requests().into_iter().map(|r| r.session).collect();
    assert_eq!(sessions, [None, Some("00Dbogus!x".into()), Some(token)]);
}
