//! `Sforce-Limit-Info`, the org's daily API usage that Salesforce puts on most REST answers
//! (`api-usage=18/15000; per-app-api-usage=17/250(appName=x)`): read by upstream for the
//! `sfproxy_salesforce_api_usage` and `_limit` gauges.

use http::HeaderName;

/// The header's name (HTTP/2 CDNs send it lower-case; header names match case-insensitively).
pub(crate) static HEADER: HeaderName = HeaderName::from_static("sforce-limit-info");

/// Reads `api-usage=N/M` out of a `Sforce-Limit-Info` value: (used, limit).
pub(crate) fn api_usage(value: &str) -> Option<(u64, u64)> {
    // Salesforce sends `api-usage=` first: try that before splitting (every answer has one).
    if let Some(found) = value
        .strip_prefix("api-usage=")
        .and_then(|usage| usage.split(';').next())
        .and_then(usage_pair)
    {
        return Some(found);
    }
    value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("api-usage=").and_then(usage_pair))
}

/// `18/15000` (spaces allowed around the numbers).
fn usage_pair(usage: &str) -> Option<(u64, u64)> {
    let (used, limit) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_is_read() {
        assert_eq!(api_usage("api-usage=18/15000"), Some((18, 15000)));
        assert_eq!(
            api_usage("per-app-api-usage=17/250(appName=x); api-usage=18/15000"),
            Some((18, 15000))
        );
        assert_eq!(api_usage("api-usage=x/15000"), None);
        assert_eq!(api_usage(""), None);
    }
}
