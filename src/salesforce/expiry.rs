//! Salesforce's answers that say a session expired: the only way a proxy learns it, since the
//! token response never says how long a session lives.
//!
//! REST (and Bulk 2.0): 401 with an error array, `[{"errorCode":"INVALID_SESSION_ID",..}]`, or
//! its XML form with an XML `Accept`. Bulk API 1.0: 400 (or 401) with
//! `<exceptionCode>InvalidSessionId</exceptionCode>`. SOAP: a 500 fault whose `faultcode` is
//! `sf:INVALID_SESSION_ID` (by its local name, [`fault::is_invalid_session`]). A 401 saying the session "is not valid for use with the REST API" is a setup
//! problem no new session cures: not an expiry.

use std::io::Read;

use http::{HeaderMap, StatusCode, header};

use crate::salesforce::{credential::Api, soap::fault};

/// Salesforce's expiry answers are tiny; a larger body is something else and streams on.
pub(crate) const MAX_EXPIRY_BODY: usize = 64 * 1024;

/// A session valid for other APIs but not REST: a setup problem no new session cures.
const NOT_FOR_REST: &str = "not valid for use with the REST API";

/// Whether an answer with `status` from `api` may say the session expired (its body tells):
/// the only answers whose body is read.
pub(crate) fn may_say_expired(status: StatusCode, api: Api) -> bool {
    match api {
        Api::BulkV1 => status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
        Api::Soap => status == StatusCode::INTERNAL_SERVER_ERROR,
        Api::OtherSoap => false,
        Api::Rest => status == StatusCode::UNAUTHORIZED,
    }
}

/// Reads an error body of `api` (gzip-decoded if need be) for Salesforce's expired-session
/// codes, by their structure: the `errorCode` of a REST error array (JSON, or XML with an XML
/// `Accept`), Bulk API 1.0's `exceptionCode`, a SOAP fault's `faultcode`. Not a substring of the
/// body: an error that quotes what the caller sent (an entity named `InvalidSessionId`, say) must
/// not cost a login.
pub(crate) fn says_session_expired(api: Api, headers: &HeaderMap, body: &[u8]) -> bool {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let text = if gzip {
        let mut decoded = Vec::new();
        let reader = flate2::read::GzDecoder::new(body).take(MAX_EXPIRY_BODY as u64);
        if std::io::BufReader::new(reader)
            .read_to_end(&mut decoded)
            .is_err()
        {
            return false;
        }
        String::from_utf8_lossy(&decoded).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    if api == Api::Soap {
        return fault::is_invalid_session(text.as_bytes());
    }
    let text = text.trim_start();
    if text.starts_with('[') {
        let Ok(errors) = serde_json::from_str::<Vec<RestError>>(text) else {
            return false;
        };
        return errors
            .iter()
            .any(|e| e.error_code == "INVALID_SESSION_ID" && !e.message.contains(NOT_FOR_REST));
    }
    (text.contains("<errorCode>INVALID_SESSION_ID</errorCode>")
        || text.contains("<exceptionCode>InvalidSessionId</exceptionCode>"))
        && !text.contains(NOT_FOR_REST)
}

/// One entry of a REST error array, `{"message":..,"errorCode":..}`.
#[derive(serde::Deserialize)]
struct RestError {
    #[serde(rename = "errorCode", default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn expired(body: &str) -> bool {
        says_session_expired(Api::Rest, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn recognises_salesforce_expiry_answers() {
        assert!(expired(
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
        ));
        assert!(expired(
            "<Errors><Error><errorCode>INVALID_SESSION_ID</errorCode></Error></Errors>"
        ));
        assert!(expired(
            "<error><exceptionCode>InvalidSessionId</exceptionCode></error>"
        ));
        assert!(!expired(
            r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#
        ));
        assert!(!expired(r#"[{"errorCode":"NOT_FOUND"}]"#));
        // What an error quotes from the caller's request is not its code.
        assert!(!expired(
            "<error><exceptionCode>InvalidEntity</exceptionCode><exceptionMessage>Entity \
             'InvalidSessionId' is not supported</exceptionMessage></error>"
        ));
        assert!(!expired(
            r#"[{"message":"no such field INVALID_SESSION_ID","errorCode":"INVALID_FIELD"}]"#
        ));
        assert!(!expired(
            "<Errors><Error><errorCode>INVALID_FIELD</errorCode><message>&lt;errorCode&gt;\
             INVALID_SESSION_ID&lt;/errorCode&gt;</message></Error></Errors>"
        ));
    }

    #[test]
    fn reads_gzip_bodies() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(br#"[{"errorCode":"INVALID_SESSION_ID"}]"#)
            .unwrap();
        let gz = encoder.finish().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(says_session_expired(Api::Rest, &headers, &gz));
    }

    #[test]
    fn reads_soap_faults_by_their_code_gzip_too() {
        let fault = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                     xmlns:sf=\"urn:fault.partner.soap.sforce.com\"><soapenv:Body><soapenv:Fault>\
                     <faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: \
                     Invalid Session ID found in SessionHeader: Illegal Session</faultstring>\
                     </soapenv:Fault></soapenv:Body></soapenv:Envelope>";
        assert!(says_session_expired(
            Api::Soap,
            &HeaderMap::new(),
            fault.as_bytes()
        ));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(fault.as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(says_session_expired(
            Api::Soap,
            &headers,
            &encoder.finish().unwrap()
        ));
        let other = fault.replace("sf:INVALID_SESSION_ID<", "sf:INVALID_FIELD<");
        assert!(!says_session_expired(
            Api::Soap,
            &HeaderMap::new(),
            other.as_bytes()
        ));
        // A REST error array on a SOAP path is not a fault.
        assert!(!says_session_expired(
            Api::Soap,
            &HeaderMap::new(),
            br#"[{"errorCode":"INVALID_SESSION_ID"}]"#
        ));
    }

    #[test]
    fn only_the_expiry_statuses_of_each_api_are_read() {
        let (ok, bad, unauthorized, error) = (
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::INTERNAL_SERVER_ERROR,
        );
        assert!(may_say_expired(unauthorized, Api::Rest));
        assert!(!may_say_expired(bad, Api::Rest));
        assert!(!may_say_expired(ok, Api::Rest));
        assert!(may_say_expired(bad, Api::BulkV1));
        assert!(may_say_expired(unauthorized, Api::BulkV1));
        assert!(!may_say_expired(error, Api::BulkV1));
        // A SOAP fault is a 500.
        assert!(may_say_expired(error, Api::Soap));
        assert!(!may_say_expired(unauthorized, Api::Soap));
        assert!(!may_say_expired(ok, Api::Soap));
    }
}
