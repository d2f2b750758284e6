//! Which route serves the request: the first, in file order, whose host, path prefix and
//! clients all match.
//!
//! The target host is the authority of an absolute-form request (`GET http://host/...` through
//! `HTTP_PROXY`), else the `Host` header (gateway use). The route decides the org and user; the
//! destination itself is never taken from the request (upstream uses the org's instance URL), so
//! the worst a crafted target can do is pick a route the caller is already allowed to use.
//! Targets that would be read differently here and at Salesforce — dot segments, user info — are
//! refused rather than guessed at, and so is an `https://` target outside a tunnel: sfproxy would
//! not speak TLS to that caller, and serving it anyway would hide that its URLs are wrong.

use std::{
    borrow::Cow,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use http::{Method, Request, Response, Uri, Version, header, uri::PathAndQuery};
use tower::{Layer, Service};

use crate::{
    body::{self, ProxyBody},
    config::Route,
    context::{Caller, Inside, Notes, RouteMatch, Tunnel, TunnelGrant},
    error::ProxyError,
    intercept::Intercept,
    layer::limits::check_host,
};

#[derive(Clone)]
pub struct RouteLayer {
    routes: Arc<[Arc<Route>]>,
    intercept: Option<Arc<Intercept>>,
}

impl RouteLayer {
    /// `intercept`: the CA that lets CONNECT open tunnels to port 443; `None` refuses those
    /// (tunnels to port 80 carry plain HTTP and need none).
    pub fn new(routes: Vec<Arc<Route>>, intercept: Option<Arc<Intercept>>) -> Self {
        Self {
            routes: routes.into(),
            intercept,
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            routes: self.routes.clone(),
            intercept: self.intercept.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Router<S> {
    inner: S,
    routes: Arc<[Arc<Route>]>,
    intercept: Option<Arc<Intercept>>,
}

impl<S> Service<Request<ProxyBody>> for Router<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<ProxyBody>, ProxyError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ProxyBody>) -> Self::Future {
        if request.method() == Method::CONNECT {
            return Either::Left(ready(grant_tunnel(
                &self.routes,
                self.intercept.as_ref(),
                &request,
            )));
        }
        match choose(&self.routes, &request) {
            Ok(matched) => {
                if let Some(notes) = request.extensions().get::<Arc<Notes>>() {
                    notes.set_route(matched.route.clone());
                }
                request.extensions_mut().insert(matched);
                Either::Right(self.inner.call(request))
            }
            Err(error) => Either::Left(ready(Err(error))),
        }
    }
}

/// CONNECT: a tunnel (200 with a [`TunnelGrant`]) when the target is `host:443` with
/// interception on or `host:80`, and some route serves the host for this caller; nothing is
/// dialled either way.
fn grant_tunnel(
    routes: &[Arc<Route>],
    intercept: Option<&Arc<Intercept>>,
    request: &Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    if request.extensions().get::<Tunnel>().is_some() {
        return Err(ProxyError::ConnectRefused(
            "CONNECT inside a tunnel is not supported: send the requests themselves",
        ));
    }
    // An HTTP/2 stream as a tunnel would share its connection's slot with every other stream.
    if request.version() == Version::HTTP_2 {
        return Err(ProxyError::ConnectRefused(
            "CONNECT over HTTP/2 is not supported: open tunnels over HTTP/1.1, or send http:// \
             URLs through the proxy without a tunnel",
        ));
    }
    let port = connect_port(request.uri())?;
    let inside = match (port, intercept) {
        (80, _) => Inside::Plain,
        (443, Some(intercept)) => Inside::Tls(intercept.clone()),
        (443, None) => return Err(ProxyError::ConnectUnsupported),
        (port, _) => {
            return Err(ProxyError::TunnelPortRefused {
                host: target_host(request)?.into_owned(),
                port,
            });
        }
    };
    let caller = request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| ProxyError::Internal("route reached without a caller".into()))?;
    let host = target_host(request)?.into_owned();
    let served = routes
        .iter()
        .any(|r| r.hosts.iter().any(|h| h.matches(&host)) && r.admits(&caller.name));
    if !served {
        return Err(ProxyError::NoRoute {
            host,
            path: "(CONNECT)".to_owned(),
        });
    }
    let mut response = Response::new(body::empty());
    response.extensions_mut().insert(TunnelGrant {
        host,
        caller: caller.clone(),
        inside,
    });
    Ok(response)
}

/// The port of a CONNECT target, which must be authority-form `host:port` (RFC 9110 §9.3.6):
/// no scheme, no path, no user information, a port.
fn connect_port(uri: &Uri) -> Result<u16, ProxyError> {
    let bad = |why: &str| {
        // Never echoed with user information in it: that part may be a password.
        let target = uri.to_string();
        let target = if target.contains('@') {
            String::new()
        } else {
            format!(" {target:?}")
        };
        Err(ProxyError::BadRequest(format!(
            "CONNECT needs a host:port target (e.g. acme.my.salesforce.com:443), not{target}: \
             {why}"
        )))
    };
    let Some(authority) = uri.authority() else {
        return bad("a path, not an authority");
    };
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty()) {
        return bad("a URL, not an authority");
    }
    if authority.as_str().contains('@') {
        return bad("user information");
    }
    match authority.port_u16() {
        Some(port) => Ok(port),
        None => bad("no port"),
    }
}

fn choose(routes: &[Arc<Route>], request: &Request<ProxyBody>) -> Result<RouteMatch, ProxyError> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| ProxyError::Internal("route reached without a caller".into()))?;
    let host = target_host(request)?;
    let path = request.uri().path();
    check_path(path)?;
    let mut served_for_others = false;
    for route in routes {
        if !(route.hosts.iter().any(|h| h.matches(&host)) && route.matches_path(path)) {
            continue;
        }
        if !route.admits(&caller.name) {
            served_for_others = true;
            continue;
        }
        return Ok(RouteMatch {
            route: route.clone(),
            path: forward_path(route, request)?,
        });
    }
    if served_for_others {
        Err(ProxyError::ClientForbidden {
            client: caller.name.to_string(),
            host: host.into_owned(),
            path: path.to_owned(),
        })
    } else {
        Err(ProxyError::NoRoute {
            host: host.into_owned(),
            path: path.to_owned(),
        })
    }
}

/// The lower-case target host, without port or trailing dot.
pub fn target_host<B>(request: &Request<B>) -> Result<Cow<'_, str>, ProxyError> {
    let uri = request.uri();
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(ProxyError::BadRequest(format!(
                "unsupported scheme {scheme:?}: send http:// URLs through the proxy"
            )));
        }
        // Inside a tunnel every request reads as https://host/...; outside, it is a mistake.
        if scheme.eq_ignore_ascii_case("https") && request.extensions().get::<Tunnel>().is_none() {
            return Err(ProxyError::BadRequest(
                "an https:// URL sent as a plain request: send http:// URLs through the proxy \
                 (sfproxy speaks https to Salesforce itself), or CONNECT host:443 for a tunnel"
                    .into(),
            ));
        }
    }
    let host = match uri.authority() {
        Some(authority) => {
            if authority.as_str().contains('@') {
                return Err(ProxyError::BadRequest(
                    "the target URL must not carry user information (user@host)".into(),
                ));
            }
            check_host(authority.as_str().as_bytes())
                .map_err(|why| ProxyError::BadRequest(format!("malformed target host: {why}")))?;
            lower_host(authority.host())
        }
        None => {
            let value = request.headers().get(header::HOST).ok_or_else(|| {
                ProxyError::BadRequest(
                    "no target host: send an absolute URL through the proxy, or a Host header"
                        .into(),
                )
            })?;
            match simple_host(value.as_bytes()) {
                Some(host) => lower_host(host),
                None => {
                    let authority: http::uri::Authority = value
                        .to_str()
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .filter(|a: &http::uri::Authority| !a.as_str().contains('@'))
                        .ok_or_else(|| ProxyError::BadRequest("malformed Host header".into()))?;
                    Cow::Owned(lower_host(authority.host()).into_owned())
                }
            }
        }
    };
    if host.is_empty() {
        return Err(ProxyError::BadRequest("empty target host".into()));
    }
    Ok(host)
}

/// The name of a `Host` header of the common shape, `name` or `name:port` with a lower-case
/// DNS name or IPv4 address: what parsing it as an authority would give, without the copy.
/// Anything else (`None`) is parsed in full.
fn simple_host(value: &[u8]) -> Option<&str> {
    let (name, port) = match value.iter().position(|&b| b == b':') {
        Some(at) => (&value[..at], Some(&value[at + 1..])),
        None => (value, None),
    };
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit));
    (name_ok && port_ok)
        .then(|| std::str::from_utf8(name).ok())
        .flatten()
}

fn lower_host(host: &str) -> Cow<'_, str> {
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Refuses paths whose meaning depends on normalisation: dot segments (also percent-encoded,
/// with `;` parameters, or between encoded slashes) and backslashes could let a path escape the
/// prefix a route was chosen for at a server that decodes or normalises them.
fn check_path(path: &str) -> Result<(), ProxyError> {
    if !path.starts_with('/') {
        return Err(ProxyError::BadRequest(format!(
            "the request target {path:?} is not a path"
        )));
    }
    let bytes = path.as_bytes();
    let encoded = bytes.contains(&b'%');
    let suspicious = bytes.contains(&b'\\')
        || (encoded
            && bytes
                .windows(3)
                .any(|w| w[0] == b'%' && w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c')))
        || bytes.split(|&b| b == b'/').any(has_dot_piece);
    if suspicious {
        return Err(ProxyError::BadRequest(format!(
            "the path {path:?} has dot segments or backslashes; send the normalised path"
        )));
    }
    Ok(())
}

/// Whether a segment, cut at encoded slashes (`%2f`), has a piece that is a dot segment once
/// its `;` parameters are dropped: `..;x`, `..%2f..`. `a%2Fb` (an id with a slash) passes.
fn has_dot_piece(segment: &[u8]) -> bool {
    if !segment.iter().any(|&b| b == b'.' || b == b'%') {
        return false;
    }
    if !segment.contains(&b'%') {
        return is_dot_segment(segment.split(|&b| b == b';').next().unwrap_or(segment));
    }
    let mut rest = segment;
    loop {
        let slash = rest
            .windows(3)
            .position(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'));
        let (piece, next) = match slash {
            Some(at) => (&rest[..at], Some(&rest[at + 3..])),
            None => (rest, None),
        };
        let without_parameters = piece.split(|&b| b == b';').next().unwrap_or(piece);
        if is_dot_segment(without_parameters) {
            return true;
        }
        match next {
            Some(next) => rest = next,
            None => return false,
        }
    }
}

/// `.` or `..`, with any of the dots written `%2e` (or `%2E`).
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn forward_path<B>(route: &Route, request: &Request<B>) -> Result<PathAndQuery, ProxyError> {
    if !route.strip_prefix {
        if let Some(kept) = request.uri().path_and_query() {
            return Ok(kept.clone());
        }
    }
    let path = request.uri().path();
    let kept = if route.strip_prefix {
        let rest = path
            .strip_prefix(route.path_prefix.trim_end_matches('/'))
            .unwrap_or(path);
        if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        }
    } else {
        path.to_owned()
    };
    let full = match request.uri().query() {
        Some(query) => format!("{kept}?{query}"),
        None => kept,
    };
    full.parse()
        .map_err(|_| ProxyError::BadRequest("malformed request target".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
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
            &config.routes,
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
            &config.routes,
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
            choose(&config.routes, &request(caller, uri, host))
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
                choose(&config.routes, &request("erp", path, Some("gw.local"))).is_ok(),
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
        let scheme =
            proptest::sample::select(&["http://", "https://", "", "HTTP://", "ftp://"][..]);
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
            match choose(&config.routes, &request) {
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
}
