//! SOAP tests: where the session is read from, Salesforce's fault shapes, what is recorded, the
//! calls that would end the shared session. The data operations are in `soap_data_tests`.

use std::io::Write as _;

use base64::Engine as _;

use super::*;

pub(super) const PARTNER: &str = "urn:partner.soap.sforce.com";
pub(super) const U: &str = "/services/Soap/u/61.0";

/// An envelope whose `SessionHeader` (if any) is in `ns`, with `extra` headers and `body`.
pub(super) fn envelope(ns: &str, session: Option<&str>, extra: &str, body: &str) -> String {
    let session = session
        .map(|s| {
            format!("<SessionHeader xmlns=\"{ns}\"><sessionId>{s}</sessionId></SessionHeader>")
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:urn=\"{ns}\">\
         <soapenv:Header>{session}{extra}</soapenv:Header><soapenv:Body>{body}</soapenv:Body>\
         </soapenv:Envelope>"
    )
}

pub(super) async fn soap(
    f: &Fixture,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, HeaderMap, String) {
    let mut all = vec![
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", "\"\""),
    ];
    all.extend_from_slice(headers);
    let (status, headers, body) = send(f, Method::POST, path, &all, body).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The text of the first `<{name}>…</{name}>` in `xml`, unescaped.
pub(super) fn text_of(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap() + open.len();
    let end = start + xml[start..].find(&format!("</{name}>")).unwrap();
    quick_xml::escape::unescape(&xml[start..end])
        .unwrap()
        .into_owned()
}

const SESSION_FAULT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
    xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
    xmlns:sf=\"urn:fault.partner.soap.sforce.com\" \
    xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault>\
    <faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session \
    ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault \
    xsi:type=\"sf:UnexpectedErrorFault\"><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode>\
    <sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session\
    </sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body>\
    </soapenv:Envelope>";

#[tokio::test]
async fn get_user_info_reads_the_session_from_the_envelope_only() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let call = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    let bogus = [("authorization", "Bearer not-a-session")];
    let (status, headers, body) = soap(&f, U, &bogus, call.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/xml; charset=utf-8");
    assert!(body.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns=\"urn:partner.soap.sforce.com\" xmlns:sf=\"urn:sobject.partner.soap.sforce.com\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Header>\
         <LimitInfoHeader><limitInfo><current>1</current><limit>15000</limit>\
         <type>API REQUESTS</type></limitInfo></LimitInfoHeader></soapenv:Header>\
         <soapenv:Body><getUserInfoResponse><result><accessibilityMode>false"
    ));
    assert_eq!(text_of(&body, "userName"), USER);
    assert_eq!(text_of(&body, "userEmail"), USER);
    assert_eq!(text_of(&body, "organizationId"), f.org.org_id());
    assert_eq!(Some(text_of(&body, "userId")), f.org.user_id(USER));
    assert_eq!(text_of(&body, "userId").len(), 18);
    assert!(body.contains("<roleId xsi:nil=\"true\"/>"));
    assert!(body.contains("<sessionSecondsValid>7200</sessionSecondsValid>"));
    // The same ids on every call, also at the org-id form of the path; usage counts each call.
    let (status, _, again) = soap(&f, "/services/Soap/u/61.0/00D000000000001", &[], call).await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&again, "userId"), text_of(&body, "userId"));
    assert_eq!(text_of(&again, "current"), "2");
    assert_eq!(f.org.api_usage(), 2);

    // A live session in Authorization does not stand in for a SessionHeader.
    let auth = format!("Bearer {token}");
    let no_header = envelope(PARTNER, None, "", "<urn:getUserInfo/>");
    let (status, headers, body) = soap(&f, U, &[("authorization", &auth)], no_header).await;
    assert_eq!((status, body.as_str()), (500, SESSION_FAULT));
    assert_eq!(headers["content-type"], "text/xml; charset=utf-8");
    // Nor does a SessionHeader in another API's namespace.
    let enterprise = envelope("urn:enterprise.soap.sforce.com", Some(&token), "", "");
    let call = enterprise.replace(
        "<soapenv:Body>",
        "<soapenv:Body><getUserInfo xmlns=\"urn:partner.soap.sforce.com\"/>",
    );
    let (status, _, body) = soap(&f, U, &[], call).await;
    assert_eq!((status, body.as_str()), (500, SESSION_FAULT));
    let calls = f.org.soap_calls();
    assert_eq!(calls[2].session_id, None);
    assert_eq!(calls[3].session_id, None);
    assert_eq!(f.org.api_usage(), 2);
}

#[tokio::test]
async fn dead_sessions_get_salesforces_fault() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    f.org.expire_sessions();
    let call = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    let (status, _, body) = soap(&f, U, &[], call).await;
    assert_eq!(status, 500);
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let message = format!(
        "Invalid Session ID found in SessionHeader: Illegal Session. Session not found, missing \
         session hash: {}\nThis error usually occurs after a session expires or a user logs out. ",
        base64::engine::general_purpose::STANDARD.encode(hash.as_ref())
    );
    let rest = message
        .strip_prefix("Invalid Session ID found in SessionHeader: ")
        .unwrap();
    let expected = SESSION_FAULT
        .replace(
            "Illegal Session</faultstring>",
            &format!("{rest}</faultstring>"),
        )
        .replace(
            "Illegal Session</sf:exceptionMessage>",
            &format!("{rest}</sf:exceptionMessage>"),
        );
    assert_eq!(body, expected);
    assert_eq!(text_of(&body, "sf:exceptionMessage"), message);

    // Metadata faults carry no detail; `sf` is the metadata namespace.
    let md = "http://soap.sforce.com/2006/04/metadata";
    let call = envelope(md, Some(&token), "", "<urn:listMetadata/>");
    let (status, _, body) = soap(&f, "/services/Soap/m/61.0", &[], call).await;
    assert_eq!(status, 500);
    assert!(body.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:sf=\"http://soap.sforce.com/2006/04/metadata\"><soapenv:Body><soapenv:Fault>\
         <faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid \
         Session ID found in SessionHeader: Illegal Session. Session not found"
    ));
    assert!(body.ends_with("</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"));

    // A fresh session works; refused sessions and users without API access do not.
    let token = login(&f, USER).await;
    let call = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    f.org.set_refuse_sessions(true);
    assert_eq!(soap(&f, U, &[], call.clone()).await.0, 500);
    f.org.set_refuse_sessions(false);
    assert_eq!(soap(&f, U, &[], call).await.0, 200);
    let norest = login(&f, "norest@example.com").await;
    let call = envelope(PARTNER, Some(&norest), "", "<urn:getUserInfo/>");
    let (status, _, body) = soap(&f, U, &[], call).await;
    assert_eq!(status, 500);
    assert!(body.contains(
        "<faultstring>INVALID_SESSION_ID: This session is not valid for use with the API"
    ));
}

#[tokio::test]
async fn malformed_envelopes_and_unknown_operations_fault() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let client_fault = |message: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>\
             <soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>{message}\
             </faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        )
    };
    let (status, _, body) = soap(&f, U, &[], "").await;
    assert_eq!(
        (status, body),
        (500, client_fault("Premature end of file."))
    );
    let truncated = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    let (status, _, body) = soap(&f, U, &[], truncated[..truncated.len() - 9].to_owned()).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("<faultcode>soapenv:Client</faultcode>"),
        "{body}"
    );
    let doctype = format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{}", &truncated[38..]);
    let (status, _, body) = soap(&f, U, &[], doctype).await;
    assert_eq!(status, 500);
    assert!(body.contains("DOCTYPE is disallowed"), "{body}");
    let (status, _, body) = soap(&f, U, &[], "<notSoap/>").await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>soapenv:Client</faultcode>"));

    let call = envelope(PARTNER, Some(&token), "", "<urn:frobnicate/>");
    let (status, _, body) = soap(&f, U, &[], call).await;
    assert_eq!(status, 500);
    assert!(body.contains(
        "<faultcode>sf:INVALID_OPERATION</faultcode><faultstring>INVALID_OPERATION: No operation \
         available for request {urn:partner.soap.sforce.com}frobnicate, please check the WSDL \
         for the service.</faultstring>"
    ));
    // The Partner namespace at the Enterprise endpoint is no operation there either.
    let call = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    let (status, _, body) = soap(&f, "/services/Soap/c/61.0", &[], call).await;
    assert_eq!(status, 500);
    assert!(body.contains("{urn:partner.soap.sforce.com}getUserInfo"));
    assert!(body.contains("xmlns:sf=\"urn:fault.enterprise.soap.sforce.com\""));

    let (status, _, _) = send(&f, Method::GET, U, &[], Bytes::new()).await.unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = soap(&f, "/services/Soap/z/61.0", &[], "").await;
    assert_eq!(status, 404);
    // Not SOAP calls (no POST, no such API): listed among requests only.
    assert_eq!(f.org.soap_calls().len(), 6);
    assert_eq!(f.org.requests().len(), 8);
    assert_eq!(f.org.soap_calls()[4].operation, "frobnicate");
}

#[tokio::test]
async fn echo_is_byte_identical_and_calls_are_recorded_gzip_too() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let call = envelope(
        PARTNER,
        Some(&token),
        "<urn:CallOptions><urn:client>t&amp;t</urn:client></urn:CallOptions>",
        "<urn:echo>\r\n  <urn:text><![CDATA[<a & b>]]> &#233; \"q\" 'a'</urn:text>\r\n</urn:echo>",
    );
    let (status, _, body) = soap(&f, U, &[], call.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body, "result"), call);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(call.as_bytes()).unwrap();
    let gzipped = gz.finish().unwrap();
    let length = gzipped.len().to_string();
    let headers = [("content-encoding", "gzip"), ("authorization", "Bearer x")];
    let (status, _, body) = soap(&f, "/services/Soap/u/61.0/", &headers, gzipped).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body, "result"), call);

    let calls = f.org.soap_calls();
    assert_eq!(calls.len(), 2);
    let plain = &calls[0];
    assert_eq!((plain.path.as_str(), plain.api.as_str()), (U, "partner"));
    assert_eq!(plain.operation, "echo");
    assert_eq!(plain.session_id.as_deref(), Some(token.as_str()));
    assert_eq!(f.org.live_session_ids(), std::slice::from_ref(&token));
    assert_eq!(plain.envelope, call.as_bytes());
    assert_eq!(plain.content_encoding, None);
    assert_eq!(plain.content_length, Some(call.len() as u64));
    let zipped = &calls[1];
    assert_eq!(zipped.envelope, call.as_bytes());
    assert_eq!(zipped.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(zipped.content_length.map(|l| l.to_string()), Some(length));
    assert!(
        zipped
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "Bearer x")
    );
    assert!(f.org.requests().iter().all(|r| r.session_valid));

    let (status, _, body) = soap(&f, U, &[("content-encoding", "gzip")], call).await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>soapenv:Client</faultcode>"));
}

#[tokio::test]
async fn session_enders_fail_loudly_and_the_session_lives_on() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    for operation in [
        "<urn:logout/>",
        "<urn:invalidateSessions><urn:sessionIds>x</urn:sessionIds></urn:invalidateSessions>",
    ] {
        let call = envelope(PARTNER, Some(&token), "", operation);
        let (status, _, body) = soap(&f, U, &[], call).await;
        assert_eq!(status, 500);
        assert!(
            body.contains("<faultcode>sf:PROXY_TEST_FAILURE</faultcode>"),
            "{body}"
        );
        assert!(body.contains("reached Salesforce: it would end the session every caller shares"));
    }
    assert_eq!(f.org.soap_session_enders(), 2);
    assert_eq!(f.org.live_session_ids(), std::slice::from_ref(&token));
    let call = envelope(PARTNER, Some(&token), "", "<urn:getUserInfo/>");
    assert_eq!(soap(&f, U, &[], call).await.0, 200);

    let form = format!("token={token}");
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, body) = send(&f, Method::POST, "/services/oauth2/revoke", &ct, form)
        .await
        .unwrap();
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "proxy_test_failure"
    );
    assert_eq!((f.org.revokes(), f.org.live_sessions()), (1, 1));
}
