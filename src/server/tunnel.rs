//! The tunnels a granted CONNECT opens: the rest of the life of the connection that asked for
//! one, on its task, served by [`serve_connection`] with the proxy port's settings.
//!
//! `CONNECT host:443` carries TLS, terminated with a leaf of the interception CA
//! (`Intercept::accept`); `CONNECT host:80` carries plain HTTP (Node's `https-proxy-agent`,
//! curl `-p`); the first bytes must confirm which. Either way every request inside goes through the
//! same stack as an absolute-form `https://host/...` (or `http://host/...`) request, from the
//! caller identified on the CONNECT.

use std::{convert::Infallible, future::Future, net::SocketAddr};

use http::{Request, Response, Uri};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tower::{Service, ServiceExt};

use crate::{
    body::{self, ProxyBody},
    context::{ClientAddr, Inside, Tunnel, TunnelGrant},
    error::ProxyError,
    layer::rescue::raw_answer,
    server::{
        connection::{Serving, serve_connection},
        rewind::{Peek, Rewind},
    },
};

/// Serves the tunnel a granted CONNECT opened, once its 200 is sent: TLS with the host's leaf on
/// port 443, plain HTTP on port 80, as the first bytes must confirm; then HTTP/1.1 or HTTP/2, each
/// request through the stack `current()` returns, with the limits and drain of `serving`.
pub(crate) async fn serve<S>(
    upgrade: OnUpgrade,
    grant: TunnelGrant,
    peer: SocketAddr,
    serving: &mut Serving,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
) where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let TunnelGrant {
        host,
        caller,
        inside,
    } = grant;
    let port = inside.port();
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%peer, %host, %error, "the tunnel closed before it opened");
            return;
        }
    };
    let mut io = Rewind::new(TokioIo::new(upgraded));
    // One deadline for the first bytes and the TLS handshake: a caller cannot stretch the time
    // before its first request head by taking each step slowly.
    let deadline = tokio::time::Instant::now() + serving.header_timeout();
    let tls = match tokio::time::timeout_at(deadline, starts_with_tls(&mut io)).await {
        Ok(Ok(tls)) => tls,
        _ => {
            tracing::debug!(
                %peer, %host, port,
                "tunnel closed: nothing sent within header_timeout, or gone"
            );
            return;
        }
    };
    let tunnel = Tunnel {
        host: host.clone(),
        caller,
    };
    match (inside, tls) {
        (Inside::Tls(intercept), true) => {
            let Some(stream) = intercept.accept(io, &host, peer, deadline).await else {
                return;
            };
            tracing::debug!(%peer, %host, port, "tunnel open");
            let service = inside_tunnel("https", tunnel, peer, current);
            serve_connection(Rewind::new(stream), peer, serving, service).await;
        }
        (Inside::Plain, false) => {
            tracing::debug!(%peer, %host, port, "tunnel open");
            let service = inside_tunnel("http", tunnel, peer, current);
            serve_connection(io, peer, serving, service).await;
        }
        (Inside::Tls(_), false) => {
            let error = ProxyError::BadRequest(format!(
                "the tunnel to {host}:443 expected TLS, but the caller sent plain HTTP: send \
                 http:// URLs through the proxy without a tunnel, or CONNECT to {host}:80 for \
                 plain HTTP"
            ));
            tracing::warn!(
                %peer, %host, port, code = error.code(),
                "plain HTTP in a tunnel that expected TLS; answered 400"
            );
            let _ = io.write_all(&raw_answer(&error)).await;
            let _ = io.shutdown().await;
        }
        (Inside::Plain, true) => {
            tracing::warn!(
                %peer, %host, port,
                "TLS in a tunnel to port 80, which carries plain HTTP; closed (CONNECT to port 443 \
                 for https, with [proxy.intercept])"
            );
        }
    }
}

/// Whether the tunnel starts with a TLS handshake record (`0x16 0x03`): its first bytes decide.
async fn starts_with_tls(io: &mut impl Peek) -> std::io::Result<bool> {
    let mut start = [0u8; 2];
    let n = io.peek(&mut start, 1).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if start[0] != 0x16 {
        return Ok(false);
    }
    Ok(io.peek(&mut start, 2).await? == 2 && start[1] == 0x03)
}

/// The requests inside a tunnel: each as if sent in absolute form to `scheme://host/...` (same
/// routing, same log line), from the caller identified on the CONNECT.
fn inside_tunnel<S>(
    scheme: &'static str,
    tunnel: Tunnel,
    peer: SocketAddr,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Send
+ 'static
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        request.extensions_mut().insert(tunnel.clone());
        if let Ok(uri) = absolute(scheme, &tunnel.host, request.uri()) {
            *request.uri_mut() = uri;
        }
        current().oneshot(request.map(body::boxed))
    })
}

/// `{scheme}://{host}{path and query}`.
fn absolute(scheme: &str, host: &str, uri: &Uri) -> Result<Uri, http::Error> {
    let path = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    Uri::builder()
        .scheme(scheme)
        .authority(host)
        .path_and_query(path)
        .build()
}
