//! What a caller reads when its envelope cannot carry the session.

use crate::body::{BodyError, gzip};

/// Why an envelope cannot carry the session. Each message is what a caller reads in the SOAP
/// fault: what is wrong and what sfproxy accepts, naming at most elements, never content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error(
        "the request body is not XML: {reason}; a SOAP call's body must be a SOAP 1.1 envelope \
         in UTF-8"
    )]
    NotXml { reason: String },
    #[error(
        "the request body is not a SOAP 1.1 envelope: its root element is {root}, not Envelope \
         in http://schemas.xmlsoap.org/soap/envelope/{hint}"
    )]
    NoEnvelope { root: String, hint: &'static str },
    #[error(
        "the SOAP envelope has no Body: the Envelope ends before a Body element in \
         http://schemas.xmlsoap.org/soap/envelope/"
    )]
    NoBody,
    #[error("the request body is not UTF-8: {0}; sfproxy accepts SOAP envelopes in UTF-8 only")]
    Encoding(String),
    #[error(
        "the request body has a DOCTYPE declaration, which a SOAP message must not have: \
         sfproxy refuses it (it never expands entities)"
    )]
    Doctype,
    #[error("{}", what.message(*limit))]
    TooLarge { limit: usize, what: Unstarted },
    #[error(
        "the SOAP envelope's SessionHeader carries the attribute {name}, which would make \
         Salesforce ignore the session sfproxy writes in it; send the SessionHeader without it \
         (namespace declarations are fine)"
    )]
    SessionHeaderAttribute { name: String },
    #[error("the request body ended before the SOAP envelope's Body started")]
    Truncated,
    #[error("the request body is not valid gzip (it was sent with Content-Encoding: gzip): {0}")]
    Gzip(String),
    #[error(
        "Content-Encoding {0} is not supported on SOAP calls: sfproxy accepts gzip, or no \
         Content-Encoding (identity)"
    )]
    ContentEncoding(String),
    #[error("reading the request body failed: {0}")]
    Body(#[source] BodyError),
    #[error(
        "the request body is larger than the limit of {limit} bytes once decompressed \
         (Content-Encoding: gzip)"
    )]
    InflatedTooLarge { limit: u64 },
}

/// What did not start within `max_header_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unstarted {
    /// The envelope's Body.
    Body,
    /// The call: the Body's first element (which sfproxy reads to keep `logout` and
    /// `invalidateSessions` from Salesforce).
    Call,
}

impl Unstarted {
    fn message(self, limit: usize) -> String {
        match self {
            Self::Body => format!(
                "the SOAP envelope's Body does not start within its first {limit} bytes: sfproxy \
                 reads at most that much of an envelope (max_header_bytes) to put the session in \
                 its Header"
            ),
            Self::Call => format!(
                "the call in the SOAP envelope's Body (the Body's first element) does not start \
                 within the envelope's first {limit} bytes: sfproxy reads at most that much of an \
                 envelope (max_header_bytes) to put the session in its Header and to see which \
                 call it makes"
            ),
        }
    }
}

impl From<BodyError> for EnvelopeError {
    fn from(e: BodyError) -> Self {
        match e.0.downcast_ref::<gzip::GzipError>() {
            Some(gzip::GzipError::TooLarge { limit }) => Self::InflatedTooLarge { limit: *limit },
            Some(gzip::GzipError::Invalid(why)) => Self::Gzip((*why).to_owned()),
            None => Self::Body(e),
        }
    }
}
