//! The session layer's SOAP arm: the SOAP API reads the session only from the envelope's
//! `SessionHeader`, so a SOAP call's envelope is opened (read to the start of its Body, see
//! [`envelope`]) before its session is taken, and every send of it, a replay included, writes the
//! session of that send into the head kept from the caller's envelope.
//!
//! Opening first means a bad envelope is refused before anything happens (no login, nothing
//! sent), and that the calls which would end the session every caller of the route shares,
//! `logout()` and `invalidateSessions()`, are answered here, in Salesforce's shape, and never
//! sent.
//!
//! A gzip envelope is inflated as it streams on: when its rest turns out to be broken or larger
//! than `max_body` once inflated, the send fails, and [`Inflating`] holds the refusal to answer
//! with instead of the send's own failure (which would blame the caller's connection).

use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;

use crate::{
    body::{self, BodyError, Buffered, ProxyBody, buffer_up_to, gzip::GzipError},
    context::Answer,
    error::ProxyError,
    salesforce::{
        soap::{
            api::SoapApi,
            envelope::{self, Encoding, EnvelopeError, Limits, Template},
            fault::{self, LocalCall},
        },
        token::AccessToken,
    },
};

/// An `invalidateSessions()` names a few session ids; past this its answer counts no further.
const MAX_LOCAL_CALL_BODY: usize = 64 * 1024;

/// A SOAP call, opened.
pub(super) enum Opened {
    /// To send with a session: the request's body is now the envelope's rest, after the head
    /// the template keeps.
    Call(Request<ProxyBody>, Template, Inflating),
    /// Answered here: a call that would end the shared session.
    Answered(Response<ProxyBody>),
}

/// Reads the head of `request`'s envelope; answers the calls that end the shared session.
pub(super) async fn open(
    mut request: Request<ProxyBody>,
    api: &SoapApi,
    limits: &Limits,
    route: &str,
) -> Result<Opened, ProxyError> {
    let encoding = Encoding::from_headers(request.headers())?;
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = std::mem::replace(request.body_mut(), body::empty());
    let opened = envelope::open(body, api, encoding, content_length, limits).await?;
    let local = opened
        .operation
        .as_ref()
        .and_then(|operation| LocalCall::of(api, operation));
    if let Some(call) = local {
        let rest = match buffer_up_to(opened.rest, MAX_LOCAL_CALL_BODY).await {
            Ok(Buffered::Complete(bytes)) => bytes,
            Ok(Buffered::Streaming(_)) => bytes::Bytes::new(),
            Err(error) => return Err(EnvelopeError::from(error).into()),
        };
        tracing::info!(
            route,
            api = api.name(),
            call = call.name(),
            "answered {}() here: it would end the session every caller of the route shares",
            call.name()
        );
        let mut response = Response::new(body::full(call.answer(api, &rest)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(fault::CONTENT_TYPE),
        );
        return Ok(Opened::Answered(response));
    }
    let inflating = Inflating::default();
    *request.body_mut() = match encoding {
        Encoding::Identity => opened.rest,
        Encoding::Gzip => inflating.watch(opened.rest),
    };
    Ok(Opened::Call(request, opened.template, inflating))
}

/// What broke a gzip envelope's rest as it was inflated, if anything did.
#[derive(Default)]
pub(super) struct Inflating(Arc<Mutex<Option<ProxyError>>>);

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
    pub(super) fn judge(&self, answer: Answer) -> Answer {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(refusal) => Err(refusal),
            None => answer,
        }
    }
}

/// Readies one send of a SOAP call: `request`'s body is (a copy of) the envelope's rest; it
/// becomes the whole envelope with `token` in its `SessionHeader`, framed to its new length.
pub(super) fn prepare(template: &Template, request: &mut Request<ProxyBody>, token: &AccessToken) {
    let rest = std::mem::replace(request.body_mut(), body::empty());
    let (body, length) = template.body(token.as_str(), rest);
    *request.body_mut() = body;
    let headers = request.headers_mut();
    match length {
        Some(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}
