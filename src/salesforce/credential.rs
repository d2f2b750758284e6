//! Where each Salesforce API reads the session: REST and Bulk 2.0 from `Authorization: Bearer`,
//! Bulk API 1.0 from `X-SFDC-Session`, SOAP from the envelope's `SessionHeader`.
//!
//! The API is told by the path alone (the route's path on the instance), so the session layer
//! decides it once per request and every send puts the session in the same place.

use http::{HeaderMap, HeaderName, header};

use crate::salesforce::token::AccessToken;

/// Bulk API 1.0's paths; it reads the session from `X-SFDC-Session`, not `Authorization`.
const BULK_V1_PREFIX: &str = "/services/async/";
/// The SOAP API's paths (Partner, Enterprise, Metadata, Tooling, Apex web services).
const SOAP_PREFIX: &str = "/services/Soap/";
static X_SFDC_SESSION: HeaderName = HeaderName::from_static("x-sfdc-session");

/// The Salesforce APIs, by where they read the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// REST, Bulk 2.0 and the rest of `/services/`: `Authorization: Bearer`.
    Rest,
    /// Bulk API 1.0 (`/services/async/`): `X-SFDC-Session`.
    BulkV1,
    /// SOAP (`/services/Soap/`): only the envelope's `SessionHeader`, which sfproxy does not
    /// write yet; until the envelope rewrite comes, a SOAP call is sent as a REST one is (with a
    /// bearer it does not read) and the caller's own `SessionHeader` is what SOAP reads.
    Soap,
}

impl Api {
    /// The API a path on the instance belongs to.
    pub(crate) fn of(path: &str) -> Self {
        if path.starts_with(BULK_V1_PREFIX) {
            Self::BulkV1
        } else if path.starts_with(SOAP_PREFIX) {
            Self::Soap
        } else {
            Self::Rest
        }
    }
}

/// Puts `token` where `api` reads it, replacing whatever credentials the caller sent there.
pub(crate) fn attach(headers: &mut HeaderMap, api: Api, token: &AccessToken) {
    headers.insert(header::AUTHORIZATION, token.bearer());
    headers.remove(&X_SFDC_SESSION);
    match api {
        Api::BulkV1 => {
            headers.insert(X_SFDC_SESSION.clone(), token.raw());
        }
        // The envelope's `SessionHeader` goes here, with the envelope rewrite.
        Api::Soap | Api::Rest => {}
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
        assert_eq!(Api::of("/services/Soap/u/61.0/00D5g0000012345"), Api::Soap);
        // Salesforce's paths are case-sensitive, and a prefix is not a segment.
        assert_eq!(Api::of("/services/asyncx"), Api::Rest);
        assert_eq!(Api::of("/services/soap/u/61.0"), Api::Rest);
        assert_eq!(Api::of("/"), Api::Rest);
    }
}
