//! SOAP `login()`: the credentials in a caller's envelope, and the answers Salesforce gives, so
//! sfproxy can answer it itself (Salesforce retires it) with a session id of its own.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::escape;
use super::user_info::UserInfo;
use crate::salesforce::soap::envelope::Operation;

const PARTNER_NS: &str = "urn:partner.soap.sforce.com";
const ENTERPRISE_NS: &str = "urn:enterprise.soap.sforce.com";
const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const INVALID_LOGIN: &str = "Invalid username, password, security token; or user locked out.";

/// Whether the envelope's call is `login()` (Partner or Enterprise).
pub(crate) fn is_login(operation: &Operation) -> bool {
    operation.name == "login" && matches!(operation.namespace.as_str(), PARTNER_NS | ENTERPRISE_NS)
}

/// The most nested elements read inside `login`.
const MAX_DEPTH: usize = 64;

/// The username (trimmed) and password (as sent) of a `login()` whose envelope's bytes after the
/// Body start tag are `rest` (the envelope's head was read elsewhere): the direct children
/// `username` and `password` of its first element, `login`, by local name. The Err never holds
/// either value.
pub(crate) fn credentials(rest: &[u8]) -> Result<(String, String), String> {
    let mut reader = Reader::from_reader(rest);
    // The Body's and the Envelope's end tags close elements this reader never saw open.
    reader.config_mut().check_end_names = false;
    reader.config_mut().allow_unmatched_ends = true;
    enter_login(&mut reader)?;
    // Depth below `login`; the field being read (0 username, 1 password) while at depth 1.
    let mut depth = 0usize;
    let mut reading: Option<usize> = None;
    let mut values: [Option<String>; 2] = [None, None];
    loop {
        let event = next(&mut reader)?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                let empty = matches!(event, Event::Empty(_));
                if depth == 0 {
                    let slot = match start.local_name().as_ref() {
                        b"username" => Some(0),
                        b"password" => Some(1),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        if start.attributes().any(|attribute| attribute.is_err()) {
                            return Err(format!(
                                "the login call's {} has malformed attributes",
                                FIELDS[slot]
                            ));
                        }
                        if values[slot].is_some() {
                            return Err(format!("the login call has two {}s", FIELDS[slot]));
                        }
                        values[slot] = Some(String::new());
                        if !empty {
                            reading = Some(slot);
                        }
                    }
                }
                if !empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                }
            }
            Event::End(_) => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                if depth == 0 {
                    reading = None;
                }
            }
            Event::Eof => return Err("the login call does not end".to_owned()),
            Event::DocType(_) => return Err("a DOCTYPE is not allowed".to_owned()),
            _ => {
                let Some(text) = super::text_of(&event) else {
                    continue;
                };
                let text = text.map_err(|()| {
                    format!(
                        "the login call has undecodable text near byte {}",
                        reader.buffer_position()
                    )
                })?;
                if depth == 1 {
                    if let Some(value) = reading.and_then(|slot| values[slot].as_mut()) {
                        value.push_str(&text);
                    }
                }
            }
        }
    }
    match values {
        [Some(username), Some(password)] => Ok((username.trim().to_owned(), password)),
        [None, _] => Err("the login call has no username".to_owned()),
        [_, None] => Err("the login call has no password".to_owned()),
    }
}

const FIELDS: [&str; 2] = ["username", "password"];

/// The next event; the Err says where the XML broke, never what it holds.
fn next<'a>(reader: &mut Reader<&'a [u8]>) -> Result<Event<'a>, String> {
    reader.read_event().map_err(|_| {
        format!(
            "the login call is malformed XML near byte {}",
            reader.error_position()
        )
    })
}

/// Reads up to the end of the Body's first element's start tag, which must be `login`'s.
fn enter_login(reader: &mut Reader<&[u8]>) -> Result<(), String> {
    loop {
        match next(reader)? {
            Event::Start(start) if start.local_name().as_ref() == b"login" => return Ok(()),
            Event::Start(_) | Event::Empty(_) | Event::End(_) | Event::Eof => {
                return Err("the Body does not start with the login call".to_owned());
            }
            Event::DocType(_) => return Err("a DOCTYPE is not allowed".to_owned()),
            _ => {}
        }
    }
}

/// A granted `login()`'s answer.
pub(crate) struct LoginResult<'a> {
    /// The call was Enterprise's (`urn:enterprise.soap.sforce.com`), else Partner's.
    pub(crate) enterprise: bool,
    pub(crate) session_id: &'a str,
    pub(crate) server_url: &'a str,
    pub(crate) metadata_server_url: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) sandbox: bool,
    pub(crate) user_info: &'a UserInfo,
    /// Written as `userInfo/sessionSecondsValid`.
    pub(crate) session_seconds_valid: u64,
}

/// Salesforce's `loginResponse` envelope, its fields in Salesforce's order; `userInfo` is the
/// user's `getUserInfo()` fields with `sessionSecondsValid` this session's (added last if absent).
pub(crate) fn login_response(result: &LoginResult) -> Vec<u8> {
    let namespace = if result.enterprise {
        ENTERPRISE_NS
    } else {
        PARTNER_NS
    };
    let mut xml = format!(
        "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\" xmlns=\"{namespace}\" \
         xmlns:xsi=\"{XSI_NS}\"><soapenv:Body><loginResponse><result>"
    );
    let seconds = result.session_seconds_valid.to_string();
    element(
        &mut xml,
        "metadataServerUrl",
        Some(result.metadata_server_url),
    );
    element(&mut xml, "passwordExpired", Some("false"));
    element(
        &mut xml,
        "sandbox",
        Some(if result.sandbox { "true" } else { "false" }),
    );
    element(&mut xml, "serverUrl", Some(result.server_url));
    element(&mut xml, "sessionId", Some(result.session_id));
    element(&mut xml, "userId", Some(result.user_id));
    xml.push_str("<userInfo>");
    let mut seconds_written = false;
    for (name, value) in &result.user_info.fields {
        if !super::is_plain_name(name) {
            continue;
        }
        if name == "sessionSecondsValid" {
            if !seconds_written {
                element(&mut xml, name, Some(&seconds));
                seconds_written = true;
            }
            continue;
        }
        element(&mut xml, name, value.as_deref());
    }
    if !seconds_written {
        element(&mut xml, "sessionSecondsValid", Some(&seconds));
    }
    xml.push_str("</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>");
    xml.into_bytes()
}

/// `<name>text</name>`, or `<name xsi:nil="true"/>` for None.
fn element(xml: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(value) => {
            xml.push('<');
            xml.push_str(name);
            xml.push('>');
            xml.push_str(&escape(value));
            xml.push_str("</");
            xml.push_str(name);
            xml.push('>');
        }
        None => {
            xml.push('<');
            xml.push_str(name);
            xml.push_str(" xsi:nil=\"true\"/>");
        }
    }
}

/// Salesforce's refusal of wrong credentials (sent with HTTP 500).
pub(crate) fn invalid_login_fault() -> Vec<u8> {
    fault("INVALID_LOGIN", INVALID_LOGIN, INVALID_LOGIN)
}

/// sfproxy's own refusal of a `login()`, in the same `LoginFault` shape: `sf:{code}`, faultstring
/// `{code}: {message}`, the hint after the message in the detail.
pub(crate) fn proxy_login_fault(code: &str, message: &str, hint: Option<&str>) -> Vec<u8> {
    match hint {
        Some(hint) => fault(code, message, &format!("{message} {hint}")),
        None => fault(code, message, message),
    }
}

fn fault(code: &str, message: &str, detail: &str) -> Vec<u8> {
    let code = escape(code);
    format!(
        "{XML_DECL}<soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV_NS}\" \
         xmlns:sf=\"urn:fault.partner.soap.sforce.com\" xmlns:xsi=\"{XSI_NS}\"><soapenv:Body>\
         <soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {}</faultstring>\
         <detail><sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>{code}\
         </sf:exceptionCode><sf:exceptionMessage>{}</sf:exceptionMessage></sf:LoginFault>\
         </detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
        escape(message),
        escape(detail),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::login::user_info;

    fn operation(namespace: &str, name: &str) -> Operation {
        Operation {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn knows_login_calls() {
        assert!(is_login(&operation(PARTNER_NS, "login")));
        assert!(is_login(&operation(ENTERPRISE_NS, "login")));
        assert!(!is_login(&operation(
            "urn:tooling.soap.sforce.com",
            "login"
        )));
        assert!(!is_login(&operation("", "login")));
        assert!(!is_login(&operation(PARTNER_NS, "logout")));
    }

    const REST: &str = "\n  <urn:login xmlns:urn=\"urn:partner.soap.sforce.com\"><urn:username>erp@acme.com</urn:username><urn:password>s3cr&amp;t</urn:password></urn:login></soapenv:Body></soapenv:Envelope>";

    #[test]
    fn reads_credentials() {
        assert_eq!(
            credentials(REST.as_bytes()).unwrap(),
            ("erp@acme.com".to_owned(), "s3cr&t".to_owned())
        );
        let spaced = "<!-- c --><login>\n  <username>\n erp@acme.com </username>\n  <x:password xmlns:x=\"y\"> p&#233;<![CDATA[<&>]]> </x:password>\n</login>";
        assert_eq!(
            credentials(spaced.as_bytes()).unwrap(),
            ("erp@acme.com".to_owned(), " pé<&> ".to_owned())
        );
        // Order does not matter; an empty password element is an empty password.
        assert_eq!(
            credentials(b"<login><password/><username>u</username></login>").unwrap(),
            ("u".to_owned(), String::new())
        );
    }

    #[test]
    fn reads_only_direct_children() {
        let nested = "<urn:login><urn:username>u</urn:username><urn:other><urn:password>no</urn:password></urn:other></urn:login><urn:password>after</urn:password>";
        assert!(
            credentials(nested.as_bytes())
                .unwrap_err()
                .contains("no password")
        );
        let inner = "<urn:login><urn:username>u</urn:username><urn:password>a<b>x</b>c</urn:password></urn:login>";
        assert_eq!(credentials(inner.as_bytes()).unwrap().1, "ac");
        let other =
            "<urn:query><urn:username>u</urn:username><urn:password>p</urn:password></urn:query>";
        assert!(
            credentials(other.as_bytes())
                .unwrap_err()
                .contains("does not start")
        );
    }

    #[test]
    fn errors_never_hold_the_credentials() {
        let cases = [
            "<urn:username>erp@acme.com</urn:username></urn:login>",
            "<urn:password>hunter2</urn:password></urn:login>",
            "<urn:username>erp@acme.com</urn:username><urn:password>hunter2</urn:password>",
            "<urn:username>erp@acme.com</urn:username><urn:password>hunter2&bogus;</urn:password></urn:login>",
            "<urn:username>erp@acme.com</urn:username><urn:password>hunter2</urn:password><urn:password>hunter2</urn:password></urn:login>",
            "<urn:username>erp@acme.com</urn:username><urn:password>hunter2<</urn:password></urn:login>",
            "<urn:username>erp@acme.com</urn:username><urn:password hunter2>hunter2</urn:password></urn:login>",
            "<!DOCTYPE hunter2><urn:username>erp@acme.com</urn:username></urn:login>",
        ];
        for case in cases {
            let case = format!("<urn:login>{case}");
            let error = credentials(case.as_bytes()).map(|_| case).unwrap_err();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!error.contains("bogus"), "{error}");
            assert!(!error.contains("erp@acme"), "{error}");
        }
    }

    fn user_info() -> UserInfo {
        UserInfo {
            fields: vec![
                (
                    "organizationId".to_owned(),
                    Some("00D000000000001EAA".to_owned()),
                ),
                ("organizationName".to_owned(), Some("A & B <Co>".to_owned())),
                ("roleId".to_owned(), None),
                ("sessionSecondsValid".to_owned(), Some("7200".to_owned())),
                ("userId".to_owned(), Some("005000000000001AAA".to_owned())),
            ],
        }
    }

    fn result<'a>(info: &'a UserInfo, enterprise: bool) -> LoginResult<'a> {
        LoginResult {
            enterprise,
            session_id: "00D000000000001!AQ-x_y",
            server_url: "https://proxy.example/services/Soap/u/62.0/00D000000000001",
            metadata_server_url: "https://proxy.example/services/Soap/m/62.0/00D000000000001",
            user_id: "005000000000001AAA",
            sandbox: false,
            user_info: info,
            session_seconds_valid: 3600,
        }
    }

    #[test]
    fn login_response_is_salesforce_shaped() {
        let info = user_info();
        let xml = String::from_utf8(login_response(&result(&info, false))).unwrap();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
                "<soapenv:Body><loginResponse><result>",
                "<metadataServerUrl>https://proxy.example/services/Soap/m/62.0/00D000000000001</metadataServerUrl>",
                "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>",
                "<serverUrl>https://proxy.example/services/Soap/u/62.0/00D000000000001</serverUrl>",
                "<sessionId>00D000000000001!AQ-x_y</sessionId><userId>005000000000001AAA</userId>",
                "<userInfo><organizationId>00D000000000001EAA</organizationId>",
                "<organizationName>A &amp; B &lt;Co&gt;</organizationName>",
                r#"<roleId xsi:nil="true"/><sessionSecondsValid>3600</sessionSecondsValid>"#,
                "<userId>005000000000001AAA</userId></userInfo>",
                "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
            )
        );
        let xml = String::from_utf8(login_response(&result(&info, true))).unwrap();
        assert!(xml.contains(r#" xmlns="urn:enterprise.soap.sforce.com" "#));
    }

    #[test]
    fn login_response_adds_missing_seconds_and_drops_odd_names() {
        let info = UserInfo {
            fields: vec![
                ("userId".to_owned(), Some("005".to_owned())),
                ("bad><x".to_owned(), Some("v".to_owned())),
            ],
        };
        let xml = String::from_utf8(login_response(&result(&info, false))).unwrap();
        assert!(xml.contains(
            "<userInfo><userId>005</userId><sessionSecondsValid>3600</sessionSecondsValid></userInfo>"
        ));
        assert!(!xml.contains("bad"));
    }

    #[test]
    fn round_trips_the_stand_in_user_info() {
        let info = user_info::parse(user_info::tests::STAND_IN.as_bytes()).unwrap();
        let xml = login_response(&result(&info, false));
        let mut reader = Reader::from_reader(xml.as_slice());
        let again = user_info::fields_of(&mut reader, &["loginResponse", "result", "userInfo"])
            .unwrap()
            .unwrap();
        let mut expected = info.fields.clone();
        for (name, value) in &mut expected {
            if name == "sessionSecondsValid" {
                *value = Some("3600".to_owned());
            }
        }
        assert_eq!(again, expected);
        // And the loginResponse's own fields read back too.
        let mut reader = Reader::from_reader(xml.as_slice());
        let outer = user_info::fields_of(&mut reader, &["loginResponse", "result"])
            .unwrap()
            .unwrap();
        let names: Vec<&str> = outer.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "metadataServerUrl",
                "passwordExpired",
                "sandbox",
                "serverUrl",
                "sessionId",
                "userId",
                "userInfo"
            ]
        );
    }

    #[test]
    fn invalid_login_fault_is_exact() {
        assert_eq!(
            String::from_utf8(invalid_login_fault()).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        );
    }

    #[test]
    fn proxy_login_fault_escapes_and_appends_the_hint() {
        let xml = String::from_utf8(proxy_login_fault(
            "SFPROXY_LOGIN",
            "no <route> for a & b",
            Some("see docs"),
        ))
        .unwrap();
        assert!(xml.contains("<faultcode>sf:SFPROXY_LOGIN</faultcode>"));
        assert!(
            xml.contains(
                "<faultstring>SFPROXY_LOGIN: no &lt;route&gt; for a &amp; b</faultstring>"
            )
        );
        assert!(xml.contains("<sf:exceptionCode>SFPROXY_LOGIN</sf:exceptionCode>"));
        assert!(xml.contains(
            "<sf:exceptionMessage>no &lt;route&gt; for a &amp; b see docs</sf:exceptionMessage>"
        ));
        let plain = String::from_utf8(proxy_login_fault("C", "m", None)).unwrap();
        assert!(plain.contains("<sf:exceptionMessage>m</sf:exceptionMessage>"));
    }
}
