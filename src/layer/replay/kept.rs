//! What the replay layer keeps of a request to send it again: its head, and its body held whole
//! up to the replay limit. The bytes are shared, so each send copies a handle, not the body.
//! A larger body streams on (a 150 MB Bulk upload never sits in memory) and is sent only once.

use bytes::Bytes;
use http::Request;
use http_body::Body;

use crate::body::{self, BodyError, Buffered, ProxyBody, buffer_up_to};

/// A body held whole, no larger than the replay limit.
pub(crate) struct KeptBody(Bytes);

/// A body as the replay layer first sees it, before reading any of it.
pub(crate) enum Found {
    /// Known to be empty: kept, with nothing to read.
    Kept(KeptBody),
    /// Says it is larger than the limit: it streams on, unread.
    Large(ProxyBody),
    /// To be read, up to the limit, to find out.
    Unread(ProxyBody),
}

impl KeptBody {
    /// What can be told of `body` without reading it.
    pub(crate) fn look(body: ProxyBody, limit: usize) -> Found {
        if body.is_end_stream() {
            Found::Kept(Self(Bytes::new()))
        } else if body.size_hint().lower() > limit as u64 {
            Found::Large(body)
        } else {
            Found::Unread(body)
        }
    }

    /// Reads `body` whole if it ends within `limit` bytes; otherwise gives it back, streaming
    /// (what was read spliced back in front of the rest).
    pub(crate) async fn read(
        body: ProxyBody,
        limit: usize,
    ) -> Result<Result<Self, ProxyBody>, BodyError> {
        Ok(match buffer_up_to(body, limit).await? {
            Buffered::Complete(bytes) => Ok(Self(bytes)),
            Buffered::Streaming(body) => Err(body),
        })
    }

    /// A body to send: the kept bytes, shared.
    fn body(&self) -> ProxyBody {
        if self.0.is_empty() {
            // Not boxed: an empty body is zero-sized.
            body::empty()
        } else {
            body::full(self.0.clone())
        }
    }
}

/// A request kept to be sent as often as a policy asks.
pub(crate) struct Kept {
    /// The head, as the request came (its body a zero-sized placeholder).
    pub(crate) head: Request<ProxyBody>,
    pub(crate) body: KeptBody,
}

/// One send's copy of `head` and `body`: method, URI, version, headers and the kept bytes; no
/// extensions (a policy puts on each send what it needs).
pub(crate) fn copy(head: &Request<ProxyBody>, body: &KeptBody) -> Request<ProxyBody> {
    let mut request = Request::new(body.body());
    *request.method_mut() = head.method().clone();
    *request.uri_mut() = head.uri().clone();
    *request.version_mut() = head.version();
    *request.headers_mut() = head.headers().clone();
    request
}

/// The first send's copy: as [`copy`], its extensions the head's own map, emptied, so the room
/// allocated for the stages above serves it (a new map would cost two allocations).
pub(crate) fn first(head: &mut Request<ProxyBody>, body: &KeptBody) -> Request<ProxyBody> {
    let mut extensions = std::mem::take(head.extensions_mut());
    extensions.clear();
    let mut request = copy(head, body);
    *request.extensions_mut() = extensions;
    request
}

/// The only send of a request whose body streams: the head goes with it, without the extensions
/// of the stages above (as a [`copy`] is).
pub(crate) fn once(mut head: Request<ProxyBody>, body: ProxyBody) -> Request<ProxyBody> {
    *head.body_mut() = body;
    head.extensions_mut().clear();
    head
}
