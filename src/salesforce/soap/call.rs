//! A SOAP request opened as a call: its envelope read to the Body (see [`envelope`]), the body
//! left to stream on as the envelope's rest, inflated when the caller gzipped it. Opened once,
//! by whichever stage needs the envelope first (logins, to read a login or the caller's session
//! id; else the session stage).
//!
//! When a gzip envelope's rest turns out to be broken or larger than `max_body` once inflated,
//! the send fails, and [`Inflating`] holds the refusal to answer with instead of the send's own
//! failure (which would blame the caller's connection).

use std::sync::{Arc, Mutex, PoisonError};

use http::{Request, header};
use http_body_util::BodyExt;

use crate::{
    body::{self, BodyError, ProxyBody, gzip::GzipError},
    context::{Answer, SoapCall},
    error::ProxyError,
    salesforce::soap::{
        api::SoapApi,
        envelope::{self, Encoding, Limits},
    },
};

/// Reads the head of `request`'s envelope: the request (its body now the rest) and the call.
pub(crate) async fn open(
    mut request: Request<ProxyBody>,
    api: SoapApi,
    limits: &Limits,
) -> Result<(Request<ProxyBody>, SoapCall), ProxyError> {
    let encoding = Encoding::from_headers(request.headers())?;
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = std::mem::replace(request.body_mut(), body::empty());
    let opened = envelope::open(body, &api, encoding, content_length, limits).await?;
    let inflating = Inflating::default();
    *request.body_mut() = match encoding {
        Encoding::Identity => opened.rest,
        Encoding::Gzip => inflating.watch(opened.rest),
    };
    let call = SoapCall {
        api,
        template: opened.template,
        operation: opened.operation,
        presented: opened.presented,
        inflating,
    };
    Ok((request, call))
}

/// What broke a gzip envelope's rest as it was inflated, if anything did.
#[derive(Default, Clone)]
pub(crate) struct Inflating(Arc<Mutex<Option<ProxyError>>>);

impl Inflating {
    fn watch(&self, rest: ProxyBody) -> ProxyBody {
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
