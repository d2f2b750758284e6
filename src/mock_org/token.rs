//! The stand-in's `POST /services/oauth2/token`: the OAuth 2.0 JWT bearer grant.
//!
//! The proxy's error handling and operator hints depend on getting Salesforce's exact
//! `error`/`error_description` pairs back, so the checks below run in the order Salesforce has to
//! run them (it can only pick the certificate after finding the app by `iss`) and answer with the
//! documented pairs. Injected `TokenFailure`s come first so tests can simulate outages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Method, Request, header};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::state::{
    HandlerError, MockResponse, State, TokenFailure, read_body, respond, respond_json,
};

/// The org id as Salesforce prints it in ids (18 chars) and in access tokens (15 chars).
pub(super) const ORG_ID: &str = "00D000000000001EAA";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Salesforce documents "within 3 minutes"; a little skew keeps honest clients from flapping.
const MAX_EXP_AHEAD: Duration = Duration::from_secs(180 + 10);
/// An `exp` this large is milliseconds, not seconds; Salesforce reports it as expired.
const EXP_LOOKS_LIKE_MILLIS: u64 = 100_000_000_000;
/// Form bodies here hold one JWT; anything bigger is not a token request.
const MAX_FORM_BODY: usize = 64 * 1024;

/// A documented OAuth failure: the `error` code and its `error_description`.
type Rejection = (&'static str, &'static str);
const INVALID_ASSERTION: Rejection = ("invalid_grant", "invalid assertion");

pub(super) async fn handle(
    state: &State,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    if req.method() != Method::POST {
        return Ok(oauth_error(400, "invalid_request", "must use HTTP POST"));
    }
    state.inner().token_requests += 1;
    let form_content = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    // Read the body before any early answer so an HTTP/1.1 connection stays reusable.
    let body = read_body(req.into_body(), MAX_FORM_BODY).await?;
    // A legacy login (a password or client-credentials grant) must never come from sfproxy: it
    // is counted and refused before any injected failure is used up.
    if let Some(grant) = body.kept.as_deref().and_then(legacy_grant) {
        state.inner().legacy_logins.push(format!("oauth:{grant}"));
        tracing::error!(
            grant,
            "mock org: a {grant} grant reached Salesforce; sfproxy must never forward a legacy \
             login"
        );
        return Ok(oauth_error(
            400,
            "invalid_grant",
            &format!("{grant} grant reached Salesforce: sfproxy must never forward a legacy login"),
        ));
    }
    let failure = state.inner().failures.pop_front();

    match failure {
        Some(TokenFailure::OAuth {
            status,
            error,
            description,
        }) => return Ok(oauth_error(status, &error, &description)),
        Some(TokenFailure::Raw {
            status,
            content_type,
            body,
        }) => return Ok(respond(status, &content_type, body)),
        Some(TokenFailure::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(TokenFailure::Drop) => return Err(HandlerError::DroppedOnPurpose),
        None => {}
    }

    let Some(form) = body.kept else {
        return Ok(oauth_error(
            400,
            "invalid_request",
            "request body too large",
        ));
    };
    let mut grant_type = None;
    let mut assertion = None;
    for (name, value) in form_urlencoded::parse(&form) {
        match &*name {
            "grant_type" => grant_type = Some(value.into_owned()),
            "assertion" => assertion = Some(value.into_owned()),
            _ => {}
        }
    }
    if !form_content || grant_type.as_deref() != Some(JWT_BEARER) {
        return Ok(oauth_error(
            400,
            "unsupported_grant_type",
            "grant type not supported",
        ));
    }
    let user = match assertion.as_deref().map(|a| verify(state, a)) {
        Some(Ok(user)) => user,
        Some(Err((error, description))) => {
            tracing::info!(error, description, "mock org rejected a JWT assertion");
            return Ok(oauth_error(400, error, description));
        }
        None => return Ok(oauth_error(400, INVALID_ASSERTION.0, INVALID_ASSERTION.1)),
    };
    Ok(respond_json(200, &mint(state, user)?))
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
}

/// Checks an assertion the way Salesforce does and returns the index of the user it names.
fn verify(state: &State, assertion: &str) -> Result<usize, Rejection> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| INVALID_ASSERTION)?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(INVALID_ASSERTION);
    }
    // The app, and with it the certificate, is found by `iss` before any signature check.
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| INVALID_ASSERTION)?;
    if claims.iss.as_deref() != Some(state.consumer_key.as_str()) {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    let audience_ok = match &claims.aud {
        Some(serde_json::Value::String(aud)) => *aud == state.audience,
        Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| *a == *state.audience),
        _ => false,
    };
    if !audience_ok {
        return Err(("invalid_grant", "audience is invalid"));
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Claims are checked by hand above and below to answer with Salesforce's descriptions.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(assertion, &state.decoding_key, &validation)
        .map_err(|_| INVALID_ASSERTION)?;

    let exp = claims
        .exp
        .as_ref()
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .ok_or(INVALID_ASSERTION)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if exp <= now || exp >= EXP_LOOKS_LIKE_MILLIS {
        return Err(("invalid_grant", "expired authorization code"));
    }
    if exp > now + MAX_EXP_AHEAD.as_secs() {
        return Err(INVALID_ASSERTION);
    }

    let sub = claims.sub.ok_or(INVALID_ASSERTION)?;
    let index = state
        .users
        .iter()
        .position(|u| u.username == sub)
        .ok_or(INVALID_ASSERTION)?;
    if state.inner().frozen.contains(&sub) {
        return Err(("invalid_grant", "inactive user"));
    }
    if !state.users[index].approved {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    Ok(index)
}

/// `/services/oauth2/revoke` must never reach Salesforce through the proxy: it would end the
/// session every caller shares. Counted, logged as an error, answered 500; nothing is revoked.
pub(super) async fn revoke(
    state: &State,
    req: Request<Incoming>,
) -> Result<MockResponse, HandlerError> {
    let _ = read_body(req.into_body(), 0).await?;
    state.inner().revokes += 1;
    tracing::error!(
        "mock org: a token revoke reached Salesforce; it would end the session every caller shares"
    );
    Ok(oauth_error(
        500,
        "proxy_test_failure",
        "revoke reached Salesforce: it would end the session every caller shares",
    ))
}

/// Issues a new session for `user` and returns the token response.
fn mint(state: &State, user: usize) -> Result<serde_json::Value, HandlerError> {
    let mut random = [0u8; 75];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| HandlerError::Random)?;
    let org15 = &ORG_ID[..15];
    let issued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let id = format!("{}/id/{ORG_ID}/{}", state.url, user_id(user));
    let signature = STANDARD.encode(aws_lc_rs::hmac::sign(
        &state.hmac_key,
        format!("{id}{issued_at}").as_bytes(),
    ));
    let token = format!("{org15}!AR{}", URL_SAFE_NO_PAD.encode(random));
    let mut inner = state.inner();
    inner.sessions.insert(token.clone(), user);
    inner.issued_sessions.push(token.clone());
    let instance_url = inner
        .instance_url
        .clone()
        .unwrap_or_else(|| state.url.clone());
    drop(inner);
    Ok(json!({
        "access_token": token,
        "scope": "api",
        "instance_url": instance_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
    }))
}

/// The grant type of a form body when it is a legacy login: `password` or `client_credentials`.
pub(super) fn legacy_grant(form: &[u8]) -> Option<&'static str> {
    form_urlencoded::parse(form)
        .find(|(name, _)| name == "grant_type")
        .and_then(|(_, value)| match value.trim() {
            "password" => Some("password"),
            "client_credentials" => Some("client_credentials"),
            _ => None,
        })
}

/// A user id in Salesforce's 18-character form, stable per user index.
pub(super) fn user_id(index: usize) -> String {
    format!("005{:012}AAA", index + 1)
}

fn oauth_error(status: u16, error: &str, description: &str) -> MockResponse {
    respond_json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}
