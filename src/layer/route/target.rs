//! What a request targets, read the way Salesforce will read it: the host (absolute form, else
//! `Host`), the path refused when normalisation could change its meaning; and the rules by which
//! a route's hosts, path prefix and clients match it. The config holds the patterns as plain
//! data; matching them is route choice, so it lives here.

use std::borrow::Cow;

use http::{Request, header};

use crate::{
    config::{HostPattern, Route},
    context::Tunnel,
    error::ProxyError,
    layer::limits::check_host,
};

impl HostPattern {
    /// `host` is already lower-case, without port or trailing dot.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            Self::Exact(name) => host == name,
        }
    }
}

impl Route {
    /// One of the route's host patterns matches `host` (lower-case, no port or trailing dot).
    pub(crate) fn serves_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.matches(host))
    }

    /// Segment-aware: `/acme` matches `/acme` and `/acme/x`, not `/acmex`.
    pub(crate) fn matches_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.path_prefix.as_str()) {
            Some(rest) => {
                self.path_prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
            }
            None => false,
        }
    }

    pub(crate) fn admits(&self, client: &str) -> bool {
        self.clients
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == client))
    }
}

/// The lower-case target host, without port or trailing dot.
pub(crate) fn target_host<B>(request: &Request<B>) -> Result<Cow<'_, str>, ProxyError> {
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
pub(super) fn simple_host(value: &[u8]) -> Option<&str> {
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
#[inline]
pub(super) fn check_path(path: &str) -> Result<(), ProxyError> {
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
