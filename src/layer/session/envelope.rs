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
//! The envelope may have been opened already, by the logins stage ([`SoapCall`] on the request).

use http::{HeaderValue, Request, Response, header};

use crate::{
    body::{self, Buffered, ProxyBody, buffer_up_to},
    context::SoapCall,
    error::ProxyError,
    salesforce::{
        soap::{
            api::SoapApi,
            call,
            envelope::{EnvelopeError, Limits, Template},
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
    /// the call's template keeps.
    Call(Request<ProxyBody>, Box<SoapCall>),
    /// Answered here: a call that would end the shared session.
    Answered(Response<ProxyBody>),
}

/// Opens `request`'s envelope unless an earlier stage did; answers the calls that end the
/// shared session.
pub(super) async fn open(
    mut request: Request<ProxyBody>,
    api: SoapApi,
    limits: &Limits,
    route: &str,
) -> Result<Opened, ProxyError> {
    let (request, opened) = match request.extensions_mut().remove::<SoapCall>() {
        Some(opened) => (request, opened),
        None => call::open(request, api, limits).await?,
    };
    let local = opened
        .operation
        .as_ref()
        .and_then(|operation| LocalCall::of(&opened.api, operation));
    let Some(call) = local else {
        return Ok(Opened::Call(request, Box::new(opened)));
    };
    let rest = match buffer_up_to(request.into_body(), MAX_LOCAL_CALL_BODY).await {
        Ok(Buffered::Complete(bytes)) => bytes,
        Ok(Buffered::Streaming(_)) => bytes::Bytes::new(),
        Err(error) => return Err(EnvelopeError::from(error).into()),
    };
    tracing::info!(
        route,
        api = opened.api.name(),
        call = call.name(),
        "answered {}() here: it would end the session every caller of the route shares",
        call.name()
    );
    let mut response = Response::new(body::full(call.answer(&opened.api, &rest)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fault::CONTENT_TYPE),
    );
    Ok(Opened::Answered(response))
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
