//! The stand-in's API surface: a few REST resources, Bulk 1.0 and an echo endpoint.
//!
//! What matters to the proxy is not the data but the session handling: every request needs a
//! live token (in `Authorization`, or `X-SFDC-Session` for Bulk 1.0), and a dead one is answered
//! exactly as Salesforce does (401 JSON array or XML for REST, 400 XML for Bulk 1.0) so the
//! proxy's detection and retry can be tested. The echo endpoint reports what arrived, hashing
//! bodies as they stream so uploads of 100+ MB cost no memory; `/download` streams a slow answer
//! so a proxy's handling of callers that leave mid-download can be seen.
//!
//! Records created over REST (`POST /services/data/vXX.X/sobjects/{Object}`) are kept in memory:
//! `GET`/`PATCH`/`DELETE .../sobjects/{Object}/{id}` read, update and delete them, and `query`
//! reads them (the REST data starts empty, unlike the SOAP API's fixed rows).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::soap::records;
use super::state::{
    BodySummary, Counted, HandlerError, MockResponse, RestRecord, SeenRequest, State, read_body,
    respond, respond_json, seen_headers,
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
            session: token.map(str::to_owned),
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
            route(state, &parts, &body, usage, user, username)
        }
    };
    Ok(with_limit_info(response, usage))
}

fn route(
    state: &State,
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
            ["query" | "queryAll"] => only(method, &[Method::GET], || query(state, parts, v)),
            ["sobjects", sobject] => only(method, &[Method::GET, Method::POST], || {
                sobject_resource(state, method, body, v, sobject)
            }),
            ["sobjects", sobject, id] => {
                let allowed = [Method::GET, Method::PATCH, Method::DELETE, Method::HEAD];
                only(method, &allowed, || {
                    record_resource(state, method, body, v, sobject, id)
                })
            }
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

/// A SOQL query of the records created over REST (none at first: the REST data starts empty),
/// the selected fields of each, in creation order, `LIMIT` honoured. The answer also carries the
/// query as received (`query`, which Salesforce does not send) for tests to read.
fn query(state: &State, parts: &Parts, version: &str) -> MockResponse {
    let q = parts.uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.into_owned())
    });
    let Some(q) = q.filter(|q| !q.trim().is_empty()) else {
        return respond_json(
            400,
            &json!([{"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}]),
        );
    };
    let soql = match records::parse_soql(&q) {
        Ok(soql) => soql,
        Err(message) => {
            return respond_json(
                400,
                &json!([{"message": message, "errorCode": "MALFORMED_QUERY"}]),
            );
        }
    };
    if records::key_prefix(&soql.sobject).is_none() {
        return respond_json(
            400,
            &json!([{
                "message": format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom \
                     object, be sure to append the '__c' after the entity name.",
                    soql.sobject
                ),
                "errorCode": "INVALID_TYPE",
            }]),
        );
    }
    let sobject = records::canonical(&soql.sobject);
    let rows: Vec<Value> = state
        .inner()
        .rest_records
        .values()
        .filter(|r| r.sobject == sobject)
        .take(soql.limit.unwrap_or(usize::MAX))
        .map(|r| {
            let mut row = Map::new();
            row.insert("attributes".into(), attributes(version, r));
            for field in &soql.fields {
                let (name, value) = r
                    .fields
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(field))
                    .map_or((field.clone(), Value::Null), |(n, v)| {
                        (n.clone(), v.clone())
                    });
                row.insert(name, value);
            }
            Value::Object(row)
        })
        .collect();
    respond_json(
        200,
        &json!({"totalSize": rows.len(), "done": true, "records": rows, "query": q}),
    )
}

/// A record's `attributes`: its type and URL, as Salesforce writes them first in every record.
fn attributes(version: &str, record: &RestRecord) -> Value {
    let id = record
        .fields
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({
        "type": record.sobject,
        "url": format!("/services/data/{version}/sobjects/{}/{id}", record.sobject),
    })
}

/// `POST /sobjects/{Object}`: creates a record of the fields in the JSON body (kept in memory);
/// `GET`: the object's basic information.
fn sobject_resource(
    state: &State,
    method: &Method,
    body: &BodySummary,
    version: &str,
    sobject: &str,
) -> MockResponse {
    let Some(prefix) = records::key_prefix(sobject) else {
        return not_found();
    };
    let sobject = records::canonical(sobject);
    if method == Method::POST {
        let Some(fields) = json_fields(body) else {
            return json_parser_error();
        };
        let mut inner = state.inner();
        inner.soap_ids += 1;
        let id = records::new_id(prefix, inner.soap_ids);
        let mut record = Map::new();
        record.insert("Id".into(), Value::String(id.clone()));
        record.extend(fields.into_iter().filter(|(name, _)| name != "Id"));
        inner.rest_records.insert(
            id.clone(),
            RestRecord {
                sobject,
                fields: record,
            },
        );
        return respond_json(201, &json!({"id": id, "success": true, "errors": []}));
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

/// `/sobjects/{Object}/{id}` of a record created over REST: `GET` (HEAD) its fields, `PATCH`
/// fields into it (204), `DELETE` it (204); 404 `NOT_FOUND` for any other id, a deleted one
/// included.
fn record_resource(
    state: &State,
    method: &Method,
    body: &BodySummary,
    version: &str,
    sobject: &str,
    id: &str,
) -> MockResponse {
    let sobject = records::canonical(sobject);
    let patch = if method == Method::PATCH {
        match json_fields(body) {
            Some(fields) => Some(fields),
            None => return json_parser_error(),
        }
    } else {
        None
    };
    let mut inner = state.inner();
    // Salesforce takes a 15-character id for its 18-character form.
    let key = if id.len() == 15 && records::is_id(id) {
        records::id_with_checksum(id)
    } else {
        id.to_owned()
    };
    if inner
        .rest_records
        .get(&key)
        .is_none_or(|r| r.sobject != sobject)
    {
        return not_found();
    }
    if method == Method::DELETE {
        inner.rest_records.remove(&key);
        return no_content();
    }
    let Some(record) = inner.rest_records.get_mut(&key) else {
        return not_found();
    };
    if let Some(fields) = patch {
        record
            .fields
            .extend(fields.into_iter().filter(|(name, _)| name != "Id"));
        return no_content();
    }
    let mut answer = Map::new();
    answer.insert("attributes".into(), attributes(version, record));
    answer.extend(record.fields.clone());
    respond_json(200, &Value::Object(answer))
}

/// The JSON object of a create or update body (None for anything else).
fn json_fields(body: &BodySummary) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body.kept.as_deref()?) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// Salesforce's 400 for a create or update body that is no JSON object.
fn json_parser_error() -> MockResponse {
    respond_json(
        400,
        &json!([{
            "message": "Json Deserialization failed on token 'null' and has left off in the \
                        middle of parsing a row. Will go to end of row to begin parsing the \
                        next row",
            "errorCode": "JSON_PARSER_ERROR",
        }]),
    )
}

fn no_content() -> MockResponse {
    let mut response = respond(204, "application/json;charset=UTF-8", Bytes::new());
    response.headers_mut().remove(header::CONTENT_TYPE);
    response
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
