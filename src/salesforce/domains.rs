//! Which hosts are Salesforce's, and which audience a login host's JWT assertions name.

/// The domains Salesforce serves orgs' instances and My Domains from (`acme.my.salesforce.com`,
/// `na123.salesforce.com`, Experience Cloud `*.force.com`, legacy `*.cloudforce.com` and
/// `*.database.com`, Government Cloud Plus Defense `*.salesforce.mil` / `*.force.mil`, and the
/// Alibaba-operated China cloud `*.sfcrmproducts.cn` / `*.sfcrmapps.cn`). Source: Salesforce Help,
/// "Allow the Required Domains" and "My Domain URL Formats"; their Setup, Sites and content
/// domains (`salesforce-setup.com`, `site.com`, `salesforce-sites.com`, `force-user-content.com`,
/// ...) serve no API and are left out.
pub(crate) const SALESFORCE_DOMAINS: &[&str] = &[
    "salesforce.com",
    "force.com",
    "cloudforce.com",
    "database.com",
    "salesforce.mil",
    "force.mil",
    "sfcrmproducts.cn",
    "sfcrmapps.cn",
];

/// `host` (lower-case, no trailing dot) is one of [`SALESFORCE_DOMAINS`] or under one.
pub(crate) fn is_salesforce_host(host: &str) -> bool {
    SALESFORCE_DOMAINS.iter().any(|domain| {
        host.strip_suffix(domain)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
    })
}

/// The JWT `aud` when not configured: login/test for Salesforce hosts, the login URL itself for a
/// stand-in (`../shared/salesforce.md`: the audience is the login host, never the My Domain).
pub(crate) fn infer_audience(login_url: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let first_label = host.split('.').next().unwrap_or("");
    // Sandboxes: test.salesforce.com, enhanced `*.sandbox.my.salesforce.com`, legacy
    // `mydomain--sandbox.my.salesforce.com` and `csNN.salesforce.com` instances.
    let legacy_sandbox = (host.ends_with(".my.salesforce.com") && first_label.contains("--"))
        || (first_label.len() > 2
            && first_label.starts_with("cs")
            && first_label[2..].chars().all(|c| c.is_ascii_digit())
            && host.ends_with(".salesforce.com"));
    if host == "test.salesforce.com"
        || host.ends_with(".sandbox.my.salesforce.com")
        || legacy_sandbox
    {
        "https://test.salesforce.com".to_owned()
    } else if host == "salesforce.com" || host.ends_with(".salesforce.com") {
        "https://login.salesforce.com".to_owned()
    } else {
        login_url.to_owned()
    }
}
