//! `getUserInfo()`, which sfproxy calls with its own session for the user behind a legacy login:
//! its answer gives the org and user ids the handed-out session id names, and the `userInfo` a
//! SOAP `login()` answer repeats.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// `getUserInfoResponse/result`'s fields, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    /// Local name and text; None where the field was `xsi:nil`.
    pub(crate) fields: Vec<(String, Option<String>)>,
}

impl UserInfo {
    /// The first field named `name`'s text (None if absent or nil).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .and_then(|(_, value)| value.as_deref())
    }

    pub(crate) fn org_id(&self) -> Option<&str> {
        self.get("organizationId")
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        self.get("userId")
    }
}

/// A Partner `getUserInfo()` envelope; the caller puts the SessionHeader in its empty Header.
pub(crate) fn request() -> Vec<u8> {
    concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:urn="urn:partner.soap.sforce.com">"#,
        "<soapenv:Header></soapenv:Header>",
        "<soapenv:Body><urn:getUserInfo/></soapenv:Body></soapenv:Envelope>"
    )
    .as_bytes()
    .to_vec()
}

/// The most nested elements read; Salesforce's answer has four levels.
const MAX_DEPTH: usize = 64;

/// The fields of a `getUserInfo()` answer (`getUserInfoResponse/result`'s children, by local
/// name). Err if there is no result, or it lacks `organizationId` or `userId`.
pub(crate) fn parse(response: &[u8]) -> Result<UserInfo, String> {
    let mut reader = Reader::from_reader(response);
    reader.config_mut().check_end_names = false;
    let fields = fields_of(&mut reader, &["getUserInfoResponse", "result"])?
        .ok_or_else(|| "the answer has no getUserInfoResponse result".to_owned())?;
    let info = UserInfo { fields };
    for required in ["organizationId", "userId"] {
        if info.get(required).is_none_or(str::is_empty) {
            return Err(format!("the getUserInfo result has no {required}"));
        }
    }
    Ok(info)
}

/// Elements' local names and texts (None for nil), in order.
pub(super) type Fields = Vec<(String, Option<String>)>;

/// The direct children of the first element at the end of a chain of local names `path` (each a
/// direct child of the one before, the first anywhere), as (local name, text or None for nil).
/// Ok(None) if no such element.
pub(super) fn fields_of(
    reader: &mut Reader<&[u8]>,
    path: &[&str],
) -> Result<Option<Fields>, String> {
    // The local names of the open elements.
    let mut stack: Vec<String> = Vec::new();
    // While inside the wanted element: the depth of its children; their fields.
    let mut inside: Option<usize> = None;
    let mut fields: Fields = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|_| format!("malformed XML near byte {}", reader.error_position()))?;
        match &event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                let name = local(start);
                match inside {
                    Some(depth) if stack.len() == depth => {
                        let value = if is_nil(start) {
                            None
                        } else {
                            Some(String::new())
                        };
                        fields.push((name.clone(), value));
                    }
                    None if ends_path(&stack, &name, path) => inside = Some(stack.len() + 1),
                    _ => {}
                }
                stack.push(name);
            }
            Event::Empty(start) => match inside {
                Some(depth) if stack.len() == depth => {
                    let value = if is_nil(start) {
                        None
                    } else {
                        Some(String::new())
                    };
                    fields.push((local(start), value));
                }
                None if ends_path(&stack, &local(start), path) => return Ok(Some(Vec::new())),
                _ => {}
            },
            Event::End(_) => {
                if stack.pop().is_none() {
                    return Err("an end tag without a start tag".to_owned());
                }
                if inside.is_some_and(|depth| stack.len() < depth) {
                    return Ok(Some(fields));
                }
            }
            Event::Eof => {
                return match inside {
                    Some(_) => Err("the answer ends inside its result".to_owned()),
                    None => Ok(None),
                };
            }
            Event::DocType(_) => return Err("a DOCTYPE is not allowed".to_owned()),
            _ => {
                let Some(text) = super::text_of(&event) else {
                    continue;
                };
                let text = text.map_err(|()| {
                    format!("undecodable text near byte {}", reader.buffer_position())
                })?;
                // Text directly inside a field (not in elements nested in it).
                if inside.is_some_and(|depth| stack.len() == depth + 1) {
                    if let Some((_, Some(value))) = fields.last_mut() {
                        value.push_str(&text);
                    }
                }
            }
        }
    }
}

/// Whether an element named `name`, opened under `stack`, ends the chain `path`.
fn ends_path(stack: &[String], name: &str, path: &[&str]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    name == *last
        && stack.len() >= parents.len()
        && stack[stack.len() - parents.len()..]
            .iter()
            .zip(parents)
            .all(|(open, parent)| open == parent)
}

fn local(start: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(start.local_name().as_ref()).into_owned()
}

/// `xsi:nil="true"` (or `1`), the prefix not resolved: no other `nil` attribute is in use.
fn is_nil(start: &BytesStart<'_>) -> bool {
    start.attributes().flatten().any(|attribute| {
        attribute.key.local_name().as_ref() == b"nil"
            && matches!(attribute.value.as_ref(), b"true" | b"1")
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The stand-in org's answer (src/mock_org/soap/partner.rs), as it sends it.
    pub(crate) const STAND_IN: &str = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
        "<soapenv:Header><LimitInfoHeader><limitInfo><current>3</current><limit>15000</limit><type>API REQUESTS</type></limitInfo></LimitInfoHeader></soapenv:Header>",
        "<soapenv:Body><getUserInfoResponse><result>",
        "<accessibilityMode>false</accessibilityMode><chatterExternal>false</chatterExternal>",
        "<currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>",
        "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale>",
        "<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false</orgHasPersonAccounts>",
        "<organizationId>00D000000000001EAA</organizationId><organizationMultiCurrency>false</organizationMultiCurrency>",
        "<organizationName>sfproxy stand-in org</organizationName><profileId>00eMk0000000001IAA</profileId>",
        r#"<roleId xsi:nil="true"/><sessionSecondsValid>7200</sessionSecondsValid>"#,
        r#"<userDefaultCurrencyIsoCode xsi:nil="true"/><userEmail>erp@acme.com</userEmail>"#,
        "<userFullName>erp</userFullName><userId>005000000000001AAA</userId>",
        "<userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>erp@acme.com</userName>",
        "<userTimeZone>America/Los_Angeles</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin>",
        "</result></getUserInfoResponse></soapenv:Body></soapenv:Envelope>"
    );

    #[test]
    fn reads_the_stand_in_answer() {
        let info = parse(STAND_IN.as_bytes()).unwrap();
        assert_eq!(info.fields.len(), 24);
        assert_eq!(info.org_id(), Some("00D000000000001EAA"));
        assert_eq!(info.user_id(), Some("005000000000001AAA"));
        assert_eq!(info.get("currencySymbol"), Some("$"));
        assert_eq!(info.get("organizationName"), Some("sfproxy stand-in org"));
        assert_eq!(info.fields[12], ("roleId".to_owned(), None));
        assert_eq!(info.get("roleId"), None);
        assert_eq!(info.fields[0].0, "accessibilityMode");
        assert_eq!(info.fields[23].0, "userUiSkin");
    }

    #[test]
    fn unescapes_text_and_reads_prefixed_names() {
        let xml = r#"<s:Envelope xmlns:s="x" xmlns:p="urn:partner.soap.sforce.com"><s:Body><p:getUserInfoResponse><p:result><p:organizationId>00D</p:organizationId><p:userFullName>A &amp; B &#233; <![CDATA[<C>]]></p:userFullName><p:userId>005</p:userId><p:roleId xsi:nil="true"></p:roleId><p:userEmail/></p:result></p:getUserInfoResponse></s:Body></s:Envelope>"#;
        let info = parse(xml.as_bytes()).unwrap();
        assert_eq!(info.get("userFullName"), Some("A & B é <C>"));
        assert_eq!(
            info.fields,
            vec![
                ("organizationId".to_owned(), Some("00D".to_owned())),
                ("userFullName".to_owned(), Some("A & B é <C>".to_owned())),
                ("userId".to_owned(), Some("005".to_owned())),
                ("roleId".to_owned(), None),
                ("userEmail".to_owned(), Some(String::new())),
            ]
        );
    }

    #[test]
    fn refuses_answers_without_result_or_ids() {
        let fault = r#"<soapenv:Envelope xmlns:soapenv="x"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        assert!(parse(fault.as_bytes()).is_err());
        let no_user = "<getUserInfoResponse><result><organizationId>00D</organizationId></result></getUserInfoResponse>";
        assert!(parse(no_user.as_bytes()).unwrap_err().contains("userId"));
        let nil_org = r#"<getUserInfoResponse><result><organizationId xsi:nil="true"/><userId>005</userId></result></getUserInfoResponse>"#;
        assert!(
            parse(nil_org.as_bytes())
                .unwrap_err()
                .contains("organizationId")
        );
        // A result elsewhere is not getUserInfo's.
        let other = "<queryResponse><result><organizationId>00D</organizationId><userId>005</userId></result></queryResponse>";
        assert!(parse(other.as_bytes()).is_err());
        let truncated =
            "<getUserInfoResponse><result><organizationId>00D</organizationId><userId>005</userId>";
        assert!(parse(truncated.as_bytes()).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<<<&&").is_err());
    }

    #[test]
    fn request_is_a_partner_get_user_info() {
        let request = String::from_utf8(request()).unwrap();
        assert!(request.contains(r#"xmlns:urn="urn:partner.soap.sforce.com""#));
        assert!(request.contains("<soapenv:Header></soapenv:Header>"));
        assert!(request.contains("<soapenv:Body><urn:getUserInfo/></soapenv:Body>"));
    }
}
