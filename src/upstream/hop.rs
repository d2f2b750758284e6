//! Hop-by-hop headers, which a proxy must not forward (RFC 9110 §7.6.1): `Connection`, what it
//! names, and the fixed list, `Proxy-*` among them.

use http::{HeaderMap, HeaderName, header};

/// The hop-by-hop headers every message loses, besides those `Connection` names.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

/// What sfproxy sets itself on the way to Salesforce: a `Connection` list never removes these
/// (the session layer replaces the caller's own anyway), so no caller can strip the session.
fn is_proxy_set(name: &HeaderName) -> bool {
    matches!(name.as_str(), "authorization" | "x-sfdc-session" | "host")
}

/// Removes hop-by-hop headers: `Connection`, every header it names (but the credentials and
/// `Host`: `is_proxy_set`), and the fixed list. `Expect` goes too: the proxy already answered
/// the caller's `100-continue` by reading the body, and forwards it whole. The session layer
/// strips the caller's request before it adds the session; upstream strips again, finding
/// nothing. Most messages carry none: one pass over the names finds that, without allocating.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    if found.is_empty() {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !is_proxy_set(name))
        .collect();
    for name in named.iter().chain(&found) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    const HOP_BY_HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    ];

    /// What a `Connection` list must never remove.
    const PROXY_SET: &[&str] = &["authorization", "x-sfdc-session", "host"];

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(HOP_BY_HOP).prop_map(str::to_owned),
            proptest::sample::select(PROXY_SET).prop_map(str::to_owned),
            proptest::sample::select(&["accept", "content-type", "x-custom"][..])
                .prop_map(str::to_owned),
            "[a-z][a-z0-9-]{0,12}",
        ]
    }

    proptest! {
        /// Whatever the caller sends, no hop-by-hop header and nothing `Connection` names
        /// survives but the credentials and `Host`, and every other header is kept as it was.
        #[test]
        fn rewriting_headers_strips_exactly_the_hop_by_hop_ones(
            headers in proptest::collection::vec((header_name(), "[ -~]{0,20}"), 0..12),
            named in proptest::collection::vec(header_name(), 0..4),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                    map.append(n, v);
                }
            }
            if !named.is_empty() {
                map.append(header::CONNECTION, HeaderValue::from_str(&named.join(", ")).unwrap());
            }
            let before = map.clone();
            // Every name any `Connection` header lists, the generated ones among `headers` too.
            let named: Vec<String> = before
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect();
            strip_hop_by_hop(&mut map);
            let named: Vec<String> =
                named.into_iter().filter(|n| !PROXY_SET.contains(&n.as_str())).collect();
            for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
                prop_assert!(!map.contains_key(name), "{name} survived");
            }
            for (name, value) in &before {
                let dropped = HOP_BY_HOP.contains(&name.as_str())
                    || named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()));
                if !dropped {
                    prop_assert!(map.get_all(name).iter().any(|v| v == value), "{name} lost");
                }
            }
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("accept", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn a_connection_list_cannot_remove_the_credentials_or_host() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Authorization, x-sfdc-session, HOST, x-other"),
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer 00D!x"));
        headers.insert("x-sfdc-session", HeaderValue::from_static("00D!x"));
        headers.insert("host", HeaderValue::from_static("acme.my.salesforce.com"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "host", "x-sfdc-session"]);
    }
}
