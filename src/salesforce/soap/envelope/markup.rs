//! The bytes sfproxy writes into an envelope's head, as pieces of the head as sent, and the
//! checks on raw bytes the scan makes before and around quick-xml: byte order marks, whether a
//! parse error means the input ended early, names shown in messages.

use std::ops::Range;

use super::error::EnvelopeError;

/// A piece of the rewritten head.
#[derive(Debug)]
pub(super) enum Piece {
    /// Bytes of the head as sent.
    Orig(Range<usize>),
    Lit(&'static [u8]),
    /// The API's namespace, escaped for an attribute value.
    Namespace,
    /// Where the session id goes.
    Slot,
}

/// `at` in the head as sent becomes `with`.
#[derive(Debug)]
pub(super) struct Edit {
    pub(super) at: Range<usize>,
    pub(super) with: Vec<Piece>,
}

/// The session header sfproxy inserts when the caller sent none.
pub(super) fn session_header() -> Vec<Piece> {
    vec![
        Piece::Lit(b"<SessionHeader xmlns=\""),
        Piece::Namespace,
        Piece::Lit(b"\"><sessionId>"),
        Piece::Slot,
        Piece::Lit(b"</sessionId></SessionHeader>"),
    ]
}

/// `<P:sessionId>…</P:sessionId>`, `prefix` being `P:` (or empty).
pub(super) fn session_id(prefix: &Range<usize>) -> [Piece; 7] {
    [
        Piece::Lit(b"<"),
        Piece::Orig(prefix.clone()),
        Piece::Lit(b"sessionId>"),
        Piece::Slot,
        Piece::Lit(b"</"),
        Piece::Orig(prefix.clone()),
        Piece::Lit(b"sessionId>"),
    ]
}

/// The whole `sessionId` element sfproxy writes in place of the caller's: its name as sent, only
/// the namespace declarations the caller put on it (`decls`, each ` xmlns:p="…"` as sent, so the
/// name resolves as before), the session. Any other attribute (`xsi:type`, `xsi:nil`) is dropped:
/// Salesforce could ignore the session for it, or echo it back in a type fault.
pub(super) fn session_id_element(qname: &Range<usize>, decls: &[Range<usize>]) -> Vec<Piece> {
    let mut with = Vec::with_capacity(6 + 2 * decls.len());
    with.extend([Piece::Lit(b"<"), Piece::Orig(qname.clone())]);
    for decl in decls {
        with.extend([Piece::Lit(b" "), Piece::Orig(decl.clone())]);
    }
    with.extend([
        Piece::Lit(b">"),
        Piece::Slot,
        Piece::Lit(b"</"),
        Piece::Orig(qname.clone()),
        Piece::Lit(b">"),
    ]);
    with
}

/// Whether an attribute's name makes it a namespace declaration (`xmlns`, `xmlns:p`).
pub(super) fn is_declaration(key: &[u8]) -> bool {
    key == b"xmlns" || key.starts_with(b"xmlns:")
}

/// Where `inner`, a slice borrowed from `outer`, starts in it.
pub(super) fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let at = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (at + inner.len() <= outer.len()).then_some(at)
}

/// A self-closing tag at `at` (`<n a="1"/>`, name at `qname`) opened and closed around `inner`.
pub(super) fn expand(
    at: Range<usize>,
    qname: Range<usize>,
    inner: impl IntoIterator<Item = Piece>,
) -> Edit {
    let mut with = vec![Piece::Orig(at.start..at.end - 2), Piece::Lit(b">")];
    with.extend(inner);
    with.extend([Piece::Lit(b"</"), Piece::Orig(qname), Piece::Lit(b">")]);
    Edit { at, with }
}

/// `(prefix, local)` of a qualified name.
pub(super) fn split(qname: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match qname.iter().position(|&b| b == b':') {
        Some(i) => (Some(&qname[..i]), &qname[i + 1..]),
        None => (None, qname),
    }
}

/// A name or namespace from the body as a message may show it: lossy, short, printable.
pub(super) fn shown(bytes: &[u8]) -> String {
    bounded(bytes, 120)
}

/// A parser's error as a message may show it: its text can quote the caller's bytes (names,
/// attribute values), so it is bounded and stripped of control characters like a name.
pub(super) fn shown_error(e: &impl std::fmt::Display) -> String {
    bounded(e.to_string().as_bytes(), 240)
}

fn bounded(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut s: String = text.chars().filter(|c| !c.is_control()).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

pub(super) fn not_xml(reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError::NotXml {
        reason: reason.into(),
    }
}

/// Whether a parse error is what the input ending there gives (markup not closed yet), rather
/// than markup that is wrong whatever follows. `at` is where the markup starts, `end` where the
/// reader stopped, `len` the bytes it had.
pub(super) fn ends_early(e: &quick_xml::Error, at: usize, end: usize, len: usize) -> bool {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    match e {
        // `<!` and nothing after it yet; `<!x` is wrong.
        quick_xml::Error::Syntax(SyntaxError::InvalidBangMarkup) => at + 2 >= len,
        // The reader looked for the markup's end up to the end of the input (or had only its
        // `<`); a complete but wrong one (`<!-x-->`, `<![cdata[x]]>`) stops it before.
        quick_xml::Error::Syntax(_) => end >= len || at + 1 >= len,
        quick_xml::Error::IllFormed(IllFormedError::UnclosedReference) => end == len,
        _ => false,
    }
}

/// `<!DOCTYPE`, in any case (quick-xml reads it so too).
pub(super) fn starts_doctype(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[..9].eq_ignore_ascii_case(b"<!DOCTYPE")
}

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Where XML starts after a UTF-8 byte order mark, once enough is buffered to tell; refuses
/// other encodings' marks and bodies that do not start with markup.
pub(super) fn prelude(view: &[u8], last: bool) -> Result<Option<usize>, EnvelopeError> {
    if view.len() < 4 && !last {
        return Ok(None);
    }
    let marks: [(&[u8], &str); 6] = [
        (
            &[0, 0, 0xfe, 0xff],
            "it starts with a UTF-32 (big-endian) byte order mark",
        ),
        (
            &[0xff, 0xfe, 0, 0],
            "it starts with a UTF-32 (little-endian) byte order mark",
        ),
        (
            &[0xfe, 0xff],
            "it starts with a UTF-16 (big-endian) byte order mark",
        ),
        (
            &[0xff, 0xfe],
            "it starts with a UTF-16 (little-endian) byte order mark",
        ),
        (
            &[0, b'<'],
            "it is UTF-16 (big-endian) without a byte order mark",
        ),
        (
            &[b'<', 0],
            "it is UTF-16 (little-endian) without a byte order mark",
        ),
    ];
    if let Some((_, why)) = marks.iter().find(|(m, _)| view.starts_with(m)) {
        return Err(EnvelopeError::Encoding((*why).to_owned()));
    }
    let bom = if view.starts_with(&[0xef, 0xbb, 0xbf]) {
        3
    } else {
        0
    };
    match view[bom..].iter().find(|&&b| !is_ws(b)) {
        Some(b'<') => Ok(Some(bom)),
        Some(_) => Err(not_xml("it does not start with '<'")),
        None => Ok(last.then_some(bom)),
    }
}
