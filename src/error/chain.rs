//! An error and its sources as one line, for log lines and messages.
//!
//! A module of its own, below [`ProxyError`](super::ProxyError): the modules whose errors
//! `error.rs` maps (the token client among them) use it too, without an import cycle.

/// An error and its sources on one line: "client error (Connect): tcp connect error: refused".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
