//! The stand-in's SOAP API: Partner (`/services/Soap/u/{ver}[/{orgId}]`), Enterprise (`c`) and
//! Tooling (`T`) answering alike in their own namespaces, Metadata (`m`: `listMetadata`) and
//! Apex web services (`/services/Soap/class/{Class}`: `echo`).
//!
//! As in Salesforce, the session is read only from the envelope, `Header/SessionHeader/
//! sessionId`, both elements in the API's own namespace (a header in another namespace is no
//! header); `Authorization` is never looked at. A missing or dead session is answered with
//! Salesforce's HTTP 500 `sf:INVALID_SESSION_ID` fault, so a proxy's detection and replay can be
//! tested. Bodies may be `Content-Encoding: gzip` or `deflate`, as Salesforce accepts them.
//!
//! Partner (Enterprise, Tooling) operations: `getUserInfo`, `query`/`queryAll`/`queryMore`
//! (three fixed rows of any known object; a `QueryOptions/batchSize` smaller than Salesforce's
//! minimum of 200 is honoured, so paging shows with three rows), `create`, `update`, `delete`,
//! `describeSObject`, and `echo`, which Salesforce does not have: its answer is
//! `<echoResponse><result>` holding the received envelope byte for byte as escaped text (tests
//! compare it with what a caller sent). Metadata: `listMetadata` and the same `echo`. Apex:
//! `<echo><text>…</text></echo>` → `<echoResponse><result>…</result></echoResponse>`.
//!
//! `logout` and `invalidateSessions` must never reach Salesforce through the proxy (they end the
//! session every caller shares): they are counted, logged as errors and faulted with
//! `sf:PROXY_TEST_FAILURE`, and the session lives on. A username-password `login` (Partner, Enterprise,
//! Tooling) must not reach it either (sfproxy answers legacy logins itself): counted as a legacy
//! login, logged as an error and faulted with `sf:PROXY_TEST_FAILURE` (a `LoginFault`). Every call is recorded
//! ([`SeenSoapCall`]) and also listed among the org's requests.

mod answers;
mod call;
mod envelope;
mod metadata;
mod partner;
pub(super) mod records;

use std::io::Read as _;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Method, Request, header};
use hyper::body::Incoming;

use super::state::{
    HandlerError, MockResponse, SeenRequest, SeenSoapCall, State, read_body, seen_headers,
};
use answers::{Fault, client_fault, fault};
use call::{Api, Call, SOAP_PREFIX};
use envelope::Element;

/// Envelopes bigger than this (as sent, or once decoded) are refused, not kept: room for the
/// proxy tests' 100 MB envelope (Salesforce itself takes less).
const MAX_ENVELOPE: usize = 128 * 1024 * 1024;

pub(super) fn is_soap_path(path: &str) -> bool {
    path.starts_with(SOAP_PREFIX)
}

pub(super) async fn handle(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, MAX_ENVELOPE).await {
        Ok(body) => body,
        Err(error) => {
            state.inner().aborted_bodies += 1;
            return Err(error.into());
        }
    };
    let path = parts.uri.path().to_owned();
    let Some(api) = Api::from_path(&path).filter(|_| parts.method == Method::POST) else {
        record_request(state, &parts, body.len, false, None);
        return Ok(client_fault(
            404,
            &format!("No SOAP service at {} {path}", parts.method),
        ));
    };
    let content_encoding = header_str(&parts.headers, header::CONTENT_ENCODING.as_str());
    let decoded = match body.kept {
        None => Err((
            Vec::new(),
            format!("request body over {MAX_ENVELOPE} bytes"),
        )),
        Some(raw) => decode(raw, content_encoding),
    };
    let (envelope, decode_error) = match decoded {
        Ok(envelope) => (envelope, None),
        Err((raw, error)) => (raw, Some(error)),
    };
    let parsed = match decode_error {
        Some(error) => Err(error),
        None => envelope::parse(&envelope),
    };
    let ns = api.namespace();
    let session_id = parsed.as_ref().ok().and_then(|root| session_id(root, &ns));
    let operation = parsed
        .as_ref()
        .map(envelope::operation_name)
        .unwrap_or_default();
    // An operation of this API: its name, in the API's namespace.
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|root| envelope::envelope(root).ok())
        .is_some_and(|soap| {
            soap.operation.ns.as_deref() == Some(&*ns)
                && api.operations().contains(&soap.operation.local.as_str())
        });

    let delay = state.inner().api_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (user, usage) = {
        let mut inner = state.inner();
        let user = session_id
            .as_deref()
            .and_then(|s| inner.sessions.get(s.trim()).copied());
        inner.requests.push(seen_request(
            &parts,
            body.len,
            user.is_some(),
            session_id.as_deref().map(|s| s.trim().to_owned()),
        ));
        inner.soap_calls.push(SeenSoapCall {
            path: path.clone(),
            api: api.name().to_owned(),
            operation: operation.clone(),
            session_id: session_id.clone(),
            envelope: envelope.clone(),
            content_encoding: content_encoding.map(str::to_owned),
            content_length: header_str(&parts.headers, header::CONTENT_LENGTH.as_str())
                .and_then(|v| v.trim().parse().ok()),
            headers: seen_headers(&parts),
        });
        let ender = matches!(operation.as_str(), "logout" | "invalidateSessions");
        if ender {
            inner.soap_session_enders += 1;
        }
        let login = is_legacy_login(&api, &operation);
        if login {
            inner.legacy_logins.push(format!("soap:{}", api.name()));
        }
        let user = user.filter(|_| !inner.refuse_sessions);
        let served = !ender
            && !login
            && known
            && user.is_some_and(|u| state.users.get(u).is_some_and(|u| u.rest_api));
        if served {
            inner.api_usage += 1;
        }
        (user, inner.api_usage)
    };

    let root = match parsed {
        Ok(root) => root,
        Err(error) => return Ok(client_fault(500, &error)),
    };
    let soap = match envelope::envelope(&root) {
        Ok(soap) => soap,
        Err(error) => return Ok(client_fault(500, &error)),
    };
    if matches!(operation.as_str(), "logout" | "invalidateSessions") {
        tracing::error!(
            operation,
            path,
            "mock org: a SOAP {operation} reached Salesforce; it would end the session every \
             caller shares"
        );
        let message =
            format!("{operation} reached Salesforce: it would end the session every caller shares");
        return Ok(fault(&api, &Fault::new("PROXY_TEST_FAILURE", message)));
    }
    if is_legacy_login(&api, &operation) {
        tracing::error!(
            api = api.name(),
            path,
            "mock org: a SOAP login reached Salesforce; sfproxy must never forward a legacy login"
        );
        let message = "login reached Salesforce: sfproxy must never forward a legacy login";
        return Ok(fault(
            &api,
            &Fault::new("PROXY_TEST_FAILURE", message).kind("LoginFault"),
        ));
    }
    if !known {
        let message = format!(
            "No operation available for request {{{}}}{operation}, please check the WSDL for \
             the service.",
            soap.operation.ns.as_deref().unwrap_or("")
        );
        return Ok(fault(&api, &Fault::new("INVALID_OPERATION", message)));
    }
    let Some(user) = user else {
        tracing::debug!(
            path,
            operation,
            "mock org: SOAP call without a live session"
        );
        return Ok(fault(&api, &Fault::invalid_session(session_id.as_deref())));
    };
    let Some(account) = state.users.get(user).filter(|u| u.rest_api) else {
        let message = "This session is not valid for use with the API";
        return Ok(fault(&api, &Fault::new("INVALID_SESSION_ID", message)));
    };
    let call = Call {
        api: &api,
        header: soap.header,
        operation: soap.operation,
        envelope: &envelope,
        state,
        user,
        username: &account.username,
        usage,
    };
    Ok(match api {
        Api::Partner | Api::Enterprise | Api::Tooling => partner::answer(&call),
        Api::Metadata | Api::Apex { .. } => metadata::answer(&call),
    })
}

/// A username-password `login` to an API that has one (Partner, Enterprise; Tooling answers it
/// too): a legacy login, which must never reach Salesforce through sfproxy.
fn is_legacy_login(api: &Api, operation: &str) -> bool {
    operation == "login" && matches!(api, Api::Partner | Api::Enterprise | Api::Tooling)
}

/// `Header/SessionHeader/sessionId`, both in the API's namespace.
fn session_id(root: &Element, ns: &str) -> Option<String> {
    root.child(Some(envelope::SOAP_ENV_NS), "Header")?
        .child(Some(ns), "SessionHeader")?
        .child(Some(ns), "sessionId")
        .map(|s| s.text.clone())
}

/// The body with its `Content-Encoding` undone; on failure, the body as it came and why.
fn decode(raw: Vec<u8>, encoding: Option<&str>) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let limit = u64::try_from(MAX_ENVELOPE).unwrap_or(u64::MAX) + 1;
    let mut decoded = Vec::new();
    let result = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(raw),
        Some("gzip" | "x-gzip") => flate2::read::GzDecoder::new(raw.as_slice())
            .take(limit)
            .read_to_end(&mut decoded),
        Some("deflate") => flate2::read::ZlibDecoder::new(raw.as_slice())
            .take(limit)
            .read_to_end(&mut decoded),
        Some(other) => return Err((raw, format!("Unsupported Content-Encoding: {other}"))),
    };
    match result {
        Ok(_) if decoded.len() > MAX_ENVELOPE => Err((
            raw,
            format!("request body over {MAX_ENVELOPE} bytes once decoded"),
        )),
        Ok(_) => Ok(decoded),
        Err(e) => Err((raw, format!("Content-Encoding does not decode: {e}"))),
    }
}

fn record_request(
    state: &State,
    parts: &Parts,
    body_len: usize,
    session_valid: bool,
    session: Option<String>,
) {
    let seen = seen_request(parts, body_len, session_valid, session);
    state.inner().requests.push(seen);
}

fn seen_request(
    parts: &Parts,
    body_len: usize,
    session_valid: bool,
    session: Option<String>,
) -> SeenRequest {
    SeenRequest {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: seen_headers(parts),
        body_len,
        session_valid,
        http2: parts.version == http::Version::HTTP_2,
        session,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
