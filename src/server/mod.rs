//! Listening: the accept loop of the proxy port, its connection limit, and a graceful stop that
//! lets requests in flight finish. Connections beyond `max_connections` get a 503 and are closed
//! before any request is read; out of descriptors, the newest is shed.
//!
//! Every connection is served by [`connection::serve_connection`], the inside of a tunnel too
//! ([`tunnel`]): a tunnel is the rest of the life of the connection that asked for it, on the same
//! task, so it keeps that connection's `max_connections` slot, its place in
//! `sfproxy_connections_open` and in the drain, and gets the same header timeout and limits.

pub(crate) mod connection;
pub(crate) mod rewind;
pub(crate) mod tunnel;

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, Version, header};
use hyper::body::Incoming;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tower::{Service, ServiceExt};

use crate::{
    body::{self, ProxyBody},
    config::ProxySettings,
    context::{ClientAddr, TunnelGrant},
    error::ProxyError,
    layer::rescue::raw_answer,
    metrics,
    server::connection::{ConnectionLimits, Serving, serve_connection},
    workers::Workers,
};

/// How long the accept loop waits after an accept error other than running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves on `listener` until `shutdown` resolves, then lets connections finish for up to
/// `grace()`. Connections are accepted here and served on `workers`. Each request is served by
/// the stack `current()` returns when it arrives, so a reload takes effect for new requests
/// while requests in flight finish on the old stack.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    workers: &Workers,
    settings: &ProxySettings,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
    grace: impl FnOnce() -> Duration,
) where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let (drain, draining) = watch::channel(false);
    let limits = ConnectionLimits {
        max_header_bytes: settings.max_header_bytes,
        header_timeout: settings.header_timeout,
    };
    let serving = Serving::new(&limits, draining);
    // A descriptor kept free for the moment there are none left: see `shed`.
    let mut spare = reserve();
    tokio::pin!(shutdown);
    loop {
        if spare.is_none() {
            spare = reserve();
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_descriptors(&error) => {
                    shed(&listener, &mut spare, &error).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream, settings.max_connections));
            continue;
        };
        // Off this runtime's reactor, onto the serving thread's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "connection lost before it was served");
                continue;
            }
        };
        let current = current.clone();
        let mut serving = serving.clone();
        workers.serve(move || async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "connection lost before it was served");
                    return;
                }
            };
            let open = ::metrics::gauge!(metrics::CONNECTIONS_OPEN);
            open.increment(1.0);
            let tunnel = Arc::new(Mutex::new(None));
            serve_connection(
                stream,
                peer,
                &mut serving,
                per_request(peer, current.clone(), tunnel.clone()),
            )
            .await;
            // A granted CONNECT: the connection goes on as the tunnel, with its slot.
            let granted = tunnel.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some((upgrade, grant)) = granted {
                tunnel::serve(upgrade, grant, peer, &mut serving, current).await;
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    let grace = grace();
    tracing::info!(grace = ?grace, "stopped accepting; letting requests in flight finish");
    let _ = drain.send(true);
    drop(serving);
    if tokio::time::timeout(grace, drain.closed()).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing them");
    }
}

/// Where a granted CONNECT leaves its tunnel for the connection to serve once its 200 is sent.
type TunnelSlot = Arc<Mutex<Option<(hyper::upgrade::OnUpgrade, TunnelGrant)>>>;

/// The proxy port's requests: each through the stack `current()` returns, with the caller's
/// address; a CONNECT the stack grants is kept in `tunnel`.
fn per_request<S>(
    peer: SocketAddr,
    current: impl Fn() -> S + Clone + Send + Sync + 'static,
    tunnel: TunnelSlot,
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
        // Only an HTTP/1 CONNECT opens a tunnel (the route layer refuses one over HTTP/2). Python's
        // http.client, under python-requests and every library on it, sends `CONNECT … HTTP/1.0`.
        let connect = request.method() == Method::CONNECT
            && matches!(request.version(), Version::HTTP_10 | Version::HTTP_11);
        let upgrade = connect.then(|| (hyper::upgrade::on(&mut request), tunnel.clone()));
        let current = current.clone();
        async move {
            let Ok(mut response) = current().oneshot(request.map(body::boxed)).await;
            if let Some((upgrade, tunnel)) = upgrade {
                match response.extensions_mut().remove::<TunnelGrant>() {
                    Some(grant) => {
                        *tunnel.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some((upgrade, grant));
                    }
                    // A refused CONNECT ends its connection: what the caller sends next is
                    // likely the TLS it meant for the tunnel, not a request.
                    None => {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                }
            }
            Ok::<_, Infallible>(response)
        }
    })
}

/// Answers a connection over `max_connections` with a 503 and closes it: a precise refusal,
/// without reading (or waiting for) the request.
async fn refuse_connection(mut stream: TcpStream, limit: usize) {
    let error = ProxyError::TooManyConnections { limit };
    tracing::warn!(code = error.code(), limit, "connection refused");
    let _ = stream.write_all(&raw_answer(&error)).await;
    let _ = stream.shutdown().await;
}

/// A descriptor held in reserve (`/dev/null`), so that when the process runs out, one can be
/// freed to accept the newest connection and close it.
fn reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// EMFILE or ENFILE (the same numbers on Linux, the BSDs and macOS).
fn out_of_descriptors(error: &io::Error) -> bool {
    cfg!(unix) && matches!(error.raw_os_error(), Some(23 | 24))
}

/// Out of descriptors: the connection waiting in the backlog is taken with the reserved
/// descriptor, answered 503 if it can be at once, and closed, so accepting never stalls (a
/// listener that cannot accept stays readable, and waiting leaves every caller hanging). The
/// connections already served are not touched.
async fn shed(listener: &TcpListener, spare: &mut Option<std::fs::File>, error: &io::Error) {
    if spare.take().is_none() {
        // No reserve (another thread took the freed descriptor): nothing to accept with. Said
        // once a second at most, while the loop tries again every `ACCEPT_BACKOFF`.
        static WARNED_AT: AtomicU64 = AtomicU64::new(0);
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if WARNED_AT.swap(second, Ordering::Relaxed) != second {
            tracing::warn!(%error, "out of file descriptors, and none in reserve");
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
        return;
    }
    if let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        let refusal = ProxyError::OutOfDescriptors;
        tracing::warn!(
            %peer, code = refusal.code(), %error,
            "connection shed: out of file descriptors"
        );
        let _ = stream.try_write(&raw_answer(&refusal));
    }
    *spare = reserve();
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed now, not on
/// first poll, so a signal that arrives right after start-up is not fatal.
pub(crate) fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
