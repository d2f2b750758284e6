//! What the SOAP stand-in writes back: answers in the API's own envelope, and faults in
//! Salesforce's shapes (Partner, Enterprise and Tooling with an `sf:...Fault` detail in their
//! `urn:fault...` namespace; Metadata and Apex without detail, `sf` bound to the API's namespace;
//! a `soapenv:Client` fault for what is not a usable envelope). Every fault is HTTP 500.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::call::Api;
use super::envelope::{SOAP_ENV_NS, XSI_NS, escape};
use crate::mock_org::rest::DAILY_API_MAX;
use crate::mock_org::state::{MockResponse, respond};

const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
pub(super) const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// A 200 answer: `body` (the `...Response` element) in the API's envelope. Partner, Enterprise
/// and Tooling answers carry the `LimitInfoHeader` with the daily API usage, as Salesforce's do.
pub(super) fn ok(api: &Api, usage: u64, body: &str) -> MockResponse {
    let mut xml = format!(
        "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\" xmlns=\"{}\"",
        escape(&api.namespace())
    );
    if let Some(sobject_ns) = api.sobject_namespace() {
        xml.push_str(&format!(" xmlns:sf=\"{sobject_ns}\""));
    }
    if !matches!(api, Api::Metadata) {
        xml.push_str(&format!(" xmlns:xsi=\"{XSI_NS}\""));
    }
    xml.push('>');
    if api.sobject_namespace().is_some() {
        xml.push_str(&format!(
            "<soapenv:Header><LimitInfoHeader><limitInfo><current>{usage}</current>\
             <limit>{DAILY_API_MAX}</limit><type>API REQUESTS</type></limitInfo>\
             </LimitInfoHeader></soapenv:Header>"
        ));
    }
    xml.push_str("<soapenv:Body>");
    xml.push_str(body);
    xml.push_str("</soapenv:Body></soapenv:Envelope>");
    respond(200, CONTENT_TYPE, xml)
}

/// An API fault: `sf:{code}`, faultstring `{code}: {message}`, and (Partner, Enterprise,
/// Tooling) the `sf:{kind}` detail with `exceptionCode` and `exceptionMessage`.
pub(super) struct Fault {
    pub(super) code: &'static str,
    pub(super) message: String,
    /// The detail's type, e.g. `UnexpectedErrorFault`, `MalformedQueryFault`.
    pub(super) kind: &'static str,
}

impl Fault {
    pub(super) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind: "UnexpectedErrorFault",
        }
    }

    pub(super) fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// Salesforce's answer to a `SessionHeader` without a live session: the message names the
    /// presented session by a hash (here the base64 SHA-256 of the session id).
    pub(super) fn invalid_session(session: Option<&str>) -> Self {
        let message = match session.map(str::trim).filter(|s| !s.is_empty()) {
            None => "Invalid Session ID found in SessionHeader: Illegal Session".to_owned(),
            Some(session) => {
                let hash =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
                format!(
                    "Invalid Session ID found in SessionHeader: Illegal Session. Session not \
                     found, missing session hash: {}\nThis error usually occurs after a session \
                     expires or a user logs out. ",
                    STANDARD.encode(hash.as_ref())
                )
            }
        };
        Self::new("INVALID_SESSION_ID", message)
    }
}

pub(super) fn fault(api: &Api, fault: &Fault) -> MockResponse {
    let code = fault.code;
    let message = escape(&fault.message);
    let body = match api.fault_namespace() {
        Some(fault_ns) => format!(
            "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\" xmlns:sf=\"{fault_ns}\" \
             xmlns:xsi=\"{XSI_NS}\"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>\
             <faultstring>{code}: {message}</faultstring><detail><sf:{kind} xsi:type=\"sf:{kind}\">\
             <sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}\
             </sf:exceptionMessage></sf:{kind}></detail></soapenv:Fault></soapenv:Body>\
             </soapenv:Envelope>",
            kind = fault.kind,
        ),
        None => format!(
            "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\" xmlns:sf=\"{}\">\
             <soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>\
             <faultstring>{code}: {message}</faultstring></soapenv:Fault></soapenv:Body>\
             </soapenv:Envelope>",
            escape(&api.namespace()),
        ),
    };
    respond(500, CONTENT_TYPE, body)
}

/// `soapenv:Client`: the request is no envelope Salesforce could read (malformed XML, no Body,
/// a body it cannot decode), whatever the API.
pub(super) fn client_fault(status: u16, message: &str) -> MockResponse {
    let body = format!(
        "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\"><soapenv:Body>\
         <soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>{}</faultstring>\
         </soapenv:Fault></soapenv:Body></soapenv:Envelope>",
        escape(message)
    );
    respond(status, CONTENT_TYPE, body)
}

/// `<name>value</name>`, escaped; `xsi:nil` for None.
pub(super) fn element(name: &str, value: Option<&str>) -> String {
    match value {
        Some(value) => format!("<{name}>{}</{name}>", escape(value)),
        None => format!("<{name} xsi:nil=\"true\"/>"),
    }
}
