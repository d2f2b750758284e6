//! One connection served to its end, by hyper, with the settings of the port it arrived on: the
//! proxy port, the inside of a tunnel (the same settings as the proxy port that opened it) and the
//! admin port all come through [`serve_connection`].
//!
//! What HTTP parsing itself must refuse is refused here, by hyper: header sections that arrive
//! too slowly (slowloris) or grow far too large, and malformed framing (two different
//! `Content-Length`s). A request framed by both `Content-Length` and `Transfer-Encoding` is
//! refused with 400 `PROXY_BAD_REQUEST` and its connection closed, as Envoy does: hyper would
//! read it by its chunked framing and drops `Content-Length` from the header map, so each HTTP/1
//! connection's bytes go through `framing::FramingWatch`, which notes the heads that had both,
//! and such a request is marked with a `FramingDoubt` for the limits layer.

use std::{
    convert::Infallible, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

use crate::{
    body::ProxyBody,
    framing::{FramingLog, FramingWatch},
    server::rewind::Peek,
    tap::Tapped,
};

/// hyper's own limit on the header section is this many times `max_header_bytes`: up to the
/// configured size the limits layer answers with a precise 431, beyond it hyper cuts in.
const HYPER_HEADER_SLACK: usize = 2;

/// What the connections of a port are held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// The request line and headers together.
    pub(crate) max_header_bytes: usize,
    /// The protocol must be known, and each header section complete, within this.
    pub(crate) header_timeout: Duration,
}

/// How the connections of one port (and the tunnels opened on them) are served: hyper's
/// builders with the header limits, the header timeout, and the drain.
#[derive(Clone)]
pub(crate) struct Serving {
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
    pub(crate) fn new(limits: &ConnectionLimits, draining: watch::Receiver<bool>) -> Serving {
        let header_limit = limits.max_header_bytes * HYPER_HEADER_SLACK;
        // hyper's default head parsing, without its lenient options: the framing watch skips
        // parsing heads its scan proves plain, relying on hyper to refuse any head httparse
        // would (`framing::plain_head`).
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(header_limit.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(header_limit).unwrap_or(u32::MAX));
        Serving {
            http1,
            http2,
            header_timeout: limits.header_timeout,
            max_head: header_limit,
            draining,
        }
    }

    /// Within this a new connection (or tunnel) must have said what it speaks, and a header
    /// section must be complete.
    pub(crate) fn header_timeout(&self) -> Duration {
        self.header_timeout
    }
}

/// Serves one connection to its end: the proxy port's, or the inside of a tunnel. The first
/// bytes, which must arrive within `header_timeout`, tell HTTP/1.1 from HTTP/2; then hyper
/// serves it with the limits of `serving` until it closes, or finishes its requests once the
/// drain starts.
pub(crate) async fn serve_connection<I, S>(
    io: I,
    peer: SocketAddr,
    serving: &mut Serving,
    service: S,
) where
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
