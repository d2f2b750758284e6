//! The session goes in the envelope: Salesforce's SOAP API reads it only from
//! `<soapenv:Header><SessionHeader><sessionId>`, never from an HTTP header, so sfproxy writes the
//! route's session there.
//!
//! `open` reads the caller's body only up to the start of the envelope's Body and the start tag
//! of the Body's first element (the call), bounded by `max_header_bytes`, and keeps the head up to
//! the Body's start as a [`Template`]: its bytes as sent, split where the session goes. A
//! `sessionId` the caller sent in the API's namespace (in a `SessionHeader` in it, a direct child
//! of the `Header`) is written anew whole, keeping only its namespace declarations; a missing one,
//! a missing `SessionHeader` or `Header` is added; a `SessionHeader` in another namespace is
//! content. Everything else is kept byte for byte and the rest of the body streams on untouched,
//! so a 100 MB envelope costs one bounded head. A gzipped
//! body (Salesforce's Java WSC client gzips by default) is inflated as it streams and the
//! outgoing body deflated again. DOCTYPEs are refused: no entity is ever expanded.

mod error;
mod markup;
mod presented;
mod scan;

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::api::SoapApi;
use crate::body::{self, BodyError, ProxyBody, gzip};
pub(crate) use error::EnvelopeError;
use markup::{Edit, Piece};
pub(crate) use scan::Operation;
use scan::{Found, Progress, Scan};

/// The bounds of an envelope's reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most (decoded) bytes read to find the Body's start and its first element's start
    /// tag: an envelope whose Body, or the call in it, does not start within them is refused.
    pub(crate) max_header_bytes: usize,
    /// The most bytes a gzipped body may inflate to.
    pub(crate) max_body: u64,
}

/// The request's Content-Encoding: none/identity, or gzip; anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// `Content-Encoding` absent or `identity`: `Identity`; `gzip` (or `x-gzip`) once: `Gzip`.
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Result<Self, EnvelopeError> {
        let mut gzip = false;
        for value in headers.get_all(http::header::CONTENT_ENCODING) {
            let Ok(text) = value.to_str() else {
                return Err(EnvelopeError::ContentEncoding(
                    "(a value that is not ASCII)".into(),
                ));
            };
            for coding in text.split(',').map(str::trim) {
                if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
                    continue;
                }
                let is_gzip =
                    coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip");
                if !is_gzip || gzip {
                    return Err(EnvelopeError::ContentEncoding(markup::shown(
                        text.as_bytes(),
                    )));
                }
                gzip = true;
            }
        }
        Ok(if gzip { Self::Gzip } else { Self::Identity })
    }
}

/// An envelope read to its Body: the head as a template, the rest of the body, the operation.
pub(crate) struct Opened {
    pub(crate) template: Template,
    /// The body after the head, decoded when the caller's was gzipped.
    pub(crate) rest: ProxyBody,
    pub(crate) operation: Option<Operation>,
    /// The caller's own session id: the text of the first `sessionId` the rewrite replaces (in
    /// the API's namespace, in its `SessionHeader` in the Header), unescaped, CDATA included,
    /// trimmed. None when there is none, it is empty or longer than 4096 bytes, or it holds
    /// markup (an element, a comment). A credential: never logged, never in a message.
    pub(crate) presented: Option<String>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("template", &self.template)
            .field("operation", &self.operation)
            .field("presented", &self.presented.is_some())
            .finish_non_exhaustive()
    }
}

/// The envelope's head split at each place the session goes.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    /// The head's bytes, one more part than there are slots: a slot between each two.
    parts: Vec<Bytes>,
    /// Whether the body goes out gzipped (the caller's was).
    gzip: bool,
    /// The rest's length, when the caller sent a Content-Length and the body is not gzipped.
    rest_len: Option<u64>,
}

impl Template {
    /// One send's body: the head with `session_id` (XML-escaped) in each slot, then `rest`
    /// (the decoded remainder, or a kept copy of it), gzip-compressed again as a whole stream when
    /// the caller's was; and the Content-Length to send: Some(head len + rest len) when the caller sent
    /// a Content-Length and the body is not gzipped, None otherwise (send chunked / no CL).
    pub(crate) fn body(&self, session_id: &str, rest: ProxyBody) -> (ProxyBody, Option<u64>) {
        let head = self.head(session_id);
        let len = self.rest_len.map(|rest| head.len() as u64 + rest);
        let body = body::prepend(head, rest);
        if self.gzip {
            (gzip::encode(body), None)
        } else {
            (body, len)
        }
    }

    /// The head with `session_id` in each slot.
    fn head(&self, session_id: &str) -> Bytes {
        let id = escape_text(session_id);
        let fixed: usize = self.parts.iter().map(Bytes::len).sum();
        let slots = self.parts.len().saturating_sub(1);
        let mut head = BytesMut::with_capacity(fixed + slots * id.len());
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                head.extend_from_slice(id.as_bytes());
            }
            head.extend_from_slice(part);
        }
        head.freeze()
    }

    /// How many places the session goes (one per `SessionHeader`).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.parts.len().saturating_sub(1)
    }
}

/// Text content escaped: `&`, `<` and `>` (the last for `]]>`).
fn escape_text(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| matches!(b, b'&' | b'<' | b'>')) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The body's first bytes, up to the bound, copied only when the head spans frames.
struct Head {
    /// The only frame so far (no copy).
    one: Bytes,
    /// Frames gathered (once a second arrives).
    many: BytesMut,
    /// The part of the last frame past the bound: it goes back in front of the rest.
    spill: Bytes,
    max: usize,
}

impl Head {
    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.one.is_empty() && self.many.is_empty() {
            let take = data.len().min(self.max);
            self.spill = data.slice(take..);
            self.one = data.slice(..take);
            return;
        }
        if !self.one.is_empty() {
            self.many
                .reserve((self.one.len() + data.len()).min(self.max));
            self.many.extend_from_slice(&self.one);
            self.one = Bytes::new();
        }
        let take = data.len().min(self.max - self.many.len());
        self.many.extend_from_slice(&data[..take]);
        self.spill = data.slice(take..);
    }

    fn view(&self) -> &[u8] {
        if self.many.is_empty() {
            &self.one
        } else {
            &self.many
        }
    }

    fn full(&self) -> bool {
        self.view().len() >= self.max
    }

    /// The head's bytes, and what was read past them.
    fn split(self, end: usize) -> (Bytes, Bytes, Bytes) {
        let all = if self.many.is_empty() {
            self.one
        } else {
            self.many.freeze()
        };
        (all.slice(..end), all.slice(end..), self.spill)
    }
}

/// Reads the envelope up to the start of its Body and the start tag of the Body's first element,
/// bounded by max_header_bytes (decoded bytes); returns the template (the head split where the
/// session goes), the rest of the body (DECODED when the caller gzipped: inflating as it
/// streams, total inflated bytes bounded by limits.max_body, past which the rest body yields an
/// error whose Display says the body is larger than the limit), and the first operation: None
/// only when the Body ends (or the request body does) before any element in it.
pub(crate) async fn open(
    body: ProxyBody,
    api: &SoapApi,
    encoding: Encoding,
    content_length: Option<u64>,
    limits: &Limits,
) -> Result<Opened, EnvelopeError> {
    let gzipped = encoding == Encoding::Gzip;
    let mut source = if gzipped {
        gzip::decode(body, limits.max_body)
    } else {
        body
    };
    let mut head = Head {
        one: Bytes::new(),
        many: BytesMut::new(),
        spill: Bytes::new(),
        max: limits.max_header_bytes,
    };
    let namespace = api.namespace();
    let mut scan = Scan::new(namespace.as_bytes());
    let mut ended = false;
    let mut trailers = None;
    let found = loop {
        let last = ended || head.full();
        if last || scan.ready(head.view().len()) {
            let cut = head.full() && (!ended || !head.spill.is_empty());
            match scan.run(head.view(), last, cut)? {
                Progress::Done(found) => break found,
                Progress::More if last => return Err(EnvelopeError::Truncated),
                Progress::More => {}
            }
        }
        match source.frame().await {
            None => ended = true,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => head.push(data),
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    ended = true;
                }
            },
        }
    };
    let Found {
        edits,
        end,
        operation,
        presented,
    } = found;
    let (bytes, after, spill) = head.split(end);
    let template = Template {
        parts: parts(&bytes, edits, &namespace),
        gzip: gzipped,
        rest_len: content_length
            .filter(|_| !gzipped)
            .and_then(|len| len.checked_sub(end as u64)),
    };
    let tail = match trailers {
        Some(t) => {
            let once = futures_util::stream::iter([Ok::<_, BodyError>(Frame::trailers(t))]);
            StreamBody::new(once).boxed_unsync()
        }
        None => source,
    };
    let rest = body::prepend(after, body::prepend(spill, tail));
    Ok(Opened {
        template,
        rest,
        operation,
        presented,
    })
}

/// The head's bytes with the edits made, split at each slot.
fn parts(head: &Bytes, mut edits: Vec<Edit>, namespace: &str) -> Vec<Bytes> {
    edits.sort_by_key(|e| e.at.start);
    let namespace = quick_xml::escape::escape(namespace);
    let mut out = BytesMut::with_capacity(head.len() + 160 + namespace.len());
    let mut parts = Vec::with_capacity(edits.len() + 1);
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(&head[at..edit.at.start]);
        for piece in edit.with {
            match piece {
                Piece::Orig(range) => out.extend_from_slice(&head[range]),
                Piece::Lit(lit) => out.extend_from_slice(lit),
                Piece::Namespace => out.extend_from_slice(namespace.as_bytes()),
                Piece::Slot => parts.push(out.split().freeze()),
            }
        }
        at = edit.at.end;
    }
    out.extend_from_slice(&head[at..]);
    parts.push(out.freeze());
    parts
}

#[cfg(test)]
mod tests;
