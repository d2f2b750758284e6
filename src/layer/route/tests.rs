use super::{target::simple_host, *};
use crate::{body, config::Config};
use proptest::prelude::*;

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let pair = crate::pki::connected_app_cert("t", 1).unwrap();
    std::fs::write(dir.path().join("k.pem"), pair.key_pem).unwrap();
    let text = r#"
[orgs.acme]
login_url = "https://login.salesforce.com"
client_id = "c"
private_key_file = "k.pem"

[clients.erp]
networks = ["10.0.0.0/8"]
[clients.wms]
networks = ["10.0.0.0/8"]

[[routes]]
name = "gw"
hosts = ["gw.local"]
path_prefix = "/acme/"
strip_prefix = true
org = "acme"
user = "gw@acme.com"

[[routes]]
name = "erp"
hosts = ["*.my.salesforce.com"]
org = "acme"
user = "erp@acme.com"
clients = ["erp"]
"#;
    let config = Config::from_toml(text, dir.path()).unwrap();
    (dir, config)
}

fn request(caller: &str, uri: &str, host: Option<&str>) -> Request<ProxyBody> {
    let mut builder = Request::builder().uri(uri);
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    let mut request = builder.body(body::empty()).unwrap();
    request.extensions_mut().insert(Caller {
        name: caller.into(),
    });
    request
}

#[test]
fn absolute_form_and_gateway_form() {
    let (_dir, config) = config();
    let m = choose(
        &crate::stack::route_table(&config),
        &request(
            "erp",
            "http://ACME.my.salesforce.com/services/data?q=1",
            None,
        ),
    )
    .unwrap();
    assert_eq!(&*m.route.name, "erp");
    assert_eq!(m.path, "/services/data?q=1");

    let m = choose(
        &crate::stack::route_table(&config),
        &request(
            "wms",
            "/acme/services/data/v61.0/limits",
            Some("gw.local:8080"),
        ),
    )
    .unwrap();
    assert_eq!(&*m.route.name, "gw");
    assert_eq!(m.path, "/services/data/v61.0/limits");
}

#[test]
fn refusals() {
    let (_dir, config) = config();
    let code = |caller: &str, uri: &str, host: Option<&str>| {
        choose(
            &crate::stack::route_table(&config),
            &request(caller, uri, host),
        )
        .unwrap_err()
        .code()
    };
    assert_eq!(
        code("wms", "http://acme.my.salesforce.com/x", None),
        "PROXY_CLIENT_FORBIDDEN"
    );
    assert_eq!(code("erp", "http://evil.example/x", None), "PROXY_NO_ROUTE");
    assert_eq!(
        code("erp", "/acmex/services", Some("gw.local")),
        "PROXY_NO_ROUTE"
    );
    assert_eq!(
        code("erp", "http://u:p@acme.my.salesforce.com/x", None),
        "PROXY_BAD_REQUEST"
    );
    assert_eq!(
        code("erp", "/acme/services/../../x", Some("gw.local")),
        "PROXY_BAD_REQUEST"
    );
    for path in [
        "/acme/%2E%2e/x",
        "/acme/..;/x",
        "/acme/.%2e;jsessionid=1/x",
        "/acme/x/..%2f..%2fother",
        "/acme/x%2F..%2Fy",
        "/acme/x/%2e",
    ] {
        assert_eq!(
            code("erp", path, Some("gw.local")),
            "PROXY_BAD_REQUEST",
            "{path}"
        );
    }
    // Encoded slashes and parameters are not refused as such: an external id may hold a
    // slash.
    for path in [
        "/acme/services/data/v61.0/sobjects/Account/Ext__c/a%2Fb",
        "/acme/x;y/...",
    ] {
        assert!(
            choose(
                &crate::stack::route_table(&config),
                &request("erp", path, Some("gw.local"))
            )
            .is_ok(),
            "{path}"
        );
    }
    assert_eq!(code("erp", "/acme/x", None), "PROXY_BAD_REQUEST");
    for target in [
        "http://acme.my.salesforce.com./x",
        "http://acme.my.salesforce.com:99999/x",
        "https://acme.my.salesforce.com/x",
    ] {
        assert_eq!(code("erp", target, None), "PROXY_BAD_REQUEST", "{target}");
    }
    assert_eq!(
        code("erp", "ftp://acme.my.salesforce.com/x", None),
        "PROXY_BAD_REQUEST"
    );
}

fn target() -> impl Strategy<Value = (String, Option<String>)> {
    let scheme = proptest::sample::select(&["http://", "https://", "", "HTTP://", "ftp://"][..]);
    let userinfo = proptest::sample::select(&["", "u:p@", "@", "user@"][..]);
    let host = prop_oneof![
        proptest::sample::select(
            &[
                "acme.my.salesforce.com",
                "gw.local",
                "evil.example",
                "[::1]",
                "127.0.0.1"
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z0-9.-]{1,20}",
    ];
    let port = proptest::sample::select(&["", ":80", ":8080", ":"][..]);
    let path = "(/([a-zA-Z0-9._~-]|%2[eEfF]|%5[cC]|\\.\\.|\\.){0,8}){0,5}";
    let query = proptest::option::of("[a-zA-Z0-9=&%+._-]{0,20}");
    let host_header = proptest::option::of("[a-zA-Z0-9.:@\\[\\]-]{0,25}");
    (scheme, userinfo, host, port, path, query, host_header).prop_map(
        |(scheme, userinfo, host, port, path, query, host_header)| {
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            let target = if scheme.is_empty() {
                format!("{path}{query}")
            } else {
                format!("{scheme}{userinfo}{host}{port}{path}{query}")
            };
            (target, host_header)
        },
    )
}

proptest! {
    /// The shortcut for plain `Host` headers gives the host a full authority parse gives.
    #[test]
    fn simple_hosts_read_as_authorities_do(value in "[a-zA-Z0-9.:@\\[\\]_-]{0,24}") {
        if let Some(host) = simple_host(value.as_bytes()) {
            let authority: http::uri::Authority = value.parse().unwrap();
            prop_assert_eq!(authority.host(), host);
        }
    }

    /// Common Host headers take the shortcut; what it cannot vouch for does not.
    #[test]
    fn common_hosts_take_the_shortcut(name in "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}", port in proptest::option::of(1u16..)) {
        let value = match port {
            Some(port) => format!("{name}:{port}"),
            None => name.clone(),
        };
        prop_assert_eq!(simple_host(value.as_bytes()), Some(name.as_str()));
        for odd in [format!("{name}@x"), format!("[{name}]"), name.to_uppercase() + "Q", format!("{name}:"), format!("{name}:123456")] {
            prop_assert_eq!(simple_host(odd.as_bytes()), None, "{}", odd);
        }
    }

    /// No target makes the proxy panic, and whatever route it picks, the request can only
    /// go to the session's instance: the caller supplies the path and query, nothing else.
    #[test]
    fn any_target_is_refused_or_bound_to_the_instance((target, host) in target()) {
        // One config for every case: making its RSA key is the slow part.
        static CONFIG: std::sync::LazyLock<(tempfile::TempDir, Config)> =
            std::sync::LazyLock::new(config);
        let config = &CONFIG.1;
        let instance = crate::config::InstanceUrl::parse("https://acme.my.salesforce.com").unwrap();
        let Ok(uri) = target.parse::<http::Uri>() else { return Ok(()); };
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = &host {
            if let Ok(value) = http::HeaderValue::from_str(host) {
                builder = builder.header("host", value);
            }
        }
        let Ok(mut request) = builder.body(body::empty()) else { return Ok(()); };
        request.extensions_mut().insert(Caller { name: "erp".into() });
        match choose(&crate::stack::route_table(config), &request) {
            Ok(matched) => {
                prop_assert!(matched.path.path().starts_with('/'));
                let upstream = crate::upstream::upstream_uri(&instance, matched.path.clone()).unwrap();
                prop_assert_eq!(upstream.authority(), Some(&instance.0));
                let reparsed: http::Uri = upstream.to_string().parse().unwrap();
                prop_assert_eq!(reparsed.authority(), Some(&instance.0));
                prop_assert!(!matched.path.path().split('/').any(|s| s == ".." || s == "."));
            }
            Err(error) => prop_assert!(error.status().is_client_error()),
        }
    }
}
