//! Listening and serving: the accept loop, HTTP/1.1 and HTTP/2 (h2c) on the proxy port, and a
//! graceful stop that lets requests in flight finish.
//!
//! What HTTP parsing itself must refuse is refused here, by hyper: header sections that arrive
//! too slowly (slowloris) or grow far too large, and malformed framing (two different
//! `Content-Length`s). A request framed by both `Content-Length` and `Transfer-Encoding` is read
//! by its chunked framing and its connection closed after the answer (RFC 9112 §6.3), so nothing
//! can be smuggled behind it. Connections beyond `max_connections` get a 503 and are closed
//! before any request is read.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use http::{Method, Request};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tower::ServiceExt;

use crate::{
    body,
    config::ProxySettings,
    error::ProxyError,
    intercept::{self, TunnelGrant},
    layer::{
        identify::ClientAddr,
        limits::{AmbiguousFraming, FramingLog, FramingWatch},
    },
    metrics,
    stack::ProxyService,
    workers::{self, Workers},
};

/// hyper's own limit on the header section is this many times `max_header_bytes`: up to the
/// configured size the limits layer answers with a precise 431, beyond it hyper cuts in.
const HYPER_HEADER_SLACK: usize = 2;

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves on `listener` until `shutdown` resolves, then lets connections finish for up to
/// `grace()`. Connections are accepted here and served on `workers`. Each request is served by
/// the stack `current()` returns when it arrives, so a reload takes effect for new requests
/// while requests in flight finish on the old stack.
pub async fn serve(
    listener: TcpListener,
    workers: &Workers,
    settings: &ProxySettings,
    current: impl Fn() -> ProxyService + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
    grace: impl FnOnce() -> Duration,
) {
    let header_limit = settings.max_header_bytes * HYPER_HEADER_SLACK;
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(header_limit.max(8192));
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_limit).unwrap_or(u32::MAX));
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    // The drain: every connection holds a receiver; on shutdown each is asked to finish its
    // requests and close, and the drain is over once every receiver is gone.
    let (drain, draining) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
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
        let current = current.clone();
        let framing = Arc::new(FramingLog::default());
        let heads = framing.clone();
        let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            if request.version() < http::Version::HTTP_2 && heads.next_is_ambiguous() {
                request.extensions_mut().insert(AmbiguousFraming);
            }
            // A CONNECT the stack grants becomes a tunnel once its 200 is on the wire.
            let upgrade =
                (request.method() == Method::CONNECT).then(|| hyper::upgrade::on(&mut request));
            let current = current.clone();
            async move {
                let Ok(mut response) = current().oneshot(request.map(body::boxed)).await;
                if let (Some(upgrade), Some(grant)) =
                    (upgrade, response.extensions_mut().remove::<TunnelGrant>())
                {
                    // The tunnel outlives this connection: it counts on this thread instead.
                    let busy = workers::Busy::here();
                    tokio::spawn(async move {
                        intercept::serve_tunnel(upgrade, grant, peer, current).await;
                        drop(busy);
                    });
                }
                Ok::<_, Infallible>(response)
            }
        });
        // Off this runtime's reactor, onto the serving thread's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "connection lost before it was served");
                continue;
            }
        };
        let (http1, http2) = (http1.clone(), http2.clone());
        let mut draining = draining.clone();
        let header_timeout = settings.header_timeout;
        workers.serve(move || async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "connection lost before it was served");
                    return;
                }
            };
            let open = ::metrics::gauge!(metrics::CONNECTIONS_OPEN);
            open.increment(1.0);
            // hyper's header timeout starts once it knows the protocol: a caller that connects
            // and says nothing, or stalls inside the HTTP/2 preface, must not hold a
            // connection slot for ever.
            let served = match tokio::time::timeout(header_timeout, protocol_of(&stream)).await {
                Ok(Ok(Protocol::Http1)) => {
                    let stream = FramingWatch::new(stream, framing, header_limit);
                    let connection = http1
                        .serve_connection(TokioIo::new(stream), per_request)
                        .with_upgrades();
                    until_drained(connection, &mut draining, |c| c.graceful_shutdown()).await
                }
                Ok(Ok(Protocol::Http2)) => {
                    let connection = http2.serve_connection(TokioIo::new(stream), per_request);
                    until_drained(connection, &mut draining, |c| c.graceful_shutdown()).await
                }
                _ => {
                    tracing::debug!(%peer, "closed: nothing sent within header_timeout, or gone");
                    Ok(())
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    let grace = grace();
    tracing::info!(grace = ?grace, "stopped accepting; letting requests in flight finish");
    let _ = drain.send(true);
    drop(draining);
    if tokio::time::timeout(grace, drain.closed()).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing them");
    }
}

/// What an HTTP/2 (h2c) caller sends first; anything else is read as HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Protocol {
    Http1,
    Http2,
}

/// The protocol, once the first bytes tell HTTP/1 from the HTTP/2 preface; an error if the caller
/// closed first. Peeked, not read: hyper then reads the request whole from the socket (behind
/// hyper-util's auto-detection its first read was the sniffed bytes alone, which doubled its
/// 8 KB read buffer on every connection).
async fn protocol_of(stream: &tokio::net::TcpStream) -> std::io::Result<Protocol> {
    let mut start = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut start).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if start[..n] != H2_PREFACE[..n] {
            return Ok(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // Part of the preface so far: peek returns at once while nothing new arrives.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serves `connection` to its end; once the drain starts, asks it (`stop`) to finish the
/// requests it has and close.
async fn until_drained<C, E>(
    connection: C,
    draining: &mut watch::Receiver<bool>,
    stop: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return served,
        _ = draining.wait_for(|&drain| drain) => stop(connection.as_mut()),
    }
    connection.await
}

/// Answers a connection over `max_connections` with a 503 and closes it: a precise refusal,
/// without reading (or waiting for) the request.
async fn refuse_connection(mut stream: tokio::net::TcpStream, limit: usize) {
    let error = ProxyError::TooManyConnections { limit };
    tracing::warn!(code = error.code(), limit, "connection refused");
    ::metrics::counter!(metrics::REFUSALS, "code" => error.code()).increment(1);
    let body = error.to_json();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        error.status().as_u16(),
        error.status().canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed now, not on
/// first poll, so a signal that arrives right after start-up is not fatal.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
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
