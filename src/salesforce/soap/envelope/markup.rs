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
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    let mut s: String = text.chars().filter(|c| !c.is_control()).collect();
    if bytes.len() > 120 {
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
        quick_xml::Error::Syntax(_) => true,
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
