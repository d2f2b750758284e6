//! What broke a gzip SOAP envelope's rest as it streamed: when it turns out to be broken or
//! larger than `max_body` once inflated, the send fails, and [`Inflating`] holds the refusal to
//! answer with instead of the send's own failure (which would blame the caller's connection).

use std::sync::{Arc, Mutex, PoisonError};

use http::Response;
use http_body_util::BodyExt;

use crate::{
    body::{BodyError, ProxyBody, gzip::GzipError},
    error::ProxyError,
};

/// An answer, or the refusal that replaces it.
type Answer = Result<Response<ProxyBody>, ProxyError>;

/// What broke a gzip envelope's rest as it was inflated, if anything did.
#[derive(Default, Clone)]
pub(crate) struct Inflating(Arc<Mutex<Option<ProxyError>>>);

impl Inflating {
    pub(super) fn watch(&self, rest: ProxyBody) -> ProxyBody {
        let seen = self.0.clone();
        rest.map_err(move |error: BodyError| {
            if let Some(broken) = error.0.downcast_ref::<GzipError>() {
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(broken.clone().into());
            }
            error
        })
        .boxed_unsync()
    }

    /// The answer to give instead of `answer` when the envelope's rest broke as it was inflated.
    pub(crate) fn judge(&self, answer: Answer) -> Answer {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(refusal) => Err(refusal),
            None => answer,
        }
    }
}
