//! Which requests are SOAP calls, and of which API: a `POST` to `/services/Soap/{u,c,m,T}/{ver}`,
//! with or without the trailing org id segment, or to `/services/Soap/class/[{namespace}/]{Class}`
//! (an Apex web service, of a managed package's namespace or none). Each API has its own
//! namespace, the one a `SessionHeader` sfproxy inserts is in.

use std::borrow::Cow;

use http::Method;

/// Where the SOAP APIs live.
pub(crate) const SOAP_PREFIX: &str = "/services/Soap/";

/// The SOAP APIs, by the namespace their `SessionHeader` lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SoapApi {
    Partner,
    Enterprise,
    Metadata,
    Tooling,
    /// An Apex class exposed as a web service (`webservice` methods).
    Apex {
        class: String,
    },
}

/// The SOAP API a request calls, if it is a SOAP call: `path` is the path on the instance
/// (`strip_prefix` applied), without the query.
pub(crate) fn soap_api(method: &Method, path: &str) -> Option<SoapApi> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix(SOAP_PREFIX)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (kind, rest) = rest.split_once('/')?;
    if kind == "class" {
        // `Class` or `namespace/Class`: never an org id (Apex endpoints have none).
        let (first, second) = rest.split_once('/').unwrap_or((rest, "A"));
        return (is_apex_name(first) && is_apex_name(second)).then(|| SoapApi::Apex {
            class: rest.to_owned(),
        });
    }
    let (version, org) = match rest.split_once('/') {
        Some((version, org)) => (version, Some(org)),
        None => (rest, None),
    };
    if !is_version(version) || org.is_some_and(|org| !is_org_id(org)) {
        return None;
    }
    match kind {
        "u" => Some(SoapApi::Partner),
        "c" => Some(SoapApi::Enterprise),
        "m" => Some(SoapApi::Metadata),
        "T" => Some(SoapApi::Tooling),
        _ => None,
    }
}

/// An Apex class or namespace name: letters, digits and underscores, starting with a letter.
fn is_apex_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `61.0`, `8.0`: digits, a dot, digits.
fn is_version(segment: &str) -> bool {
    let Some((major, minor)) = segment.split_once('.') else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// An org id: 15 or 18 alphanumerics (`00D...`).
fn is_org_id(segment: &str) -> bool {
    matches!(segment.len(), 15 | 18) && segment.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl SoapApi {
    /// The namespace of this API's `SessionHeader` (and its operations).
    pub(crate) fn namespace(&self) -> Cow<'static, str> {
        match self {
            Self::Partner => Cow::Borrowed("urn:partner.soap.sforce.com"),
            Self::Enterprise => Cow::Borrowed("urn:enterprise.soap.sforce.com"),
            Self::Metadata => Cow::Borrowed("http://soap.sforce.com/2006/04/metadata"),
            Self::Tooling => Cow::Borrowed("urn:tooling.soap.sforce.com"),
            Self::Apex { class } => {
                Cow::Owned(format!("http://soap.sforce.com/schemas/class/{class}"))
            }
        }
    }

    /// The name logs and docs use.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Partner => "partner",
            Self::Enterprise => "enterprise",
            Self::Metadata => "metadata",
            Self::Tooling => "tooling",
            Self::Apex { .. } => "apex",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(path: &str) -> Option<SoapApi> {
        soap_api(&Method::POST, path)
    }

    #[test]
    fn tells_each_soap_api_by_its_path() {
        assert_eq!(api("/services/Soap/u/61.0"), Some(SoapApi::Partner));
        assert_eq!(
            api("/services/Soap/u/61.0/00D5g0000012345"),
            Some(SoapApi::Partner)
        );
        assert_eq!(
            api("/services/Soap/c/61.0/00D5g0000012345EAA"),
            Some(SoapApi::Enterprise)
        );
        assert_eq!(api("/services/Soap/m/61.0"), Some(SoapApi::Metadata));
        assert_eq!(api("/services/Soap/T/61.0/"), Some(SoapApi::Tooling));
        assert_eq!(
            api("/services/Soap/class/OrderService"),
            Some(SoapApi::Apex {
                class: "OrderService".into()
            })
        );
        assert_eq!(
            SoapApi::Apex {
                class: "OrderService".into()
            }
            .namespace(),
            "http://soap.sforce.com/schemas/class/OrderService"
        );
        // A managed package's class: its namespace is part of the class's, never an org id.
        let packaged = api("/services/Soap/class/acme/InvoiceServiceV2X").unwrap();
        assert_eq!(
            packaged.namespace(),
            "http://soap.sforce.com/schemas/class/acme/InvoiceServiceV2X"
        );
    }

    #[test]
    fn other_requests_under_the_prefix_pass_as_they_are() {
        assert_eq!(soap_api(&Method::GET, "/services/Soap/u/61.0"), None);
        assert_eq!(api("/services/Soap/u"), None);
        assert_eq!(api("/services/Soap/u/"), None);
        assert_eq!(api("/services/Soap/u/latest"), None);
        assert_eq!(api("/services/Soap/x/61.0"), None);
        assert_eq!(api("/services/Soap/u/61.0/00D5g0000012345/extra"), None);
        assert_eq!(api("/services/Soap/u/61.0/not-an-org"), None);
        assert_eq!(api("/services/Soap/class/Order-Service"), None);
        assert_eq!(api("/services/Soap/class/a/b/c"), None);
        assert_eq!(api("/services/Soap/class/"), None);
        assert_eq!(api("/services/soap/u/61.0"), None);
        assert_eq!(api("/services/data/v61.0/query"), None);
    }
}
