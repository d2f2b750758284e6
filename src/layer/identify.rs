//! Who is calling: a configured client, named by `Proxy-Authorization` or by source address.
//!
//! With `Proxy-Authorization: Basic`, the user part names the client, the secret must match its
//! SHA-256 (compared in constant time) and the source must lie in its networks when it has any.
//! Without the header, the caller is the first client, in file order, that has no secret and whose
//! networks hold the source. With no clients configured, only loopback callers are served. Anyone
//! else gets 407 and learns nothing about which part was wrong: refused credentials get one and
//! the same answer whether the client is unknown, the secret wrong or the source outside the
//! client's networks (nor is the client named: that would confirm it exists); the log says which.
//!
//! With legacy logins on, a caller sending no `Proxy-Authorization` that no network names is let
//! on as [`Unidentified`]: its request may carry a login's password or a session id sfproxy
//! handed out, which the logins stage reads; nothing else gets it past the route stage.

use std::{
    future::{Ready, ready},
    net::IpAddr,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use aws_lc_rs::{constant_time::verify_slices_are_equal, digest};
use base64::Engine;
use futures_util::future::Either;
use http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service};

use crate::{
    body::ProxyBody,
    config::Client,
    context::{Caller, ClientAddr, Notes, Tunnel, Unidentified},
    error::ProxyError,
};

/// The one answer to credentials that were not accepted, whatever was wrong with them.
const CREDENTIALS_REFUSED: &str = "the proxy credentials were not accepted";

/// The caller's name when no `[clients]` are configured (loopback only).
pub(crate) const LOCAL_CALLER: &str = "local";
static LOCAL: LazyLock<Arc<str>> = LazyLock::new(|| LOCAL_CALLER.into());

#[derive(Clone)]
pub(crate) struct IdentifyLayer {
    clients: Arc<[Client]>,
    logins: bool,
}

impl IdentifyLayer {
    /// `logins`: whether legacy logins are answered (`[logins]`).
    pub(crate) fn new(clients: Vec<Client>, logins: bool) -> Self {
        Self {
            clients: clients.into(),
            logins,
        }
    }
}

impl<S> Layer<S> for IdentifyLayer {
    type Service = Identify<S>;
    fn layer(&self, inner: S) -> Identify<S> {
        Identify {
            inner,
            clients: self.clients.clone(),
            logins: self.logins,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Identify<S> {
    inner: S,
    clients: Arc<[Client]>,
    logins: bool,
}

impl<S> Service<Request<ProxyBody>> for Identify<S>
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
        let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>().copied() else {
            return Either::Left(ready(Err(ProxyError::Internal(
                "request without a peer address".into(),
            ))));
        };
        // Inside a tunnel the caller was identified on its CONNECT (or is named request by
        // request, in a tunnel opened for legacy logins).
        let tunnelled = request
            .extensions()
            .get::<Tunnel>()
            .map(|t| t.caller.clone());
        let credentials = request.headers().get(header::PROXY_AUTHORIZATION);
        let identified = match tunnelled {
            Some(Some(caller)) => Ok(caller),
            // A tunnel opened for legacy logins: a request inside may still name its client.
            Some(None) if credentials.is_some() => identify(&self.clients, peer.ip(), credentials),
            Some(None) => Err(ProxyError::AuthRequired(
                "this tunnel was opened for legacy logins: send a login, or the session id it \
                 returned"
                    .into(),
            )),
            None => identify(&self.clients, peer.ip(), credentials),
        };
        match identified {
            Ok(caller) => {
                // With legacy logins on, the route stage notes the client (see there).
                if !self.logins {
                    if let Some(notes) = request.extensions().get::<Arc<Notes>>() {
                        notes.set_client(caller.name.clone());
                    }
                }
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(ProxyError::AuthRequired(refusal)) if self.logins && credentials.is_none() => {
                request.extensions_mut().insert(Unidentified { refusal });
                Either::Right(self.inner.call(request))
            }
            Err(error) => Either::Left(ready(Err(error))),
        }
    }
}

/// Decides who the caller is; see the module doc for the rules.
pub(crate) fn identify(
    clients: &[Client],
    source: IpAddr,
    credentials: Option<&HeaderValue>,
) -> Result<Caller, ProxyError> {
    let source = source.to_canonical();
    if clients.is_empty() {
        return if source.is_loopback() {
            Ok(Caller {
                name: LOCAL.clone(),
            })
        } else {
            tracing::warn!(%source, "refused: no [clients] are configured, so only loopback callers are served");
            Err(ProxyError::AuthRequired(format!(
                "this proxy serves no callers from {source}"
            )))
        };
    }
    let Some(credentials) = credentials else {
        return clients
            .iter()
            .find(|c| c.secret_sha256.is_none() && c.networks.iter().any(|n| n.contains(&source)))
            .map(|c| Caller {
                name: c.name.clone(),
            })
            .ok_or_else(|| {
                ProxyError::AuthRequired(format!(
                    "no client is known for {source} without credentials: send \
                     Proxy-Authorization: Basic base64(client:secret)"
                ))
            });
    };
    let (name, secret) = parse_basic(credentials).ok_or_else(|| {
        ProxyError::AuthRequired(
            "malformed Proxy-Authorization: expected Basic base64(client:secret)".into(),
        )
    })?;
    let known = clients.iter().any(|c| *c.name == *name);
    let refused = |reason: &str| {
        // An unknown name is not logged: callers mix up name and secret. A known one is logged
        // with `?`, quoted and escaped, so it cannot forge log lines.
        let client = if known { &*name } else { "(unknown)" };
        tracing::warn!(client = ?client, %source, reason, "proxy credentials refused");
        ProxyError::AuthRequired(CREDENTIALS_REFUSED.to_owned())
    };
    let client = clients
        .iter()
        .find(|c| *c.name == *name)
        .ok_or_else(|| refused("unknown client"))?;
    let Some(expected) = &client.secret_sha256 else {
        return Err(refused(
            "the client has no secret: it is identified by network, without Proxy-Authorization",
        ));
    };
    // The config keeps the secret's SHA-256, never the secret.
    let digest = digest::digest(&digest::SHA256, secret.as_bytes());
    if verify_slices_are_equal(digest.as_ref(), expected).is_err() {
        return Err(refused("wrong secret"));
    }
    if !client.networks.is_empty() && !client.networks.iter().any(|n| n.contains(&source)) {
        return Err(refused("source address outside the client's networks"));
    }
    Ok(Caller {
        name: client.name.clone(),
    })
}

/// `Basic base64(user:secret)`, scheme case-insensitive (RFC 7617), the user up to the first
/// `:`, whitespace around the value and the credentials tolerated. By hand, not the `headers`
/// crate's `Authorization<Basic>`: it refuses that whitespace (which HTTP/2 callers keep, since
/// HPACK trims nothing) and would bring ten crates for these lines.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, secret) = decoded.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        out
    }

    fn basic(user_secret: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_secret);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn clients() -> Vec<Client> {
        vec![
            Client {
                name: "erp".into(),
                networks: vec!["10.20.0.0/16".parse().unwrap()],
                secret_sha256: None,
            },
            Client {
                name: "deploy".into(),
                networks: vec![],
                secret_sha256: Some(sha256(b"s3cret")),
            },
            Client {
                name: "wide".into(),
                networks: vec!["10.0.0.0/8".parse().unwrap()],
                secret_sha256: None,
            },
        ]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn network_clients_in_file_order() {
        let c = clients();
        assert_eq!(&*identify(&c, ip("10.20.1.1"), None).unwrap().name, "erp");
        assert_eq!(&*identify(&c, ip("10.9.1.1"), None).unwrap().name, "wide");
        // IPv4-mapped IPv6 sources (a dual-stack listener) match IPv4 networks.
        assert_eq!(
            &*identify(&c, ip("::ffff:10.20.1.1"), None).unwrap().name,
            "erp"
        );
        assert!(identify(&c, ip("192.168.1.1"), None).is_err());
    }

    #[test]
    fn secrets_are_checked() {
        let c = clients();
        let ok = identify(&c, ip("203.0.113.9"), Some(&basic("deploy:s3cret"))).unwrap();
        assert_eq!(&*ok.name, "deploy");
        for bad in ["deploy:wrong", "nobody:s3cret", "erp:anything", "deploy"] {
            let err = identify(&c, ip("10.20.1.1"), Some(&basic(bad))).unwrap_err();
            assert_eq!(err.code(), "PROXY_AUTH_REQUIRED", "{bad}");
        }
        // Nothing in the answer tells an unknown client from a wrong secret or network.
        let mut narrowed = c.clone();
        narrowed[1].networks = vec!["203.0.113.0/24".parse().unwrap()];
        let refusal = |source: &str, user_secret: &str| {
            identify(&narrowed, ip(source), Some(&basic(user_secret)))
                .unwrap_err()
                .to_json()
        };
        let unknown = refusal("203.0.113.9", "nobody:s3cret");
        assert_eq!(refusal("203.0.113.9", "deploy:wrong"), unknown);
        assert_eq!(refusal("198.51.100.1", "deploy:s3cret"), unknown);
        assert!(!unknown.contains("nobody") && !unknown.contains("203.0.113.9"));
        let bearer = HeaderValue::from_static("Bearer abc");
        assert!(identify(&c, ip("10.20.1.1"), Some(&bearer)).is_err());
        let lower = HeaderValue::from_str(
            &basic("deploy:s3cret")
                .to_str()
                .unwrap()
                .replace("Basic", "basic"),
        )
        .unwrap();
        assert!(identify(&c, ip("1.2.3.4"), Some(&lower)).is_ok());
        // Whitespace around the value or the credentials (HTTP/2 values arrive as sent).
        let encoded = basic("deploy:s3cret").to_str().unwrap()["Basic ".len()..].to_owned();
        for spaced in [
            format!(" Basic {encoded}"),
            format!("Basic {encoded} "),
            format!("Basic \t{encoded}"),
            format!("Basic  {encoded}\t"),
        ] {
            let value = HeaderValue::from_str(&spaced).unwrap();
            assert!(
                identify(&c, ip("1.2.3.4"), Some(&value)).is_ok(),
                "{spaced:?}"
            );
        }
    }

    #[test]
    fn without_clients_only_loopback() {
        assert_eq!(
            &*identify(&[], ip("127.0.0.1"), None).unwrap().name,
            LOCAL_CALLER
        );
        assert_eq!(&*identify(&[], ip("::1"), None).unwrap().name, LOCAL_CALLER);
        assert!(identify(&[], ip("10.0.0.1"), None).is_err());
    }
}
