//! A SOAP request opened as a call: its envelope read to the Body (see [`envelope`]), the body
//! left to stream on as the envelope's rest, inflated when the caller gzipped it. Opened once,
//! by whichever stage needs the envelope first (logins, to read a login or the caller's session
//! id; else the session stage).
//! A gzip envelope's rest is watched by [`Inflating`] as it streams.

use http::{Request, header};

use crate::{
    body::{self, ProxyBody},
    context::SoapCall,
    error::ProxyError,
    salesforce::soap::{
        api::SoapApi,
        envelope::{self, Encoding, Limits},
        inflating::Inflating,
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
