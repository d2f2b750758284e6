//! SOAP faults both ways, and the calls sfproxy answers itself.
//!
//! A SOAP toolkit reads a fault, not JSON: every refusal sfproxy makes on a SOAP path is a SOAP
//! 1.1 `Fault` whose `faultcode` is `sf:PROXY_...` (the JSON answer's errorCode) with the HTTP
//! status and hint in `detail`. Salesforce's own expiry answer is the fault
//! `sf:INVALID_SESSION_ID`, read here by the local name of its `faultcode`, never by a substring
//! (a fault quoting the caller's SOQL must not cost a login). `logout()` and
//! `invalidateSessions()` would end the session every caller of the route shares: sfproxy
//! answers them with Salesforce's own success shapes.

use quick_xml::{Reader, events::Event};

use crate::salesforce::soap::{api::SoapApi, envelope::Operation};

/// The media type of every SOAP 1.1 answer.
pub(crate) const CONTENT_TYPE: &str = "text/xml; charset=utf-8";
const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The namespace of Salesforce's fault codes and details (Partner's; toolkits resolve the prefix).
const FAULT_NS: &str = "urn:fault.partner.soap.sforce.com";
/// A fault's `faultcode` is near its start; past this much XML nothing is looked for.
const MAX_FAULT_SCAN: usize = 64 * 1024;

/// A refusal of sfproxy's as a SOAP fault: `code` is the JSON answer's errorCode, `status` the
/// HTTP status the JSON answer has.
pub(crate) struct ProxyFault<'a> {
    pub(crate) code: &'static str,
    pub(crate) message: &'a str,
    pub(crate) status: u16,
    pub(crate) hint: Option<&'a str>,
}

impl ProxyFault<'_> {
    /// The whole envelope.
    pub(crate) fn to_xml(&self) -> String {
        let hint = self.hint.map_or(String::new(), |hint| {
            format!("<sf:hint>{}</sf:hint>", escape(hint))
        });
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"{ENVELOPE_NS}\" xmlns:sf=\"{FAULT_NS}\"><soapenv:Body><soapenv:Fault>\
             <faultcode>sf:{code}</faultcode><faultstring>{message}</faultstring><detail>\
             <sf:ProxyFault><sf:errorCode>{code}</sf:errorCode><sf:status>{status}</sf:status>\
             {hint}</sf:ProxyFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
            code = self.code,
            message = escape(self.message),
            status = self.status,
        )
    }
}

/// Salesforce's fault for a `SessionHeader` without a live session, as it sends it: what every
/// SOAP toolkit logs in again on.
pub(crate) fn invalid_session() -> &'static str {
    concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
        r#"<soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode>"#,
        r#"<faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring>"#,
        r#"<detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault">"#,
        r#"<sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode>"#,
        r#"<sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session</sf:exceptionMessage>"#,
        r#"</sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    )
}

/// Whether a fault body (decoded) is Salesforce's `INVALID_SESSION_ID`: the local name of the
/// `faultcode` in a SOAP 1.1 `Fault`, whatever prefix it has.
pub(crate) fn is_invalid_session(body: &[u8]) -> bool {
    fault_code(&body[..body.len().min(MAX_FAULT_SCAN)]).is_some_and(|code| {
        code.rsplit_once(':')
            .map_or(code.as_str(), |(_, local)| local)
            == "INVALID_SESSION_ID"
    })
}

/// The text of the first `faultcode` inside a `Fault`, if the body has one.
fn fault_code(body: &[u8]) -> Option<String> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = false;
    let mut in_fault = false;
    let mut in_code = false;
    let mut code = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => match start.local_name().as_ref() {
                b"Fault" => in_fault = true,
                b"faultcode" if in_fault => in_code = true,
                _ => {}
            },
            Event::Text(text) if in_code => code.push_str(&text.decode().ok()?),
            Event::End(end) if in_code && end.local_name().as_ref() == b"faultcode" => {
                return Some(code.trim().to_owned());
            }
            // Never expands an entity: a fault has none.
            Event::DocType(_) | Event::Eof => return None,
            _ => {}
        }
    }
}

/// A call sfproxy answers itself because it would end the session every caller shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalCall {
    Logout,
    InvalidateSessions,
}

impl LocalCall {
    /// The call `operation` is, if sfproxy answers it itself: `logout` and `invalidateSessions` in
    /// the API's namespace or any of Salesforce's `urn:*.soap.sforce.com` (the Partner and
    /// Enterprise calls; elsewhere failing safe costs nothing). An Apex class's own methods are
    /// its own, whatever their names.
    pub(crate) fn of(api: &SoapApi, operation: &Operation) -> Option<Self> {
        let salesforce = |ns: &str| {
            ns.strip_prefix("urn:")
                .is_some_and(|rest| rest.ends_with(".soap.sforce.com"))
        };
        let ours = operation.namespace == api.namespace() || salesforce(&operation.namespace);
        if matches!(api, SoapApi::Apex { .. }) || !ours {
            return None;
        }
        match operation.name.as_str() {
            "logout" => Some(Self::Logout),
            "invalidateSessions" => Some(Self::InvalidateSessions),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::InvalidateSessions => "invalidateSessions",
        }
    }

    /// Salesforce's success answer to this call: `<logoutResponse/>`, or one successful
    /// `InvalidateSessionsResult` per `sessionIds` the call's `body` (the envelope from its Body
    /// on) names.
    pub(crate) fn answer(self, api: &SoapApi, body: &[u8]) -> String {
        let inner = match self {
            Self::Logout => "<logoutResponse/>".to_owned(),
            Self::InvalidateSessions => {
                let results = "<result><success>true</success></result>"
                    .repeat(count_elements(body, b"sessionIds").max(1));
                format!("<invalidateSessionsResponse>{results}</invalidateSessionsResponse>")
            }
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"{ENVELOPE_NS}\" xmlns=\"{ns}\"><soapenv:Body>{inner}</soapenv:Body>\
             </soapenv:Envelope>",
            ns = api.namespace()
        )
    }
}

/// How many elements named `local` (any prefix) `body` holds; a fragment is read as far as it
/// parses.
fn count_elements(body: &[u8], local: &[u8]) -> usize {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = false;
    let mut count = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == local => count += 1,
            Ok(Event::Eof | Event::DocType(_)) | Err(_) => return count,
            Ok(_) => {}
        }
    }
}

/// `text` as XML character data (quotes need no escape there); a control character, which XML
/// 1.0 cannot carry, as U+FFFD.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let forbidden = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.contains(forbidden) {
        let text: String = text.replace(forbidden, "\u{fffd}");
        return std::borrow::Cow::Owned(quick_xml::escape::partial_escape(&text).into_owned());
    }
    quick_xml::escape::partial_escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALESFORCE_EXPIRY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode><sf:exceptionMessage>Invalid Session ID found in SessionHeader: Illegal Session</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

    #[test]
    fn reads_salesforce_expiry_fault_by_its_code() {
        assert!(is_invalid_session(SALESFORCE_EXPIRY.as_bytes()));
        let other_prefix = SALESFORCE_EXPIRY.replace(
            "sf:INVALID_SESSION_ID</faultcode>",
            "x:INVALID_SESSION_ID</faultcode>",
        );
        assert!(is_invalid_session(other_prefix.as_bytes()));
        // Another fault that quotes the code is not an expiry.
        let quoted = SALESFORCE_EXPIRY.replace(
            "sf:INVALID_SESSION_ID</faultcode>",
            "sf:MALFORMED_QUERY</faultcode>",
        );
        assert!(!is_invalid_session(quoted.as_bytes()));
        assert!(!is_invalid_session(b"<html>INVALID_SESSION_ID</html>"));
        assert!(!is_invalid_session(b"not xml at all"));
        assert!(!is_invalid_session(
            b"<!DOCTYPE x [<!ENTITY a \"INVALID_SESSION_ID\">]><Fault><faultcode>&a;</faultcode></Fault>"
        ));
    }

    #[test]
    fn proxy_faults_carry_code_status_and_hint() {
        let xml = ProxyFault {
            code: "PROXY_LOGIN_REJECTED",
            message: "Salesforce refused the login of \"u\" <x> & y",
            status: 502,
            hint: Some("pre-authorize the user"),
        }
        .to_xml();
        assert!(xml.contains("<faultcode>sf:PROXY_LOGIN_REJECTED</faultcode>"));
        assert!(xml.contains(
            "<faultstring>Salesforce refused the login of \"u\" &lt;x&gt; &amp; y</faultstring>"
        ));
        assert!(
            xml.contains("<sf:status>502</sf:status><sf:hint>pre-authorize the user</sf:hint>")
        );
        let control = ProxyFault {
            code: "PROXY_BAD_ENVELOPE",
            message: "attribute \u{1}x",
            status: 400,
            hint: None,
        }
        .to_xml();
        assert!(control.contains("attribute \u{fffd}x"), "{control}");
        assert_eq!(
            fault_code(xml.as_bytes()).as_deref(),
            Some("sf:PROXY_LOGIN_REJECTED")
        );
    }

    #[test]
    fn logout_and_invalidate_sessions_are_answered_in_salesforce_shape() {
        let op = |ns: &str, name: &str| Operation {
            namespace: ns.into(),
            name: name.into(),
        };
        let partner = SoapApi::Partner;
        assert_eq!(
            LocalCall::of(&partner, &op("urn:partner.soap.sforce.com", "logout")),
            Some(LocalCall::Logout)
        );
        assert_eq!(
            LocalCall::of(
                &SoapApi::Enterprise,
                &op("urn:enterprise.soap.sforce.com", "invalidateSessions")
            ),
            Some(LocalCall::InvalidateSessions)
        );
        // Another namespace's `logout` (an Apex method, say) is the caller's own.
        assert_eq!(LocalCall::of(&partner, &op("urn:example", "logout")), None);
        // Elsewhere Salesforce's namespaces fail safe; an Apex class's methods are its own.
        assert_eq!(
            LocalCall::of(
                &SoapApi::Tooling,
                &op("urn:tooling.soap.sforce.com", "logout")
            ),
            Some(LocalCall::Logout)
        );
        assert_eq!(
            LocalCall::of(
                &SoapApi::Metadata,
                &op("urn:partner.soap.sforce.com", "logout")
            ),
            Some(LocalCall::Logout)
        );
        let apex = SoapApi::Apex {
            class: "Sessions".into(),
        };
        assert_eq!(
            LocalCall::of(
                &apex,
                &op("http://soap.sforce.com/schemas/class/Sessions", "logout")
            ),
            None
        );
        assert!(
            LocalCall::Logout
                .answer(&partner, b"")
                .contains("<soapenv:Body><logoutResponse/></soapenv:Body>")
        );
        let two = LocalCall::InvalidateSessions.answer(
            &partner,
            b"<soapenv:Body><urn:invalidateSessions><urn:sessionIds>a</urn:sessionIds>\
              <urn:sessionIds>b</urn:sessionIds></urn:invalidateSessions></soapenv:Body>",
        );
        assert_eq!(two.matches("<success>true</success>").count(), 2);
        assert!(two.contains("xmlns=\"urn:partner.soap.sforce.com\""));
    }
}
