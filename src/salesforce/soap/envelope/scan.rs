//! The envelope's head, read as XML events with their byte offsets, up to the start of its Body:
//! where the session goes, as edits of the bytes sent, and the Body's first element.
//!
//! Only a `SessionHeader` in the API's namespace, a direct child of the SOAP `Header`, is the
//! caller's session header, and only a `sessionId` in that namespace, its direct child, is its
//! session: a `SessionHeader` in any other namespace is content, kept byte for byte, and the real
//! one is inserted as if it were not there (else Salesforce would see no session, answer
//! `INVALID_SESSION_ID`, and sfproxy would drop the session every caller shares). The `sessionId`
//! is written whole, keeping only its namespace declarations; a `SessionHeader` with any other
//! attribute (`soapenv:actor`, `soapenv:mustUnderstand`, `xsi:nil`) is refused, as Salesforce
//! would ignore it.
//!
//! Past the Body's start the scan goes on to the Body's first element, the call: only the Body
//! ending (or the request body ending) means there is none. The call's start tag not complete
//! within the bound is `TooLarge`, markup that is not XML before it `NotXml`: a `logout` hidden
//! behind 70 kB of whitespace or a comment still is a `logout`, and never reaches Salesforce.
//!
//! A scan resumes: it is handed the bytes buffered so far and parses from the last complete
//! event, so bytes arriving one at a time cost no more than one parse of the head. Each attempt
//! runs quick-xml's `Reader` over a slice (namespaces are resolved here, with the bindings of the
//! few elements that matter), never expanding an entity and never writing XML back out.

use std::borrow::Cow;
use std::ops::Range;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::error::{EnvelopeError, Unstarted};
use super::markup::{
    Edit, Piece, ends_early, expand, is_declaration, is_ws, not_xml, offset_in, prelude,
    session_header, session_id, session_id_element, shown, shown_error, split, starts_doctype,
};
use super::presented::{Presented, Reading, read_presented};

const SOAP11: &[u8] = b"http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &[u8] = b"http://www.w3.org/2003/05/soap-envelope";

/// The first element in the Body, e.g. `query` in urn:partner.soap.sforce.com
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    /// Empty when the element is in no namespace (or its prefix is undeclared).
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A complete head: its edits, where it ends (just after the Body start tag), the operation,
/// the caller's own session id. No `Debug`: that id is a credential.
pub(super) struct Found {
    pub(super) edits: Vec<Edit>,
    pub(super) end: usize,
    pub(super) operation: Option<Operation>,
    /// The text of the first `sessionId` the rewrite replaces: unescaped, CDATA included,
    /// trimmed; None when there is none, it is empty, too long, or has markup in it.
    pub(super) presented: Option<String>,
}

pub(super) enum Progress {
    /// The bytes so far end inside the head (or before the operation): read more.
    More,
    Done(Found),
}

/// What an open element is to the rewrite.
enum Role {
    Envelope,
    Header {
        has_session: bool,
        open_end: usize,
    },
    SessionHeader {
        qname: Range<usize>,
        has_id: bool,
    },
    SessionId {
        /// Where its start tag starts.
        start: usize,
        /// Its namespace declarations, each `xmlns:p="…"` as sent.
        decls: Vec<Range<usize>>,
    },
    Body,
    Other,
}

/// The role of an element's parent, as far as what the element may be goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Root,
    Envelope,
    Header,
    SessionHeader,
    Body,
    /// Anything else: the element is content.
    Other,
}

struct Open {
    qname: Range<usize>,
    role: Role,
}

/// A namespace declaration in scope, on an open element at `depth` (1: the Envelope) whose
/// children matter: the Envelope, the Header, a SessionHeader, the Body, the Body's first child.
struct Binding {
    prefix: Vec<u8>,
    uri: Vec<u8>,
    depth: usize,
}

pub(super) struct Scan<'a> {
    /// The API's namespace: the one its `SessionHeader` and `sessionId` are in.
    namespace: &'a [u8],
    /// Where the next event starts: everything before it has been read.
    pos: usize,
    /// Parse again only when this many bytes follow `pos` (twice what was incomplete).
    retry: usize,
    prelude_done: bool,
    stack: Vec<Open>,
    ns: Vec<Binding>,
    seen_header: bool,
    /// The Envelope's prefix with its colon (empty when it uses the default namespace).
    envelope_prefix: Range<usize>,
    edits: Vec<Edit>,
    end: Option<usize>,
    presented: Presented,
}

impl<'a> Scan<'a> {
    /// A scan for an envelope of the API whose namespace is `namespace`.
    pub(super) fn new(namespace: &'a [u8]) -> Self {
        Self {
            namespace,
            pos: 0,
            retry: 0,
            prelude_done: false,
            stack: Vec::new(),
            ns: Vec::new(),
            seen_header: false,
            envelope_prefix: 0..0,
            edits: Vec::new(),
            end: None,
            presented: Presented::Unseen,
        }
    }

    /// Whether `len` bytes buffered are worth another attempt.
    pub(super) fn ready(&self, len: usize) -> bool {
        len.saturating_sub(self.pos) >= self.retry
    }

    /// Parses on from the last complete event. `view` is the body's first bytes, at most the
    /// bound; `last` says no more will come (the body ended, or the bound was reached), `cut`
    /// that the body goes on past `view` (so a head not complete in it is too large).
    pub(super) fn run(
        &mut self,
        view: &[u8],
        last: bool,
        cut: bool,
    ) -> Result<Progress, EnvelopeError> {
        if !self.prelude_done {
            match prelude(view, last)? {
                Some(start) => {
                    self.pos = start;
                    self.prelude_done = true;
                }
                None => return self.incomplete(view, last, cut),
            }
        }
        let base = self.pos;
        let mut reader = Reader::from_reader(&view[base..]);
        let config = reader.config_mut();
        // Names are matched here: a reader restarted mid-document knows no open elements.
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        loop {
            let start = base + reader.buffer_position() as usize;
            let event = reader.read_event();
            let end = base + reader.buffer_position() as usize;
            let event = match event {
                Ok(Event::Eof) => return self.incomplete(view, last, cut),
                // Text up to the end of what is buffered may go on.
                Ok(Event::Text(_)) if end == view.len() && !last => {
                    return self.incomplete(view, last, cut);
                }
                Ok(event) => event,
                Err(e) => {
                    let at = base + reader.error_position() as usize;
                    if starts_doctype(&view[at.min(view.len())..]) {
                        return Err(EnvelopeError::Doctype);
                    }
                    if ends_early(&e, at, end, view.len()) {
                        return self.incomplete(view, last, cut);
                    }
                    // Before the call in the Body too: what is not XML there may hide one.
                    return Err(not_xml(format!("at byte {at}: {}", shown_error(&e))));
                }
            };
            if let Some(found) = self.event(event, start..end, view)? {
                return Ok(Progress::Done(found));
            }
            self.pos = end;
        }
    }

    /// The bytes so far end inside an event: wait for more, or say what that means at the end.
    fn incomplete(
        &mut self,
        view: &[u8],
        last: bool,
        cut: bool,
    ) -> Result<Progress, EnvelopeError> {
        if !last {
            self.retry = (2 * (view.len() - self.pos)).max(1);
            return Ok(Progress::More);
        }
        let what = if self.end.is_some() {
            Unstarted::Call
        } else {
            Unstarted::Body
        };
        if cut {
            return Err(EnvelopeError::TooLarge {
                limit: view.len(),
                what,
            });
        }
        // The request body ended in the Body before any call: there is none to look at (and
        // Salesforce answers for an envelope cut short).
        if self.end.is_some() {
            return Ok(Progress::Done(self.finish(None)));
        }
        Err(EnvelopeError::Truncated)
    }

    fn finish(&mut self, operation: Option<Operation>) -> Found {
        Found {
            edits: std::mem::take(&mut self.edits),
            end: self.end.unwrap_or(self.pos),
            operation,
            presented: match std::mem::replace(&mut self.presented, Presented::Read(None)) {
                Presented::Read(id) => id,
                Presented::Unseen | Presented::Reading(_) => None,
            },
        }
    }

    fn event(
        &mut self,
        event: Event<'_>,
        at: Range<usize>,
        buf: &[u8],
    ) -> Result<Option<Found>, EnvelopeError> {
        if let Presented::Reading(reading) = &mut self.presented {
            read_presented(reading, &event, &buf[at.clone()]);
        }
        match event {
            Event::DocType(_) => Err(EnvelopeError::Doctype),
            Event::Decl(decl) => {
                if !self.stack.is_empty() || self.end.is_some() {
                    return Err(not_xml(
                        "an XML declaration follows the root element's start",
                    ));
                }
                match decl.encoding() {
                    Some(Ok(enc)) if enc.eq_ignore_ascii_case(b"utf-8") => Ok(None),
                    None => Ok(None),
                    Some(Ok(enc)) => Err(EnvelopeError::Encoding(format!(
                        "its XML declaration names the encoding {}",
                        shown(&enc)
                    ))),
                    Some(Err(e)) => {
                        Err(not_xml(format!("its XML declaration: {}", shown_error(&e))))
                    }
                }
            }
            Event::Text(text) if self.stack.is_empty() && self.end.is_none() => {
                if text.iter().all(|&b| is_ws(b)) {
                    Ok(None)
                } else {
                    Err(not_xml("it has text before its root element"))
                }
            }
            Event::GeneralRef(_) | Event::CData(_) if self.stack.is_empty() => {
                Err(not_xml("it has text before its root element"))
            }
            Event::Start(e) => self.element(&e, false, at),
            Event::Empty(e) => self.element(&e, true, at),
            Event::End(e) => self.end_tag(e.name().as_ref(), at, buf),
            _ => Ok(None),
        }
    }

    fn element(
        &mut self,
        e: &BytesStart<'_>,
        empty: bool,
        at: Range<usize>,
    ) -> Result<Option<Found>, EnvelopeError> {
        let qname = e.name();
        let qname = qname.as_ref();
        let name = at.start + 1..at.start + 1 + qname.len();
        let (prefix, local) = split(qname);
        let prefix_range = name.start..name.start + prefix.map_or(0, |p| p.len() + 1);
        let parent = match self.stack.last().map(|o| &o.role) {
            None => Parent::Root,
            Some(Role::Envelope) => Parent::Envelope,
            Some(Role::Header { .. }) => Parent::Header,
            Some(Role::SessionHeader { .. }) => Parent::SessionHeader,
            Some(Role::Body) => Parent::Body,
            Some(Role::SessionId { .. } | Role::Other) => Parent::Other,
        };
        if parent == Parent::Other {
            if !empty {
                self.stack.push(Open {
                    qname: name,
                    role: Role::Other,
                });
            }
            return Ok(None);
        }
        let depth = self.stack.len() + 1;
        self.bind(e, depth)?;
        let role = match parent {
            Parent::Root => {
                if self.end.is_some() {
                    return Err(not_xml("it has a second root element"));
                }
                let ns = self.resolve(prefix);
                if local != b"Envelope" || ns != Some(SOAP11) {
                    return Err(self.no_envelope(qname, ns));
                }
                if empty {
                    return Err(EnvelopeError::NoBody);
                }
                self.envelope_prefix = prefix_range;
                Role::Envelope
            }
            Parent::Envelope => {
                let soap = self.resolve(prefix) == Some(SOAP11);
                if soap && local == b"Body" {
                    if !self.seen_header {
                        let p = self.envelope_prefix.clone();
                        let mut with = vec![Piece::Lit(b"<"), Piece::Orig(p.clone())];
                        with.push(Piece::Lit(b"Header>"));
                        with.extend(session_header());
                        with.extend([Piece::Lit(b"</"), Piece::Orig(p), Piece::Lit(b"Header>")]);
                        self.edits.push(Edit {
                            at: at.start..at.start,
                            with,
                        });
                    }
                    self.end = Some(at.end);
                    if empty {
                        return Ok(Some(self.finish(None)));
                    }
                    Role::Body
                } else if soap && local == b"Header" && !self.seen_header {
                    self.seen_header = true;
                    if empty {
                        self.edits
                            .push(expand(at.clone(), name.clone(), session_header()));
                    }
                    Role::Header {
                        has_session: false,
                        open_end: at.end,
                    }
                } else {
                    Role::Other
                }
            }
            Parent::Header if local == b"SessionHeader" && self.in_api(prefix) => {
                if let Some(attr) = foreign_attribute(e)? {
                    return Err(EnvelopeError::SessionHeaderAttribute { name: shown(attr) });
                }
                if let Some(Open {
                    role: Role::Header { has_session, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    *has_session = true;
                }
                if empty {
                    let inner = session_id(&prefix_range);
                    self.edits.push(expand(at.clone(), name.clone(), inner));
                }
                Role::SessionHeader {
                    qname: name.clone(),
                    has_id: false,
                }
            }
            Parent::SessionHeader if local == b"sessionId" && self.in_api(prefix) => {
                if let Some(Open {
                    role: Role::SessionHeader { has_id, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    *has_id = true;
                }
                let decls = declarations(e, at.start)?;
                if matches!(self.presented, Presented::Unseen) {
                    self.presented = if empty {
                        Presented::Read(None)
                    } else {
                        Presented::Reading(Some(Reading {
                            text: String::new(),
                            tail: 0,
                        }))
                    };
                }
                if empty {
                    self.edits.push(Edit {
                        at: at.clone(),
                        with: session_id_element(&name, &decls),
                    });
                }
                Role::SessionId {
                    start: at.start,
                    decls,
                }
            }
            Parent::Body => {
                // Compared, never shown: kept as sent (XML names and URIs are UTF-8).
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let operation = Operation {
                    namespace: self.resolve(prefix).map(text).unwrap_or_default(),
                    name: text(local),
                };
                return Ok(Some(self.finish(Some(operation))));
            }
            Parent::Header | Parent::SessionHeader | Parent::Other => Role::Other,
        };
        if empty || matches!(role, Role::Other) {
            // Nothing inside it is looked at: its declarations served its own name only.
            self.unbind(depth);
        }
        if !empty {
            self.stack.push(Open { qname: name, role });
        }
        Ok(None)
    }

    /// Whether an element with `prefix`, its own declarations bound, is in the API's namespace.
    fn in_api(&self, prefix: Option<&[u8]>) -> bool {
        self.resolve(prefix) == Some(self.namespace)
    }

    fn end_tag(
        &mut self,
        name: &[u8],
        at: Range<usize>,
        buf: &[u8],
    ) -> Result<Option<Found>, EnvelopeError> {
        let Some(open) = self.stack.pop() else {
            return Err(not_xml(format!(
                "the end tag </{}> closes no element",
                shown(name)
            )));
        };
        let expected = &buf[open.qname.clone()];
        if name != expected {
            return Err(not_xml(format!(
                "the end tag </{}> does not match <{}>",
                shown(name),
                shown(expected)
            )));
        }
        self.unbind(self.stack.len() + 1);
        match open.role {
            Role::Envelope => return Err(EnvelopeError::NoBody),
            Role::Header {
                has_session,
                open_end,
            } => {
                if !has_session {
                    self.edits.push(Edit {
                        at: open_end..open_end,
                        with: session_header(),
                    });
                }
            }
            Role::SessionHeader { qname, has_id } => {
                if !has_id {
                    let (prefix, _) = split(&buf[qname.clone()]);
                    let p = qname.start..qname.start + prefix.map_or(0, |p| p.len() + 1);
                    self.edits.push(Edit {
                        at: at.start..at.start,
                        with: session_id(&p).into(),
                    });
                }
            }
            Role::SessionId { start, decls } => {
                if let Presented::Reading(reading) = &mut self.presented {
                    self.presented = Presented::Read(reading.take().and_then(Reading::finish));
                }
                self.edits.push(Edit {
                    at: start..at.end,
                    with: session_id_element(&open.qname, &decls),
                });
            }
            Role::Body => return Ok(Some(self.finish(None))),
            Role::Other => {}
        }
        Ok(None)
    }

    /// Keeps the namespace declarations of an element at `depth`.
    fn bind(&mut self, e: &BytesStart<'_>, depth: usize) -> Result<(), EnvelopeError> {
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| malformed(e, &err))?;
            let key = attr.key.as_ref();
            let prefix = match key.strip_prefix(b"xmlns") {
                Some([]) => &[][..],
                Some([b':', prefix @ ..]) => prefix,
                _ => continue,
            };
            let raw = attr.value.as_ref();
            let uri = match std::str::from_utf8(raw).map(quick_xml::escape::unescape) {
                Ok(Ok(Cow::Owned(s))) => s.into_bytes(),
                _ => raw.to_vec(),
            };
            self.ns.push(Binding {
                prefix: prefix.to_vec(),
                uri,
                depth,
            });
        }
        Ok(())
    }

    fn unbind(&mut self, depth: usize) {
        while self.ns.last().is_some_and(|b| b.depth >= depth) {
            self.ns.pop();
        }
    }

    /// The namespace a prefix (or none: the default) stands for; `Some(b"")` for no namespace,
    /// `None` for an undeclared prefix.
    fn resolve(&self, prefix: Option<&[u8]>) -> Option<&[u8]> {
        let want = prefix.unwrap_or_default();
        match self.ns.iter().rev().find(|b| b.prefix == want) {
            Some(b) => Some(&b.uri),
            None if prefix.is_none() => Some(b""),
            None => None,
        }
    }

    fn no_envelope(&self, qname: &[u8], ns: Option<&[u8]>) -> EnvelopeError {
        let (prefix, local) = split(qname);
        let root = match ns {
            Some(b"") => format!("{} (in no namespace)", shown(local)),
            Some(ns) => format!("{{{}}}{}", shown(ns), shown(local)),
            None => format!(
                "{} (its prefix {} is not declared)",
                shown(qname),
                shown(prefix.unwrap_or_default())
            ),
        };
        let hint = if ns == Some(SOAP12) {
            "; SOAP 1.2 is not accepted: Salesforce's SOAP API takes SOAP 1.1"
        } else {
            ""
        };
        EnvelopeError::NoEnvelope { root, hint }
    }
}

fn malformed(e: &BytesStart<'_>, err: &impl std::fmt::Display) -> EnvelopeError {
    not_xml(format!(
        "an attribute of <{}> is malformed: {}",
        shown(e.name().as_ref()),
        shown_error(err)
    ))
}

/// The name of the first attribute of `e` that is not a namespace declaration.
fn foreign_attribute<'e>(e: &'e BytesStart<'_>) -> Result<Option<&'e [u8]>, EnvelopeError> {
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|err| malformed(e, &err))?;
        let key = attr.key.into_inner();
        if !is_declaration(key) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Where the namespace declarations of `e`, a start tag at `tag` in the body, are: each from
/// its name to its closing quote. None is the common case, and costs no allocation.
fn declarations(e: &BytesStart<'_>, tag: usize) -> Result<Vec<Range<usize>>, EnvelopeError> {
    // The tag's bytes between `<` and `>` (or `/>`): the attributes are borrowed from them.
    let content: &[u8] = e;
    let mut decls = Vec::new();
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|err| malformed(e, &err))?;
        let key = attr.key.into_inner();
        if !is_declaration(key) {
            continue;
        }
        let (Some(from), Cow::Borrowed(value)) = (offset_in(content, key), &attr.value) else {
            return Err(malformed(e, &"it cannot be located"));
        };
        let Some(value_at) = offset_in(content, value) else {
            return Err(malformed(e, &"it cannot be located"));
        };
        // The closing quote follows the value.
        let to = (value_at + value.len() + 1).min(content.len());
        decls.push(tag + 1 + from..tag + 1 + to);
    }
    Ok(decls)
}
