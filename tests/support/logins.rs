//! The legacy-login tests' config and readers: a logins route, its client, and what sfproxy
//! answers at a login (its OAuth JSON, its SOAP `loginResponse`).

use super::{Org, Proxy, Reply, USER, curl, curl_login, route, sha256_hex};

/// The route's client and its secret: the password a legacy caller logs in with.
pub const CLIENT: &str = "erp";
pub const SECRET: &str = "erp-secret";
pub const VERSION: &str = "61.0";
/// The hosts of the logins route `erp`.
pub const LOGIN_HOST: &str = "login.salesforce.com";
pub const MY_DOMAIN: &str = "acme.my.salesforce.com";

/// The stand-in's config with interception on, `proxy_extra` in `[proxy]`, `[logins]` with
/// `logins_extra`, the client `erp` with its secret (and `client_extra`), and the logins route
/// `erp` for login.salesforce.com and the My Domain host.
pub fn config(org: &Org, proxy_extra: &str, logins_extra: &str, client_extra: &str) -> String {
    org.intercepting_config(proxy_extra)
        + &format!(
            "\n[logins]\n{logins_extra}\n\n[clients.{CLIENT}]\nsecret_sha256 = \"{}\"\n{client_extra}\n",
            sha256_hex(SECRET.as_bytes())
        )
        + &route(
            "erp",
            &[LOGIN_HOST, MY_DOMAIN],
            USER,
            &format!("clients = [\"{CLIENT}\"]\nlogins = true"),
        )
}

/// Every API request the stand-in saw carried a session it issued (the route's real one), never
/// an id sfproxy handed out; returns how many there were.
pub fn assert_only_real_sessions(org: &Org) -> usize {
    let issued = org.mock.issued_sessions();
    let seen = org.mock.requests();
    for request in &seen {
        let session = request.session.as_deref().unwrap_or_else(|| {
            panic!(
                "{} {} carried no session",
                request.method, request.path_and_query
            )
        });
        assert!(
            issued.iter().any(|s| s == session),
            "{} {} carried a session the org never issued",
            request.method,
            request.path_and_query
        );
        assert!(
            super::header(&request.headers, "authorization")
                .is_none_or(|a| a == format!("Bearer {session}")),
            "{} {}: Authorization is the real session",
            request.method,
            request.path_and_query
        );
    }
    seen.len()
}

/// The text of the first `<name>` element (any prefix) in `xml`.
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(start) => {
                inside = start.local_name().as_ref() == name.as_bytes();
            }
            quick_xml::events::Event::Text(text) if inside => {
                return Some(text.xml10_content().ok()?.into_owned());
            }
            quick_xml::events::Event::End(_) if inside => return Some(String::new()),
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// A Partner API `login()` envelope, as Salesforce's WSDL clients write it.
pub fn login_envelope(username: &str, password: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Body><urn:login><urn:username>{username}</urn:username><urn:password>{password}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A Partner API `query()` envelope with `session_id` in its `SessionHeader`.
pub fn query_envelope(session_id: &str, soql: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header><urn:SessionHeader><urn:sessionId>{session_id}</urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:query><urn:queryString>{soql}</urn:queryString></urn:query></soapenv:Body></soapenv:Envelope>"#
    )
}

/// `POST /services/oauth2/token` through the proxy to `host`, with curl's `extra` arguments
/// (`--interface 127.0.0.2`, say) and `form` (each `name=value`, URL-encoded by curl).
pub async fn token(proxy: &Proxy, extra: &[&str], host: &str, form: &[&str]) -> Reply {
    let url = format!("http://{host}/services/oauth2/token");
    let proxy_url = proxy.url();
    let mut args = vec!["-x", proxy_url.as_str()];
    args.extend(extra);
    for field in form {
        args.extend(["--data-urlencode", field]);
    }
    args.push(&url);
    curl_login(&args).await
}

/// The password grant for `username` with `password` at login.salesforce.com.
pub async fn password_grant(
    proxy: &Proxy,
    extra: &[&str],
    username: &str,
    password: &str,
) -> Reply {
    token(
        proxy,
        extra,
        LOGIN_HOST,
        &[
            "grant_type=password",
            &format!("username={username}"),
            &format!("password={password}"),
        ],
    )
    .await
}

/// POSTs a SOAP envelope through the proxy to `url`, with `SOAPAction: {action}`.
pub async fn soap(proxy: &Proxy, url: &str, action: &str, envelope: &str) -> Reply {
    let header = format!("SOAPAction: {action}");
    let args = [
        "-x",
        &proxy.url(),
        "-H",
        "Content-Type: text/xml; charset=UTF-8",
        "-H",
        &header,
        "--data-binary",
        envelope,
        url,
    ];
    match action {
        "login" => curl_login(&args).await,
        _ => curl(&args).await,
    }
}

/// A Partner `login()` at login.salesforce.com.
pub async fn soap_login(proxy: &Proxy, username: &str, password: &str) -> Reply {
    let url = format!("http://{LOGIN_HOST}/services/Soap/u/{VERSION}");
    soap(proxy, &url, "login", &login_envelope(username, password)).await
}
