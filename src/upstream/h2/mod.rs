//! One HTTP/2 connection per instance and serving thread, shared by every request to it there.
//!
//! hyper-util's pooled client checks a connection out of its pool for every request (a lock, a
//! hash of the host, a connect future built and dropped), and while no connection is up it opens
//! one per waiting request: a cold burst of 1,000 requests opened hundreds of TLS connections.
//! Salesforce's instances speak HTTP/2, which multiplexes. Here the first request to an instance
//! opens its connection while the others wait for it, and every later request is a stream on
//! it; a closed connection is replaced by the next request, and a request the closing connection
//! never sent goes once more, on the new one. A stream the instance refused unprocessed is
//! reported as [`Failure::Refused`]: the session layer, which keeps the request, sends it again.
//! A failed attempt answers every request that waited for it. An instance that does not offer `h2` by ALPN is left to the pooled client (HTTP/1.1).
//!
//! One request must not break the connection the others share: a header list larger than the
//! instance takes (its `SETTINGS_MAX_HEADER_LIST_SIZE`, read from its first SETTINGS before the
//! connection is used) is refused here rather than sent, since an instance answers one with a
//! GOAWAY that cuts every stream on the connection.
//!
//! Each serving thread (`workers`) has a connection of its own to each instance, driven by its
//! own runtime: a request and its upstream stream never wait on another thread. The connections
//! are the h2 crate's, each request's stream driven by the request's own future
//! ([`super::stream`]).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ::h2::{
    PingPong, Reason,
    client::{Builder, SendRequest},
};
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header::CONTENT_LENGTH, uri::Authority};
use http_body::Body;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::{net::TcpStream, sync::oneshot};
use tokio_rustls::TlsConnector;

use crate::{
    body::{self, ProxyBody},
    config::InstanceUrl,
    error::error_chain,
    tap::Tapped,
    upstream::{
        client::HttpClient,
        failure::failure_class,
        stream::{Answer, GiveUp, Pipe, SettingsWatch},
    },
    workers,
};

/// A ping this often on each connection...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...must be answered within this, or the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Windows and buffers as hyper's HTTP/2 client has them: a 2 MB window per stream, 5 MB per
/// connection, 1 MB of request body buffered per stream, 16 KB of response headers.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const SEND_BUFFER: usize = 1024 * 1024;
const MAX_RESPONSE_HEADERS: u32 = 16 * 1024;
/// Streams opened before the instance's SETTINGS tell its limit (RFC 9113's recommended floor).
const INITIAL_STREAMS: usize = 100;
/// The largest request header list (RFC 9113 §6.5.2 size) sent to an instance that does not
/// advertise `SETTINGS_MAX_HEADER_LIST_SIZE`. Salesforce documents 16,384 bytes for a request's
/// URI and recommends headers under 8,000; 32 KiB holds the longest URI it takes and twice those
/// headers, and stays well below the 56 KB at which an instance was seen to answer GOAWAY for the
/// whole shared connection.
pub(crate) const DEFAULT_MAX_HEADER_LIST: u32 = 32 * 1024;

/// What broke, for the caller (`reason`: the failure's class, see [`failure_class`]) and
/// for the log (`detail`: the whole error chain, addresses and OS errors included).
#[derive(Clone)]
pub(crate) struct Broken {
    pub(crate) reason: String,
    pub(crate) detail: String,
}

impl Broken {
    fn new(error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            reason: failure_class(error, "instance"),
            detail: error_chain(error),
        }
    }

    fn plain(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// Why a request got no answer: it could not be sent, it was sent and the answer broke off, the
/// instance refused it unprocessed (the session layer sends a request it kept once more), or its
/// headers are larger than the instance takes (it was not sent: on the shared connection, the
/// instance's answer to that would be a GOAWAY failing every other request on it).
pub(crate) enum Failure {
    Connect(Broken),
    NoAnswer(Broken),
    Refused(String),
    HeadersTooLarge { size: usize, limit: u32 },
}

/// The HTTP/2 connections of every instance requests went to.
pub(crate) struct H2Connections {
    tls: TlsConnector,
    connect_timeout: Duration,
    /// Per serving thread (`None`: any other thread), the instances it sent to. They are few
    /// (one or two per org, times the threads): a short list, read without a lock on every
    /// request, copied to add one under `adding`.
    instances: ArcSwap<Vec<ThreadInstance>>,
    adding: Mutex<()>,
}

/// A serving thread (`None`: any other), an instance, and that thread's connection to it.
type ThreadInstance = (Option<usize>, Authority, Arc<Instance>);

/// An open connection: new streams are opened through `send`.
struct Live {
    send: SendRequest<Bytes>,
    /// Set by the connection's task when it ends.
    closed: Arc<AtomicBool>,
    /// Pieces of answers received: data arriving shows the connection alive without a ping.
    received: Arc<AtomicU64>,
    /// The largest header list the instance takes: its `SETTINGS_MAX_HEADER_LIST_SIZE`, else
    /// [`DEFAULT_MAX_HEADER_LIST`].
    max_header_list: Arc<AtomicU32>,
}

#[derive(Default)]
struct Instance {
    sender: ArcSwapOption<Live>,
    /// Held while connecting, so that requests arriving meanwhile wait for that connection; it
    /// holds when the last attempt failed, and why.
    connecting: tokio::sync::Mutex<Option<(Instant, Broken)>>,
    /// The instance chose HTTP/1.1: its requests go through the pooled client.
    http1: AtomicBool,
}

impl Instance {
    fn live(&self) -> Option<Arc<Live>> {
        self.sender
            .load_full()
            .filter(|live| !live.closed.load(Ordering::Acquire))
    }
}

impl H2Connections {
    /// `tls`: the client's TLS settings; ALPN offers `h2` and `http/1.1`.
    pub(crate) fn new(tls: &ClientConfig, connect_timeout: Duration) -> Self {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
            instances: ArcSwap::default(),
            adding: Mutex::default(),
        }
    }

    /// This thread's connection state for `authority`.
    fn instance(&self, authority: &Authority) -> Arc<Instance> {
        let thread = workers::current();
        let find = |list: &[ThreadInstance]| {
            list.iter()
                .find(|(t, a, _)| *t == thread && a == authority)
                .map(|(_, _, instance)| instance.clone())
        };
        if let Some(instance) = find(&self.instances.load()) {
            return instance;
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let list = self.instances.load_full();
        if let Some(instance) = find(&list) {
            return instance;
        }
        let instance = Arc::new(Instance::default());
        let mut next = Vec::clone(&list);
        next.push((thread, authority.clone(), instance.clone()));
        self.instances.store(Arc::new(next));
        instance
    }

    /// Sends `request` (its URI absolute, on `instance`) on the instance's HTTP/2 connection, or
    /// through `pooled` when the instance speaks HTTP/1.1 only.
    pub(crate) async fn send(
        &self,
        pooled: &HttpClient,
        instance: &InstanceUrl,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Failure> {
        let target = self.instance(&instance.0);
        if target.http1.load(Ordering::Relaxed) {
            return send_pooled(pooled, request).await;
        }
        // At most one new connection for a request the current one could not take.
        let mut reconnected = false;
        loop {
            let live = match target.live() {
                Some(live) => live,
                // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is rare, and its future
                // is kilobytes that every request's future would otherwise carry.
                None => match Box::pin(self.connect(&target, &instance.0)).await? {
                    Some(live) => live,
                    None => return send_pooled(pooled, request).await,
                },
            };
            let ready = match live.send.clone().ready().await {
                Ok(ready) => ready,
                // The connection was closing and the request not sent: once more, on a new one.
                Err(_) if !reconnected => {
                    reconnected = true;
                    target.sender.compare_and_swap(&Some(live), None);
                    continue;
                }
                Err(error) => return Err(Failure::NoAnswer(Broken::new(&error))),
            };
            let limit = live.max_header_list.load(Ordering::Relaxed);
            return send_on(ready, request, &live.received, limit).await;
        }
    }

    /// The instance's connection, opened now unless a request that waited with this one just
    /// opened it; `None` if the instance does not speak HTTP/2. The attempt runs as a task of its
    /// own: a caller that leaves (or times out) while it runs does not cancel it for the others.
    async fn connect(
        &self,
        target: &Arc<Instance>,
        authority: &Authority,
    ) -> Result<Option<Arc<Live>>, Failure> {
        let attempt = tokio::spawn(connect(
            target.clone(),
            self.tls.clone(),
            authority.clone(),
            self.connect_timeout,
        ));
        attempt.await.unwrap_or_else(|_| {
            let why = "the connect task failed";
            Err(Failure::Connect(Broken::plain(why, why)))
        })
    }
}

async fn connect(
    target: Arc<Instance>,
    tls: TlsConnector,
    authority: Authority,
    timeout: Duration,
) -> Result<Option<Arc<Live>>, Failure> {
    let waited_from = Instant::now();
    let mut last_failure = target.connecting.lock().await;
    if target.http1.load(Ordering::Relaxed) {
        return Ok(None);
    }
    if let Some(sender) = target.live() {
        return Ok(Some(sender));
    }
    // An attempt that failed while this request waited for it is its answer too: an
    // unreachable instance costs one connect timeout, not one per waiting request in turn.
    if let Some((_, why)) = last_failure.as_ref().filter(|(at, _)| *at >= waited_from) {
        return Err(Failure::Connect(why.clone()));
    }
    let opened = match tokio::time::timeout(timeout, open(&tls, &authority, timeout)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => {
            let why = match failure {
                Failure::Connect(why) | Failure::NoAnswer(why) => why,
                Failure::Refused(why) => Broken::plain(why.clone(), why),
                Failure::HeadersTooLarge { .. } => Broken::plain("no connection", "no connection"),
            };
            *last_failure = Some((Instant::now(), why.clone()));
            return Err(Failure::Connect(why));
        }
        Err(_) => {
            let why = Broken::plain(
                "timed out",
                format!("no connection within {}s", timeout.as_secs()),
            );
            *last_failure = Some((Instant::now(), why.clone()));
            return Err(Failure::Connect(why));
        }
    };
    match opened {
        Some(live) => {
            let live = Arc::new(live);
            target.sender.store(Some(live.clone()));
            Ok(Some(live))
        }
        None => {
            target.http1.store(true, Ordering::Relaxed);
            Ok(None)
        }
    }
}

/// TCP, TLS and the HTTP/2 handshake; `None` if ALPN chose HTTP/1.1.
async fn open(
    tls: &TlsConnector,
    authority: &Authority,
    timeout: Duration,
) -> Result<Option<Live>, Failure> {
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = connect_tcp(host, port, timeout).await?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| Failure::Connect(Broken::plain("not a host name", format!("{host}: {e}"))))?
        .to_owned();
    let tls = tls.connect(name, tcp).await.map_err(|e| {
        let why = Broken::new(&e);
        Failure::Connect(Broken::plain(
            why.reason,
            format!("TLS with {authority}: {}", why.detail),
        ))
    })?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(None);
    }
    let max_header_list = Arc::new(AtomicU32::new(DEFAULT_MAX_HEADER_LIST));
    let (settings_seen, first_settings) = oneshot::channel();
    let tls = Tapped::new(
        tls,
        SettingsWatch::new(max_header_list.clone(), settings_seen),
    );
    let (send, mut connection) = Builder::new()
        .initial_max_send_streams(INITIAL_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER)
        .max_header_list_size(MAX_RESPONSE_HEADERS)
        .enable_push(false)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(|e| {
            let why = Broken::new(&e);
            Failure::Connect(Broken::plain(
                why.reason,
                format!("HTTP/2 with {authority}: {}", why.detail),
            ))
        })?;
    let pings = connection.ping_pong();
    let closed = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let authority = authority.clone();
    let (ended, alive) = (closed.clone(), received.clone());
    tokio::spawn(async move {
        let outcome = tokio::select! {
            served = &mut connection => served.map_err(|e| error_chain(&e)),
            why = keep_alive(pings, &alive) => Err(why),
        };
        ended.store(true, Ordering::Release);
        if let Err(error) = outcome {
            tracing::debug!(%authority, %error, "instance connection closed");
        }
    });
    // The instance's limits come in its first SETTINGS, right after the handshake: a request
    // sent before would be measured against the default instead.
    if first_settings.await.is_err() {
        return Err(Failure::Connect(Broken::plain(
            "the instance closed the connection",
            "closed before its HTTP/2 SETTINGS",
        )));
    }
    Ok(Some(Live {
        send,
        closed,
        received,
        max_header_list,
    }))
}

/// Pings after [`KEEP_ALIVE_INTERVAL`] without answer data, also while idle; returns why the
/// connection must close. A connection that went silent (no FIN, no GOAWAY: a NAT or load
/// balancer forgot it) is found out by an unanswered ping and closed, so the next request opens
/// a new one. While answer data keeps arriving the connection is alive, and a pong may be queued
/// behind megabytes of it on a slow link: that is no reason to close.
async fn keep_alive(pings: Option<PingPong>, received: &AtomicU64) -> String {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    let arrived = || received.load(Ordering::Relaxed);
    let mut seen = arrived();
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        let now = arrived();
        if now != seen {
            seen = now;
            continue;
        }
        let pong = pings.ping(::h2::Ping::opaque());
        tokio::pin!(pong);
        loop {
            match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, pong.as_mut()).await {
                Ok(Ok(_)) => break,
                Ok(Err(error)) => return error_chain(&error),
                Err(_) => {
                    let now = arrived();
                    if now == seen {
                        return format!(
                            "no answer to a ping within {}s",
                            KEEP_ALIVE_TIMEOUT.as_secs()
                        );
                    }
                    seen = now;
                }
            }
        }
        seen = arrived();
    }
}

/// Sends `request` as a new stream: its headers now, its body (if any) under flow control, and
/// waits for the answer's headers. A header list larger than `max_header_list` is not sent.
async fn send_on(
    mut ready: SendRequest<Bytes>,
    request: Request<ProxyBody>,
    received: &Arc<AtomicU64>,
    max_header_list: u32,
) -> Result<Response<ProxyBody>, Failure> {
    let (mut head, body) = request.into_parts();
    let end = body.is_end_stream();
    // As hyper's client does: a body of known size (one kept for a replay, say, that arrived
    // chunked) goes with its `Content-Length`.
    if let Some(length) = body.size_hint().exact() {
        let has_payload = !matches!(
            head.method,
            Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
        );
        if length != 0 || has_payload {
            head.headers
                .entry(CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
    }
    let size = header_list_size(&head);
    if size > max_header_list as usize {
        return Err(Failure::HeadersTooLarge {
            size,
            limit: max_header_list,
        });
    }
    let (answer, send) = ready
        .send_request(Request::from_parts(head, ()), end)
        .map_err(|e| {
            if refused_unprocessed(&e) {
                Failure::Refused(failure_class(&e, "instance"))
            } else {
                Failure::NoAnswer(Broken::new(&e))
            }
        })?;
    let give_up = if end {
        None
    } else {
        let (give_up, on_give_up) = oneshot::channel();
        let mut pipe = Box::pin(Pipe::new(body, send, on_give_up));
        // A body already in memory (one kept for a replay) is sent here at once; one still
        // arriving from the caller is sent by a task of its own while the answer is awaited.
        if std::future::poll_fn(|cx| std::task::Poll::Ready(pipe.as_mut().poll(cx)))
            .await
            .is_pending()
        {
            tokio::spawn(pipe);
        }
        Some(give_up)
    };
    let give_up = GiveUp::new(give_up);
    let response = match answer.await {
        Ok(response) => response,
        Err(error) if refused_unprocessed(&error) => {
            return Err(Failure::Refused(failure_class(&error, "instance")));
        }
        Err(error) => return Err(Failure::NoAnswer(Broken::new(&error))),
    };
    give_up.answered();
    let (head, recv) = response.into_parts();
    let body = Answer::new(recv, &head.headers, received.clone());
    Ok(Response::from_parts(head, body::boxed(body)))
}

/// The instance did not process the stream (RFC 9113 §8.7): it refused it, or it sent a GOAWAY
/// whose last stream came before it, graceful or not (§6.8: streams above the last one were not
/// processed, whatever the error code). h2 fails exactly those, and streams still queued for a
/// free slot, with the GOAWAY itself; the streams at or below it that the closing connection
/// cuts fail with a broken pipe instead, and their callers hear the instance closed it.
fn refused_unprocessed(error: &::h2::Error) -> bool {
    error.reason() == Some(Reason::REFUSED_STREAM) || (error.is_go_away() && error.is_remote())
}

/// The size of the header list as the instance counts it (RFC 9113 §6.5.2): each field's name
/// and value plus 32, pseudo-header fields included.
fn header_list_size(head: &http::request::Parts) -> usize {
    const FIELD: usize = 32;
    let path = head.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let authority = head.uri.authority().map_or(0, |a| a.as_str().len());
    let pseudo = (":method".len() + head.method.as_str().len())
        + (":scheme".len() + "https".len())
        + (":authority".len() + authority)
        + (":path".len() + path)
        + 4 * FIELD;
    head.headers.iter().fold(pseudo, |size, (name, value)| {
        size + name.as_str().len() + value.len() + FIELD
    })
}

/// The first address of `host` that accepts, Nagle off. Each address gets its share of
/// `timeout`: one that drops packets must not use it all up before the next is tried.
async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<_> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| {
            Failure::Connect(Broken::plain(
                "DNS lookup failed",
                format!("cannot resolve {host}: {e}"),
            ))
        })?
        .collect();
    let share = timeout / u32::try_from(addresses.len().max(1)).unwrap_or(u32::MAX);
    let mut last = None;
    for address in addresses {
        match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => {
                let reason = failure_class(&error, "instance");
                last = Some(Broken::plain(
                    reason,
                    format!("tcp connect to {address}: {error}"),
                ));
            }
            Err(_) => {
                last = Some(Broken::plain(
                    "timed out",
                    format!("tcp connect to {address}: no answer within {share:?}"),
                ))
            }
        }
    }
    Err(Failure::Connect(last.unwrap_or_else(|| {
        Broken::plain("DNS lookup failed", format!("{host} has no address"))
    })))
}

async fn send_pooled(
    pooled: &HttpClient,
    request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, Failure> {
    let response = pooled.request(request).await.map_err(|error| {
        if error.is_connect() {
            Failure::Connect(Broken::new(&error))
        } else {
            Failure::NoAnswer(Broken::new(&error))
        }
    })?;
    Ok(response.map(body::boxed))
}

#[cfg(test)]
mod tests;
