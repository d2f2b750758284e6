//! The stand-in's API surface: a few REST resources, Bulk 1.0 and an echo endpoint.
//!
//! What matters to the proxy is not the data but the session handling: every request needs a
//! live token (in `Authorization`, or `X-SFDC-Session` for Bulk 1.0), and a dead one is answered
//! exactly as Salesforce does (401 JSON array or XML for REST, 400 XML for Bulk 1.0) so the
//! proxy's detection and retry can be tested. The echo endpoint reports what arrived, hashing
//! bodies as they stream so uploads of 100+ MB cost no memory; `/download` streams a slow answer
//! so a proxy's handling of callers that leave mid-download can be seen.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::state::{
    BodySummary, Counted, HandlerError, MockResponse, SeenRequest, State, read_body, respond,
    respond_json, seen_headers,
};
use super::token::{ORG_ID, user_id};

/// Echo bodies up to this size are returned verbatim; bigger ones only as length and hash.
const ECHO_KEEP: usize = 64 * 1024;
const DOWNLOAD_CHUNK: u64 = 16 * 1024;
pub(super) const DAILY_API_MAX: u64 = 15_000;
const SESSION_EXPIRED: &str = "Session expired or invalid";
const NOT_FOR_REST: &str = "This session is not valid for use with the REST API";
const BULK_NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";
const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

pub(super) async fn handle(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let bulk = path == "/services/async" || path.starts_with("/services/async/");
    // Bulk 1.0 ignores Authorization: only its own header carries the session.
    let token = if bulk {
        header_str(&parts.headers, "x-sfdc-session").map(str::trim)
    } else {
        bearer(&parts.headers)
    };
    // Every body is read to the end so HTTP/1.1 connections survive early answers such as 401.
    let body = match read_body(body, ECHO_KEEP).await {
        Ok(body) => body,
        Err(error) => {
            state.inner().aborted_bodies += 1;
            return Err(error.into());
        }
    };

    let delay = state.inner().api_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (user, usage) = {
        let mut inner = state.inner();
        let user = token.and_then(|t| inner.sessions.get(t).copied());
        inner.requests.push(SeenRequest {
            http2: parts.version == http::Version::HTTP_2,
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned()),
            // Over HTTP/2 the host comes as `:authority`: recorded as `host`, as HTTP/1.1 sends it.
            headers: seen_headers(&parts),
            body_len: body.len,
            session_valid: user.is_some(),
        });
        let user = user.filter(|_| !inner.refuse_sessions);
        let served = user.is_some_and(|u| bulk || state.users.get(u).is_some_and(|u| u.rest_api));
        if served {
            inner.api_usage += 1;
        }
        (user, inner.api_usage)
    };

    let Some(user) = user else {
        tracing::debug!(path, bulk, "mock org: no live session");
        return Ok(if bulk {
            bulk_invalid_session()
        } else {
            invalid_session(&parts.headers, SESSION_EXPIRED)
        });
    };
    let response = if bulk {
        bulk_ok(&parts)
    } else if !state.users.get(user).is_some_and(|u| u.rest_api) {
        return Ok(invalid_session(&parts.headers, NOT_FOR_REST));
    } else {
        let username = state.users.get(user).map_or("", |u| u.username.as_str());
        if parts.uri.path() == "/download" {
            download(state, &parts)
        } else {
            route(&parts, &body, usage, user, username)
        }
    };
    Ok(with_limit_info(response, usage))
}

fn route(
    parts: &Parts,
    body: &BodySummary,
    usage: u64,
    user: usize,
    username: &str,
) -> MockResponse {
    let path = parts.uri.path();
    let method = &parts.method;
    if path == "/echo"
        || path.starts_with("/echo/")
        || path == "/services/apexrest/echo"
        || path.starts_with("/services/apexrest/echo/")
    {
        return echo(parts, body, username);
    }
    let Some(rest) = path.strip_prefix("/services/data") else {
        return not_found();
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [] => only(method, &[Method::GET], || respond_json(200, &versions())),
        [v, tail @ ..] if is_version(v) => match tail {
            [] => only(method, &[Method::GET], || {
                let base = format!("/services/data/{v}");
                respond_json(
                    200,
                    &json!({
                        "limits": format!("{base}/limits"),
                        "query": format!("{base}/query"),
                        "sobjects": format!("{base}/sobjects"),
                        "identity": format!("/id/{ORG_ID}/{}", user_id(user)),
                    }),
                )
            }),
            ["limits"] => only(method, &[Method::GET], || respond_json(200, &limits(usage))),
            ["query" | "queryAll"] => only(method, &[Method::GET], || query(parts)),
            ["sobjects", sobject] => only(method, &[Method::GET, Method::POST], || {
                sobject_resource(method, v, sobject)
            }),
            _ => not_found(),
        },
        _ => not_found(),
    }
}

fn versions() -> Value {
    json!([
        {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"},
        {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"},
        {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"},
    ])
}

fn limits(usage: u64) -> Value {
    let remaining = DAILY_API_MAX.saturating_sub(usage);
    json!({
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "DailyApiRequests": {"Max": DAILY_API_MAX, "Remaining": remaining},
        "DailyAsyncApexExecutions": {"Max": 250_000, "Remaining": 250_000},
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
        "DataStorageMB": {"Max": 5, "Remaining": 5},
    })
}

fn query(parts: &Parts) -> MockResponse {
    let q = parts.uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.into_owned())
    });
    match q {
        Some(q) if !q.trim().is_empty() => respond_json(
            200,
            &json!({"totalSize": 0, "done": true, "records": [], "query": q}),
        ),
        _ => respond_json(
            400,
            &json!([{"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}]),
        ),
    }
}

fn sobject_resource(method: &Method, version: &str, sobject: &str) -> MockResponse {
    if method == Method::POST {
        let mut random = [0u8; 6];
        let id_suffix = match aws_lc_rs::rand::fill(&mut random) {
            Ok(()) => random
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>(),
            Err(_) => "000000000000".to_owned(),
        };
        return respond_json(
            201,
            &json!({"id": format!("001{id_suffix}AAA"), "success": true, "errors": []}),
        );
    }
    respond_json(
        200,
        &json!({
            "objectDescribe": {
                "name": sobject,
                "label": sobject,
                "createable": true,
                "queryable": true,
                "urls": {
                    "sobject": format!("/services/data/{version}/sobjects/{sobject}"),
                    "describe": format!("/services/data/{version}/sobjects/{sobject}/describe"),
                },
            },
            "recentItems": [],
        }),
    )
}

/// Reports what arrived and as whom. Credentials are shown by kind only: an answer is no place
/// for a session id, even a stand-in's (tests read them from [`super::MockOrg::requests`]).
fn echo(parts: &Parts, body: &BodySummary, username: &str) -> MockResponse {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let value = match name.as_str() {
            "authorization" => match value.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} <redacted>"),
                None => "<redacted>".to_owned(),
            },
            "x-sfdc-session" => "<redacted>".to_owned(),
            _ => value,
        };
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let text = body
        .kept
        .as_ref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_owned);
    respond_json(
        200,
        &json!({
            "method": parts.method.as_str(),
            "user": username,
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "bodyLen": body.len,
            "bodySha256": body.sha256_hex,
            "body": text,
        }),
    )
}

/// `GET /download?bytes=N&chunk_ms=M`: N bytes (default 1 MiB) in 16 KiB chunks, one every M
/// ms (default 10): a slow answer whose abandonment the stand-in can see (`open_downloads`).
fn download(state: &Arc<State>, parts: &Parts) -> MockResponse {
    let param = |name: &str, default: u64| {
        parts
            .uri
            .query()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.parse().ok())
            })
            .unwrap_or(default)
    };
    let total = param("bytes", 1 << 20);
    let pause = Duration::from_millis(param("chunk_ms", 10));
    let open = Counted::new(state, |inner| &mut inner.open_downloads);
    let chunks = total.div_ceil(DOWNLOAD_CHUNK);
    let stream = futures_util::stream::iter(0..chunks).then(move |i| {
        // The stream owns the count: dropping the answer early closes the download.
        let _open = &open;
        async move {
            tokio::time::sleep(pause).await;
            let size = DOWNLOAD_CHUNK.min(total - i * DOWNLOAD_CHUNK);
            let size = usize::try_from(size).unwrap_or(0);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; size])))
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    if let Ok(length) = HeaderValue::from_str(&total.to_string()) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length);
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn bulk_ok(parts: &Parts) -> MockResponse {
    let xml = format!(
        "{XML_DECL}<jobInfo xmlns=\"{BULK_NS}\"><id>750000000000001AAA</id>\
         <operation>insert</operation><object>Account</object><state>Open</state>\
         <apiVersion>62.0</apiVersion><mockMethod>{}</mockMethod></jobInfo>",
        parts.method
    );
    respond(200, "application/xml", xml)
}

fn bulk_invalid_session() -> MockResponse {
    let xml = format!(
        "{XML_DECL}<error xmlns=\"{BULK_NS}\"><exceptionCode>InvalidSessionId</exceptionCode>\
         <exceptionMessage>Invalid session id</exceptionMessage></error>"
    );
    respond(400, "application/xml", xml)
}

fn invalid_session(headers: &HeaderMap, message: &str) -> MockResponse {
    let accept = header_str(headers, "accept")
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("xml") && !accept.contains("json") {
        let xml = format!(
            "{XML_DECL}<Errors><Error><errorCode>INVALID_SESSION_ID</errorCode>\
             <message>{message}</message></Error></Errors>"
        );
        return respond(401, "application/xml;charset=UTF-8", xml);
    }
    respond_json(
        401,
        &json!([{"message": message, "errorCode": "INVALID_SESSION_ID"}]),
    )
}

fn not_found() -> MockResponse {
    respond_json(
        404,
        &json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
    )
}

/// Answers with `make()` when `method` is allowed, else Salesforce's 405.
fn only(method: &Method, allowed: &[Method], make: impl FnOnce() -> MockResponse) -> MockResponse {
    if allowed.contains(method) {
        return make();
    }
    let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    respond_json(
        405,
        &json!([{
            "errorCode": "METHOD_NOT_ALLOWED",
            "message": format!("HTTP Method '{method}' not allowed. Allowed are {}", allowed.join(",")),
        }]),
    )
}

fn with_limit_info(mut response: MockResponse, usage: u64) -> MockResponse {
    if let Ok(value) = HeaderValue::from_str(&format!("api-usage={usage}/{DAILY_API_MAX}")) {
        response.headers_mut().insert("sforce-limit-info", value);
    }
    response
}

fn is_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token from `Authorization: Bearer …` (Salesforce also accepts the older `OAuth` scheme).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = header_str(headers, header::AUTHORIZATION.as_str())?
        .trim()
        .split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim())
}
