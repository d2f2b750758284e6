//! A SOAP call as the operations see it: which API it is for (by path), and what was read of it.

use std::borrow::Cow;

use super::envelope::Element;
use super::records;
use crate::mock_org::state::State;

pub(super) const SOAP_PREFIX: &str = "/services/Soap/";
/// Partner, Enterprise and Tooling (`echo` is the stand-in's own).
const PARTNER_OPERATIONS: &[&str] = &[
    "getUserInfo",
    "query",
    "queryAll",
    "queryMore",
    "create",
    "update",
    "delete",
    "describeSObject",
    "echo",
];
const METADATA_OPERATIONS: &[&str] = &["listMetadata", "echo"];
/// An Apex class's web service: `webservice static String echo(String text)`.
const APEX_OPERATIONS: &[&str] = &["echo"];

/// The SOAP APIs the stand-in serves, told apart by path.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Api {
    Partner,
    Enterprise,
    Tooling,
    Metadata,
    Apex { class: String },
}

impl Api {
    /// The API a SOAP path calls: `/services/Soap/{u,c,T,m}/{ver}[/{orgId}]`, `/class/{Class}`.
    pub(super) fn from_path(path: &str) -> Option<Api> {
        let rest = path.strip_prefix(SOAP_PREFIX)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (kind, name, tail) = match segments.as_slice() {
            [kind, name, tail @ ..] if !name.is_empty() => (*kind, *name, tail),
            _ => return None,
        };
        let tail_ok = match tail {
            [] | [""] => true,
            [org] | [org, ""] => records::is_id(org),
            _ => false,
        };
        let version = name.split_once('.').is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
        let api = match kind {
            "u" if version => Api::Partner,
            "c" if version => Api::Enterprise,
            "T" if version => Api::Tooling,
            "m" if version => Api::Metadata,
            "class" if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                return matches!(tail, [] | [""]).then(|| Api::Apex {
                    class: name.to_owned(),
                });
            }
            _ => return None,
        };
        tail_ok.then_some(api)
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Api::Partner => "partner",
            Api::Enterprise => "enterprise",
            Api::Tooling => "tooling",
            Api::Metadata => "metadata",
            Api::Apex { .. } => "apex",
        }
    }

    /// The namespace of the API's operations and of its `SessionHeader`.
    pub(super) fn namespace(&self) -> Cow<'static, str> {
        match self {
            Api::Partner => "urn:partner.soap.sforce.com".into(),
            Api::Enterprise => "urn:enterprise.soap.sforce.com".into(),
            Api::Tooling => "urn:tooling.soap.sforce.com".into(),
            Api::Metadata => "http://soap.sforce.com/2006/04/metadata".into(),
            Api::Apex { class } => format!("http://soap.sforce.com/schemas/class/{class}").into(),
        }
    }

    /// The namespace of records (`sf:`), for the APIs that have sObjects.
    pub(super) fn sobject_namespace(&self) -> Option<&'static str> {
        match self {
            Api::Partner => Some("urn:sobject.partner.soap.sforce.com"),
            Api::Enterprise => Some("urn:sobject.enterprise.soap.sforce.com"),
            Api::Tooling => Some("urn:sobject.tooling.soap.sforce.com"),
            Api::Metadata | Api::Apex { .. } => None,
        }
    }

    /// The namespace of the fault detail, for the APIs whose faults carry one.
    pub(super) fn fault_namespace(&self) -> Option<&'static str> {
        match self {
            Api::Partner => Some("urn:fault.partner.soap.sforce.com"),
            Api::Enterprise => Some("urn:fault.enterprise.soap.sforce.com"),
            Api::Tooling => Some("urn:fault.tooling.soap.sforce.com"),
            Api::Metadata | Api::Apex { .. } => None,
        }
    }

    pub(super) fn operations(&self) -> &'static [&'static str] {
        match self {
            Api::Partner | Api::Enterprise | Api::Tooling => PARTNER_OPERATIONS,
            Api::Metadata => METADATA_OPERATIONS,
            Api::Apex { .. } => APEX_OPERATIONS,
        }
    }
}

/// What an operation is given: the call as parsed, the caller's session, and the usage count.
pub(super) struct Call<'a> {
    pub(super) api: &'a Api,
    pub(super) header: Option<&'a Element>,
    pub(super) operation: &'a Element,
    pub(super) envelope: &'a [u8],
    pub(super) state: &'a State,
    pub(super) user: usize,
    pub(super) username: &'a str,
    pub(super) usage: u64,
}

impl Call<'_> {
    /// A header element of this API (e.g. `QueryOptions`), in the API's namespace.
    pub(super) fn soap_header(&self, local: &str) -> Option<&Element> {
        self.header?.child(Some(&self.api.namespace()), local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_api_by_its_path() {
        let api = Api::from_path;
        assert_eq!(api("/services/Soap/u/61.0"), Some(Api::Partner));
        assert_eq!(
            api("/services/Soap/u/61.0/00D000000000001"),
            Some(Api::Partner)
        );
        assert_eq!(api("/services/Soap/c/8.0/"), Some(Api::Enterprise));
        assert_eq!(api("/services/Soap/T/61.0"), Some(Api::Tooling));
        assert_eq!(
            api("/services/Soap/m/61.0/00D000000000001EAA"),
            Some(Api::Metadata)
        );
        let class = Some(Api::Apex {
            class: "OrderService".into(),
        });
        assert_eq!(api("/services/Soap/class/OrderService"), class);
        for path in [
            "/services/Soap/u",
            "/services/Soap/u/latest",
            "/services/Soap/u/61.0/not-an-org",
            "/services/Soap/u/61.0/00D000000000001/extra",
            "/services/Soap/class/Order-Service",
            "/services/Soap/class/OrderService/00D000000000001",
            "/services/Soap/x/61.0",
        ] {
            assert_eq!(api(path), None, "{path}");
        }
    }
}
