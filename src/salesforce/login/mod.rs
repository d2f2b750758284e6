//! Legacy logins answered by sfproxy: SOAP `login()` and OAuth's password and client-credentials
//! grants, which Salesforce retires, kept working for integrations that cannot change. Here is
//! only the wire knowledge: the session ids sfproxy hands out ([`sealed`]), the token endpoint's
//! forms and answers ([`oauth`]), SOAP `login()` and its answers ([`soap`]), and the user's
//! `getUserInfo()` ([`user_info`]).

pub(crate) mod oauth;
pub(crate) mod sealed;
pub(crate) mod soap;
pub(crate) mod user_info;

use std::borrow::Cow;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;

/// `text` as XML character data (quotes need no escape there); a control character, which XML
/// 1.0 cannot carry, as U+FFFD (as `soap::fault` writes it).
fn escape(text: &str) -> Cow<'_, str> {
    let forbidden = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.contains(forbidden) {
        let text: String = text.replace(forbidden, "\u{fffd}");
        return Cow::Owned(quick_xml::escape::partial_escape(&text).into_owned());
    }
    quick_xml::escape::partial_escape(text)
}

/// The character data a text, CDATA or reference event stands for (None for other events);
/// Err(()) for undecodable text or an undeclared entity. The error carries nothing of the text,
/// which may be a password.
fn text_of(event: &Event<'_>) -> Option<Result<Cow<'static, str>, ()>> {
    let text = match event {
        Event::Text(text) => text.xml10_content().map(|t| t.into_owned()).map_err(|_| ()),
        Event::CData(data) => data.xml10_content().map(|t| t.into_owned()).map_err(|_| ()),
        Event::GeneralRef(reference) => match reference.resolve_char_ref() {
            Ok(Some(ch)) => Ok(ch.to_string()),
            Ok(None) => reference
                .decode()
                .ok()
                .and_then(|name| resolve_xml_entity(&name))
                .map(str::to_owned)
                .ok_or(()),
            Err(_) => Err(()),
        },
        _ => return None,
    };
    Some(text.map(Cow::Owned))
}

/// Whether `name` is safe to write as an element name (ASCII name characters only).
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
