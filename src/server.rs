//! Listening and serving: the accept loop, HTTP/1.1 and HTTP/2 (h2c) on the proxy port, the
//! tunnels CONNECT opens on it, and a graceful stop that lets requests in flight finish.
//!
//! What HTTP parsing itself must refuse is refused here, by hyper: header sections that arrive
//! too slowly (slowloris) or grow far too large, and malformed framing (two different
//! `Content-Length`s). A request framed by both `Content-Length` and `Transfer-Encoding` is
//! refused with 400 `PROXY_BAD_REQUEST` and its connection closed, as Envoy does: hyper would
//! read it by its chunked framing and drops `Content-Length` from the header map, so each HTTP/1
//! connection's bytes go through `framing::FramingWatch`, which notes the heads that had both,
//! and such a request is marked with a `FramingDoubt` for the limits layer. Connections beyond
//! `max_connections` get a 503 and are closed before any request is read.
//!
//! Every connection is served by [`serve_connection`], the inside of a tunnel too: a tunnel is the
//! rest of the life of the connection that asked for it, on the same task, so it keeps that
//! connection's `max_connections` slot, its place in `sfproxy_connections_open` and in the drain,
//! and gets the same header timeout and limits.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tower::ServiceExt;

use crate::{
    body::{self, ProxyBody},
    config::ProxySettings,
    error::ProxyError,
    framing::{FramingLog, FramingWatch},
    intercept::{self, TunnelGrant},
    layer::identify::ClientAddr,
    metrics,
    stack::ProxyService,
    tap::Tapped,
    workers::Workers,
};

/// hyper's own limit on the header section is this many times `max_header_bytes`: up to the
/// configured size the limits layer answers with a precise 431, beyond it hyper cuts in.
const HYPER_HEADER_SLACK: usize = 2;
/// How long the accept loop waits after an accept error other than running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// How the connections of the proxy port, and the tunnels opened on them, are served: hyper's
/// builders with the header limits, the header timeout, and the drain.
#[derive(Clone)]
pub struct Serving {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
    /// hyper's own limit on a header section; past it the framing watch stops reading heads.
    max_head: usize,
    /// Held by every connection; on shutdown each is asked to finish its requests and close,
    /// and the drain is over once every receiver is gone.
    draining: watch::Receiver<bool>,
}

impl Serving {
    fn new(settings: &ProxySettings, draining: watch::Receiver<bool>) -> Serving {
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
        Serving {
            http1,
            http2,
            header_timeout: settings.header_timeout,
            max_head: header_limit,
            draining,
        }
    }

    /// Within this a new connection (or tunnel) must have said what it speaks, and a header
    /// section must be complete.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }
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
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let (drain, draining) = watch::channel(false);
    let serving = Serving::new(settings, draining);
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
                intercept::serve_tunnel(upgrade, grant, peer, &mut serving, current).await;
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
fn per_request(
    peer: SocketAddr,
    current: impl Fn() -> ProxyService + Clone + Send + Sync + 'static,
    tunnel: TunnelSlot,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        // Only an HTTP/1.1 CONNECT opens a tunnel (the route layer refuses one over HTTP/2).
        let connect = request.method() == Method::CONNECT && request.version() == Version::HTTP_11;
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

/// Serves one connection to its end: the proxy port's, or the inside of a tunnel. The first
/// bytes, which must arrive within `header_timeout`, tell HTTP/1.1 from HTTP/2; then hyper
/// serves it with the limits of `serving` until it closes, or finishes its requests once the
/// drain starts.
pub async fn serve_connection<I, S>(io: I, peer: SocketAddr, serving: &mut Serving, service: S)
where
    I: Peek + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut io = io;
    // hyper's header timeout starts once it knows the protocol: a caller that connects and says
    // nothing, or stalls inside the HTTP/2 preface, must not hold a connection slot for ever.
    let protocol = tokio::time::timeout(serving.header_timeout, protocol_of(&mut io)).await;
    let served = match protocol {
        Ok(Ok(Protocol::Http1)) => {
            // hyper reads a head with both Content-Length and Transfer-Encoding by its chunked
            // framing and hides the Content-Length: the watch tells the limits layer which
            // requests came so, for it to refuse them.
            let framing = Arc::new(FramingLog::default());
            let io = Tapped::new(io, FramingWatch::new(framing.clone(), serving.max_head));
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                if let Some(doubt) = framing.next() {
                    request.extensions_mut().insert(doubt);
                }
                service.call(request)
            });
            let connection = serving
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            until_drained(connection, &mut serving.draining, |c| c.graceful_shutdown()).await
        }
        Ok(Ok(Protocol::Http2)) => {
            let connection = serving.http2.serve_connection(TokioIo::new(io), service);
            until_drained(connection, &mut serving.draining, |c| c.graceful_shutdown()).await
        }
        _ => {
            tracing::debug!(%peer, "closed: nothing sent within header_timeout, or gone");
            Ok(())
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, error = %error, "connection ended with an error");
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
async fn protocol_of(io: &mut impl Peek) -> io::Result<Protocol> {
    let mut start = [0u8; H2_PREFACE.len()];
    let mut want = 1;
    loop {
        let n = io.peek(&mut start, want).await?;
        if n < want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if start[..n] != H2_PREFACE[..n] {
            return Ok(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        want = n + 1;
    }
}

/// A connection whose first bytes can be looked at before it is served.
pub trait Peek {
    /// Copies the connection's first bytes into `buf` without consuming them, once there are at
    /// least `want` (or `buf` is full); fewer only if the caller closed first.
    fn peek(
        &mut self,
        buf: &mut [u8],
        want: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Peek for TcpStream {
    async fn peek(&mut self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        let want = want.min(buf.len());
        loop {
            let n = TcpStream::peek(self, buf).await?;
            if n == 0 || n >= want {
                return Ok(n);
            }
            // Fewer bytes than wanted so far: peek returns at once while nothing new arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A stream whose first bytes were read to look at them, and are read again first: the inside
/// of a tunnel (no `peek` there), or its TLS.
pub struct Rewind<I> {
    prefix: BytesMut,
    io: I,
}

impl<I> Rewind<I> {
    pub fn new(io: I) -> Rewind<I> {
        Rewind {
            prefix: BytesMut::new(),
            io,
        }
    }
}

impl<I: AsyncRead + Unpin + Send> Peek for Rewind<I> {
    async fn peek(&mut self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        let want = want.min(buf.len());
        while self.prefix.len() < want {
            self.prefix.reserve(want.max(1024));
            if self.io.read_buf(&mut self.prefix).await? == 0 {
                break;
            }
        }
        let n = self.prefix.len().min(buf.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        Ok(n)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
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
async fn refuse_connection(mut stream: TcpStream, limit: usize) {
    let error = ProxyError::TooManyConnections { limit };
    tracing::warn!(code = error.code(), limit, "connection refused");
    let _ = stream.write_all(&raw_answer(&error)).await;
    let _ = stream.shutdown().await;
}

/// `error` as a whole HTTP/1.1 answer written on a raw connection, before (or instead of) any
/// request is read, with `connection: close`; counted as a refusal.
pub fn raw_answer(error: &ProxyError) -> Vec<u8> {
    ::metrics::counter!(metrics::REFUSALS, "code" => error.code()).increment(1);
    let body = error.to_json();
    let retry = if error.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {retry}connection: close\r\n\r\n{body}",
        error.status().as_u16(),
        error.status().canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
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
