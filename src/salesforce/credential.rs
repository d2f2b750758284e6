//! Where each Salesforce API reads the session: REST and Bulk 2.0 from `Authorization: Bearer`,
//! Bulk API 1.0 from `X-SFDC-Session`, SOAP from the envelope's `SessionHeader`.
//!
//! REST and Bulk are told by the path alone (the route's path on the instance); a SOAP call by its
//! method and path too (`soap::api`), by the session layer, which puts the session in the
//! envelope. Decided once per request, so every send puts the session in the same place.

use http::{HeaderMap, HeaderName, header};

use crate::salesforce::{soap::api::SOAP_PREFIX, token::AccessToken};

/// Bulk API 1.0's paths; it reads the session from `X-SFDC-Session`, not `Authorization`.
const BULK_V1_PREFIX: &str = "/services/async/";

/// Bulk API 1.0's answer (with status 400) to a session it does not accept: what its clients
/// read to log in again.
pub(crate) const BULK_V1_INVALID_SESSION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
    <error xmlns=\"http://www.force.com/2009/06/asyncapi/dataload\">\
    <exceptionCode>InvalidSessionId</exceptionCode>\
    <exceptionMessage>Invalid session id</exceptionMessage></error>";

pub(crate) static X_SFDC_SESSION: HeaderName = HeaderName::from_static("x-sfdc-session");

/// The Salesforce APIs, by where they read the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// REST, Bulk 2.0 and the rest of `/services/`: `Authorization: Bearer`.
    Rest,
    /// Bulk API 1.0 (`/services/async/`): `X-SFDC-Session`.
    BulkV1,
    /// A SOAP call (`soap::api::soap_api`): only the envelope's `SessionHeader`, which the
    /// session layer writes; no header carries the session.
    Soap,
    /// Under `/services/Soap/` (in any case) but not a SOAP call sfproxy knows (a `GET`, an API
    /// it does not name): no header carries the session, and no answer is read as an expiry
    /// (the envelope, and whatever session it has, is the caller's own).
    OtherSoap,
}

impl Api {
    /// The API a path on the instance belongs to, when the request is not a SOAP call.
    pub(crate) fn of(path: &str) -> Self {
        if path.starts_with(BULK_V1_PREFIX) {
            Self::BulkV1
        } else if path
            .get(..SOAP_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(SOAP_PREFIX))
        {
            Self::OtherSoap
        } else {
            Self::Rest
        }
    }
}

/// Puts `token` in the headers where `api` reads it, replacing whatever credentials the caller
/// sent there; a SOAP call's headers carry none (its session goes in the envelope).
pub(crate) fn attach(headers: &mut HeaderMap, api: Api, token: &AccessToken) {
    headers.remove(&X_SFDC_SESSION);
    match api {
        Api::Rest => {
            headers.insert(header::AUTHORIZATION, token.bearer());
        }
        Api::BulkV1 => {
            headers.insert(header::AUTHORIZATION, token.bearer());
            headers.insert(X_SFDC_SESSION.clone(), token.raw());
        }
        Api::Soap | Api::OtherSoap => {
            headers.remove(header::AUTHORIZATION);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_told_by_the_path() {
        assert_eq!(Api::of("/services/data/v61.0/limits"), Api::Rest);
        assert_eq!(Api::of("/services/data/v61.0/jobs/ingest"), Api::Rest);
        assert_eq!(Api::of("/services/async/61.0/job"), Api::BulkV1);
        // A SOAP call is told with the method, by `soap::api`; what else is under its prefix
        // carries no session in its headers.
        assert_eq!(
            Api::of("/services/Soap/u/61.0/00D5g0000012345"),
            Api::OtherSoap
        );
        assert_eq!(Api::of("/services/soap/class/a/b/c"), Api::OtherSoap);
        // Salesforce's paths are case-sensitive, and a prefix is not a segment.
        assert_eq!(Api::of("/services/asyncx"), Api::Rest);
        assert_eq!(Api::of("/services/Soapx"), Api::Rest);
        assert_eq!(Api::of("/"), Api::Rest);
    }
}
