//! (being written)
pub(crate) struct Operation {
    pub(crate) namespace: String,
    pub(crate) name: String,
}
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("x")]
    TooLarge { limit: usize },
    #[error("x")]
    InflatedTooLarge { limit: u64 },
    #[error("x")]
    Body(crate::body::BodyError),
    #[error("x")]
    NotXml,
}
pub(crate) struct Limits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body: u64,
}
pub(crate) enum Encoding {}
impl Encoding {
    pub(crate) fn from_headers(_: &http::HeaderMap) -> Result<Self, EnvelopeError> {
        Err(EnvelopeError::NotXml)
    }
}
#[derive(Clone)]
pub(crate) struct Template;
impl Template {
    pub(crate) fn body(
        &self,
        _: &str,
        b: crate::body::ProxyBody,
    ) -> (crate::body::ProxyBody, Option<u64>) {
        (b, None)
    }
}
pub(crate) struct Opened {
    pub(crate) template: Template,
    pub(crate) rest: crate::body::ProxyBody,
    pub(crate) operation: Option<Operation>,
}
pub(crate) async fn open(
    _: crate::body::ProxyBody,
    _: &super::api::SoapApi,
    _: Encoding,
    _: Option<u64>,
    _: &Limits,
) -> Result<Opened, EnvelopeError> {
    Err(EnvelopeError::NotXml)
}
