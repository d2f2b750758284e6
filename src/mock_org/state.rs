//! What the stand-in's handlers share: its state (users, sessions, injected failures, what it
//! saw), the answer type, and reading and answering bodies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

#[derive(Clone, Debug)]
pub struct MockUser {
    pub username: String,
    /// false → invalid_grant "user hasn't approved this consumer".
    pub approved: bool,
    /// false → its sessions get 401 "This session is not valid for use with the REST API".
    pub rest_api: bool,
}

/// What the next token request(s) answer instead of a session.
#[derive(Clone, Debug)]
pub enum TokenFailure {
    /// A Salesforce-shaped OAuth error, e.g. 400 invalid_grant / ip restricted.
    OAuth {
        status: u16,
        error: String,
        description: String,
    },
    /// Anything else, e.g. a 503 HTML page or a 200 without an access_token.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// Close the connection without an answer (HTTP/2: reset the stream).
    Drop,
}

/// One API request as the org saw it: REST, Bulk 1.0 and SOAP calls alike (token requests are
/// not recorded). A SOAP call's `session_valid` is about the session in its envelope.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path_and_query: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The presented token was a live session (even if its user may not use the REST API).
    pub session_valid: bool,
    /// Came over HTTP/2 (else HTTP/1.1).
    pub http2: bool,
    /// The session the request presented, as found (trimmed): REST `Authorization: Bearer` (or
    /// `OAuth`), Bulk 1.0 `X-SFDC-Session`, SOAP `SessionHeader/sessionId`. None when it carried
    /// none.
    pub session: Option<String>,
}

/// One call to a SOAP endpoint (`/services/Soap/...`) as the org saw it, malformed ones included.
#[derive(Clone, Debug)]
pub struct SeenSoapCall {
    pub path: String,
    /// "partner", "enterprise", "tooling", "metadata" or "apex".
    pub api: String,
    /// The local name of the Body's first child element ("" when the envelope did not parse).
    pub operation: String,
    /// The text of `SessionHeader/sessionId` in the API's namespace, as found (not trimmed).
    pub session_id: Option<String>,
    /// The body as received, after undoing its `Content-Encoding` (gzip, deflate).
    pub envelope: Vec<u8>,
    /// The `Content-Encoding` header as received.
    pub content_encoding: Option<String>,
    /// The `Content-Length` header as received (None when absent, as with chunked bodies).
    pub content_length: Option<u64>,
    /// Lower-case names, in arrival order (the same as `SeenRequest::headers`).
    pub headers: Vec<(String, String)>,
}

/// A query's records kept for `queryMore`, each already written as its `<records>` element.
pub(crate) struct SoapCursor {
    pub(crate) records: Vec<String>,
}

/// Shared between the handle and every connection task.
pub(crate) struct State {
    pub(crate) consumer_key: String,
    pub(crate) audience: String,
    pub(crate) users: Vec<MockUser>,
    pub(crate) decoding_key: jsonwebtoken::DecodingKey,
    pub(crate) url: String,
    /// Signs the `signature` field of token responses, like Salesforce does with the app secret.
    pub(crate) hmac_key: aws_lc_rs::hmac::Key,
    pub(crate) inner: Mutex<Inner>,
}

#[derive(Default)]
pub(crate) struct Inner {
    /// Caller connections open now (TCP accepted, not yet closed).
    pub(crate) open_connections: usize,
    pub(crate) accepted_connections: usize,
    pub(crate) http1_only: bool,
    /// Request bodies whose sender went away before the end.
    pub(crate) aborted_bodies: usize,
    /// `/download` answers still being streamed.
    pub(crate) open_downloads: usize,
    /// Every REST answer waits this long first (many callers in flight at once).
    pub(crate) api_delay: Option<Duration>,
    /// Live sessions: access token → index into `State::users`.
    pub(crate) sessions: HashMap<String, usize>,
    pub(crate) token_requests: usize,
    pub(crate) failures: VecDeque<TokenFailure>,
    pub(crate) instance_url: Option<String>,
    /// Frozen or deactivated users: their logins are refused.
    pub(crate) frozen: HashSet<String>,
    /// Every session is answered as dead (`set_refuse_sessions`).
    pub(crate) refuse_sessions: bool,
    pub(crate) requests: Vec<SeenRequest>,
    pub(crate) api_usage: u64,
    pub(crate) soap_calls: Vec<SeenSoapCall>,
    /// SOAP `logout` / `invalidateSessions` calls that reached the org (none ever should).
    pub(crate) soap_session_enders: usize,
    /// `/services/oauth2/revoke` requests that reached the org (none ever should).
    pub(crate) revokes: usize,
    /// Open query cursors by their 18-character locator id (the part before the `-`).
    pub(crate) soap_cursors: HashMap<String, SoapCursor>,
    /// Ids handed out so far by SOAP `create`, query cursors and REST `create` (each new one is
    /// unique).
    pub(crate) soap_ids: u64,
    /// Legacy logins that reached the org (none ever should): `soap:{api}` for a SOAP `login`,
    /// `oauth:{grant}` for a password or client-credentials token request.
    pub(crate) legacy_logins: Vec<String>,
    /// Every access token minted, in order (expired ones included).
    pub(crate) issued_sessions: Vec<String>,
    /// Records created over REST, by id: kept until deleted.
    pub(crate) rest_records: std::collections::BTreeMap<String, RestRecord>,
}

/// A record created over REST: its object and its fields (`Id` included), as last written.
#[derive(Clone, Debug)]
pub(crate) struct RestRecord {
    pub(crate) sobject: String,
    pub(crate) fields: serde_json::Map<String, serde_json::Value>,
}

impl State {
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not take every later assertion down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) type MockResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// Why a handler gives up on a request; hyper then drops the connection (or resets the stream).
/// A concrete type rather than a boxed error keeps the service future provably `'static`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    #[error("mock org dropped the connection on purpose")]
    DroppedOnPurpose,
    #[error("reading the request body: {0}")]
    Body(#[from] hyper::Error),
    #[error("system random number generator failed")]
    Random,
}

/// Counts something in `Inner` for as long as it lives (a connection, a streaming answer).
pub(crate) struct Counted {
    pub(crate) state: Arc<State>,
    pub(crate) field: fn(&mut Inner) -> &mut usize,
}

impl Counted {
    pub(crate) fn new(state: &Arc<State>, field: fn(&mut Inner) -> &mut usize) -> Self {
        *field(&mut state.inner()) += 1;
        Self {
            state: Arc::clone(state),
            field,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut inner = self.state.inner();
        let count = (self.field)(&mut inner);
        *count = count.saturating_sub(1);
    }
}

/// What was learned from a request body read as a stream: it may be far too big to keep.
pub(crate) struct BodySummary {
    pub(crate) len: usize,
    pub(crate) sha256_hex: String,
    /// The body itself when it is at most the `keep` limit given to `read_body`.
    pub(crate) kept: Option<Vec<u8>>,
}

pub(crate) async fn read_body(
    mut body: Incoming,
    keep: usize,
) -> Result<BodySummary, hyper::Error> {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut len = 0usize;
    let mut kept = Some(Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        hash.update(&data);
        len = len.saturating_add(data.len());
        if len > keep {
            kept = None;
        } else if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&data);
        }
    }
    let sha256_hex = hash
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(BodySummary {
        len,
        sha256_hex,
        kept,
    })
}

pub(crate) fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> MockResponse {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

pub(crate) fn respond_json(status: u16, value: &serde_json::Value) -> MockResponse {
    respond(status, "application/json;charset=UTF-8", value.to_string())
}

/// Lower-case names in arrival order; over HTTP/2 `:authority` is recorded as `host`.
pub(super) fn seen_headers(parts: &http::request::Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .chain(
            parts
                .uri
                .authority()
                .filter(|_| !parts.headers.contains_key(http::header::HOST))
                .map(|a| ("host".to_owned(), a.to_string())),
        )
        .collect()
}
