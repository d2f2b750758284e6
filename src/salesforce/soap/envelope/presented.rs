//! The caller's own session id, read as the scan passes the first `sessionId` it replaces:
//! text, references and CDATA, trimmed and bounded; anything else in it means there is none.

use std::borrow::Cow;

use quick_xml::events::Event;

use super::markup::is_ws;

/// The longest session id the caller may present (trimmed, unescaped): a longer one is none.
pub(super) const MAX_PRESENTED: usize = 4096;

/// The caller's own session id, as the first `sessionId` the rewrite replaces is read.
pub(super) enum Presented {
    /// No such `sessionId` yet.
    Unseen,
    /// Inside it: its text so far, None once it cannot be one (markup in it, too long, not
    /// text that unescapes).
    Reading(Option<Reading>),
    /// Read: what it holds.
    Read(Option<String>),
}

/// A session id's text so far: leading whitespace skipped, trailing whitespace counted so the
/// bound is on the trimmed text without rescanning it.
pub(super) struct Reading {
    pub(super) text: String,
    /// How many bytes at the end of `text` are whitespace.
    pub(super) tail: usize,
}

impl Reading {
    /// Appends `piece`; false once the trimmed text is longer than the bound.
    pub(super) fn push(&mut self, piece: &str) -> bool {
        let piece = if self.text.is_empty() {
            piece.trim_start_matches(is_xml_ws)
        } else {
            piece
        };
        let trailing = piece.len() - piece.trim_end_matches(is_xml_ws).len();
        if trailing == piece.len() {
            self.tail += piece.len();
        } else {
            self.tail = trailing;
        }
        self.text.push_str(piece);
        self.text.len() - self.tail <= MAX_PRESENTED
    }

    /// The text trimmed; None when that is empty.
    pub(super) fn finish(mut self) -> Option<String> {
        self.text.truncate(self.text.len() - self.tail);
        (!self.text.is_empty()).then_some(self.text)
    }
}

fn is_xml_ws(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_ws)
}

/// One event inside the caller's first `sessionId` (`raw` its bytes as sent): text, a reference
/// and CDATA are its text; anything else but its end tag means it holds no session id.
pub(super) fn read_presented(reading: &mut Option<Reading>, event: &Event<'_>, raw: &[u8]) {
    let Some(current) = reading else {
        return;
    };
    let piece = match event {
        Event::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|s| quick_xml::escape::unescape(s).ok()),
        Event::GeneralRef(_) => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| quick_xml::escape::unescape(s).ok()),
        Event::CData(data) => std::str::from_utf8(data).ok().map(Cow::Borrowed),
        // The end tag is the sessionId's own: a child's would follow its start, refused below.
        Event::End(_) => return,
        _ => None,
    };
    if !piece.is_some_and(|piece| current.push(&piece)) {
        *reading = None;
    }
}
