//! Reading a SOAP envelope: the whole document as a small tree of elements, names resolved to
//! their namespace (any prefix, or a default namespace), entities never expanded beyond XML's
//! five and character references, a DOCTYPE refused as Salesforce refuses it.

use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

pub(super) const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub(super) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Deeper than any envelope a Salesforce client sends; deeper still is refused, not recursed.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Element {
    /// The namespace the element's name resolved to (None: no namespace).
    pub(super) ns: Option<String>,
    pub(super) local: String,
    /// (namespace, local name, value) of each attribute, namespace declarations left out.
    pub(super) attrs: Vec<(Option<String>, String, String)>,
    pub(super) children: Vec<Element>,
    /// The element's own character data (its children's not included), entities resolved.
    pub(super) text: String,
}

impl Element {
    /// The first child element with this local name in namespace `ns` (None: any namespace).
    pub(super) fn child(&self, ns: Option<&str>, local: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.local == local && ns.is_none_or(|ns| c.ns.as_deref() == Some(ns)))
    }

    pub(super) fn children_named<'a>(
        &'a self,
        ns: Option<&'a str>,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.local == local && ns.is_none_or(|ns| c.ns.as_deref() == Some(ns)))
    }

    /// The text of the first child named `local` (any namespace): how Salesforce reads the
    /// arguments of an operation, whose element names clients qualify in many ways.
    pub(super) fn child_text(&self, local: &str) -> Option<&str> {
        self.child(None, local).map(|c| c.text.as_str())
    }

    pub(super) fn attr(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, l, _)| l == local && n.as_deref() == ns)
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether `xsi:nil="true"` is set.
    pub(super) fn is_nil(&self) -> bool {
        self.attr(Some(XSI_NS), "nil")
            .is_some_and(|v| v.trim() == "true" || v.trim() == "1")
    }
}

/// The document's root element, or the reason it is not well-formed XML.
pub(super) fn parse(xml: &[u8]) -> Result<Element, String> {
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let step = reader
            .read_resolved_event()
            .map(|(ns, event)| (owned(ns), event))
            .map_err(|e| e.to_string());
        let (ns, event) = match step {
            Ok(step) => step,
            Err(e) => return Err(format!("{e} (at byte {})", reader.error_position())),
        };
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err("Content is not allowed in trailing section.".into());
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                let element = element(&reader, namespace(&ns, &start)?, &start)?;
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = element(&reader, namespace(&ns, &start)?, &start)?;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err("end tag without a start tag".into());
                };
                attach(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                let text = text.xml10_content().map_err(|e| e.to_string())?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let data = data.xml10_content().map_err(|e| e.to_string())?;
                push_text(&mut stack, &data)?;
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|e| e.to_string())?;
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(ch) => ch.to_string(),
                    None => resolve_xml_entity(&name)
                        .ok_or_else(|| {
                            format!("The entity \"{name}\" was referenced, but not declared.")
                        })?
                        .to_owned(),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => {
                return Err("DOCTYPE is disallowed when the feature \
                            \"http://apache.org/xml/features/disallow-doctype-decl\" set to true."
                    .into());
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("XML document structures must start and end within the same entity.".into());
    }
    root.ok_or_else(|| "Premature end of file.".to_owned())
}

/// A resolved name's namespace, owned: Ok(None) for no namespace, Err(prefix) for an unbound one.
type Resolved = Result<Option<String>, Vec<u8>>;

fn owned(ns: ResolveResult<'_>) -> Resolved {
    match ns {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(prefix),
    }
}

fn namespace(ns: &Resolved, start: &BytesStart<'_>) -> Result<Option<String>, String> {
    ns.clone().map_err(|prefix| {
        format!(
            "The prefix \"{}\" for element \"{}\" is not bound.",
            String::from_utf8_lossy(&prefix),
            String::from_utf8_lossy(start.name().as_ref()),
        )
    })
}

fn element(
    reader: &NsReader<&[u8]>,
    ns: Option<String>,
    start: &BytesStart<'_>,
) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let (attr_ns, local) = reader.resolver().resolve_attribute(attr.key);
        let attr_ns = owned(attr_ns).map_err(|prefix| {
            format!(
                "The prefix \"{}\" for attribute \"{}\" is not bound.",
                String::from_utf8_lossy(&prefix),
                String::from_utf8_lossy(attr.key.as_ref()),
            )
        })?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        attrs.push((
            attr_ns,
            String::from_utf8_lossy(local.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        ns,
        local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Character data belongs to the open element; outside the root only whitespace may appear.
fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(open) => {
            open.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("Content is not allowed in prolog.".into()),
    }
}

/// A SOAP 1.1 envelope's parts: the Header (if any) and the operation, the Body's first child.
pub(super) struct Envelope<'a> {
    pub(super) header: Option<&'a Element>,
    pub(super) operation: &'a Element,
}

/// Splits a parsed document into header and operation, or says why it is no SOAP 1.1 call.
pub(super) fn envelope(root: &Element) -> Result<Envelope<'_>, String> {
    if root.local != "Envelope" || root.ns.as_deref() != Some(SOAP_ENV_NS) {
        return Err(format!(
            "Element {{{}}}{} is not a SOAP 1.1 Envelope ({SOAP_ENV_NS})",
            root.ns.as_deref().unwrap_or(""),
            root.local
        ));
    }
    let header = root.child(Some(SOAP_ENV_NS), "Header");
    let body = root
        .child(Some(SOAP_ENV_NS), "Body")
        .ok_or_else(|| "Missing SOAP Body".to_owned())?;
    let operation = body
        .children
        .first()
        .ok_or_else(|| "Missing operation: the SOAP Body is empty".to_owned())?;
    Ok(Envelope { header, operation })
}

/// The local name of the Body's first child, found even when the rest of the call is not
/// usable (for the record of what arrived).
pub(super) fn operation_name(root: &Element) -> String {
    root.child(Some(SOAP_ENV_NS), "Body")
        .and_then(|body| body.children.first())
        .map(|op| op.local.clone())
        .unwrap_or_default()
}

/// XML-escapes `text` for element content and attribute values. `\r` is written as a character
/// reference so a parser hands it back as it was (XML turns a literal CR LF into LF).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(ch),
        }
    }
    out
}
