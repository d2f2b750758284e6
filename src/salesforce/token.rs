//! The token endpoint client: one JWT bearer exchange, and a lenient reading of its answer.
//!
//! Salesforce answers 200 with `access_token` and `instance_url` (no `expires_in`, no refresh
//! token) or 400 with `{"error","error_description"}`. Unknown fields are ignored. Anything else
//! — no answer, a 5xx, a body that is not the documented JSON — means the login service is
//! unavailable, which is a different failure for the operator than a refused assertion.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use crate::{
    body,
    config::{InstanceUrl, Org},
    salesforce::{assertion, login::user_info::UserInfo},
    upstream::client::HttpClient,
};

/// Token responses are a few hundred bytes; anything near this is not one.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A Salesforce session for one (org, user).
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) token: AccessToken,
    /// Where this session is valid: the org's pinned instance, else the token response's.
    pub(crate) instance: InstanceUrl,
    /// How long the cache may hand it out.
    pub(crate) ttl: Duration,
    pub(crate) minted_at: Instant,
    /// The user's `getUserInfo()`, asked once per session for the legacy logins it answers.
    pub(crate) user_info: tokio::sync::OnceCell<Arc<UserInfo>>,
    /// The sealed value this session is stored under in the shared tier, if it is: what an
    /// expiry compares before removing it there.
    pub(crate) stored: Option<Vec<u8>>,
}

/// An access token, kept as the ready-made, log-redacted `Authorization` value.
pub(crate) struct AccessToken {
    bearer: HeaderValue,
    raw: HeaderValue,
}

impl AccessToken {
    pub(crate) fn new(token: &str) -> Option<Self> {
        // Printable ASCII only: it goes in headers and, for SOAP, in XML text as it is.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        let mut raw = HeaderValue::from_str(token).ok()?;
        bearer.set_sensitive(true);
        raw.set_sensitive(true);
        Some(Self { bearer, raw })
    }

    /// `Bearer <token>`, for `Authorization`.
    pub(crate) fn bearer(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// The bare token, for Bulk API 1.0's `X-SFDC-Session`.
    pub(crate) fn raw(&self) -> HeaderValue {
        self.raw.clone()
    }

    /// The bare token, for a SOAP envelope's `sessionId`.
    pub(crate) fn as_str(&self) -> &str {
        // Printable ASCII (checked in `new`): always text.
        self.raw.to_str().unwrap_or_default()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TokenError {
    /// Salesforce read the assertion and said no.
    #[error("{error}: {description}")]
    Rejected { error: String, description: String },
    /// The token endpoint answered, but not with anything usable: asking again will not help.
    #[error("{0}")]
    Unavailable(String),
    /// No answer: unreachable, timed out, 5xx, or cut off. Worth one more try.
    #[error("{0}")]
    Transient(String),
}

impl TokenError {
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

#[derive(Deserialize)]
struct Success {
    access_token: Option<String>,
    instance_url: Option<String>,
}

#[derive(Deserialize)]
struct Failure {
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Clone)]
pub(crate) struct TokenClient {
    http: HttpClient,
}

impl TokenClient {
    pub(crate) fn new(http: HttpClient) -> Self {
        Self { http }
    }

    /// Signs an assertion for `user` and exchanges it for a session: one token request, which
    /// gives up after `timeout`. Retries and their budget are the cache's business.
    pub(crate) async fn mint(
        &self,
        org: &Org,
        user: &str,
        timeout: Duration,
    ) -> Result<Session, TokenError> {
        let outcome = tokio::time::timeout(timeout, self.exchange(org, user))
            .await
            .unwrap_or_else(|_| {
                Err(TokenError::Transient(format!(
                    "{} did not answer within {timeout:?}",
                    org.token_url
                )))
            });
        let label = match &outcome {
            Ok(_) => "ok",
            Err(TokenError::Rejected { .. }) => "rejected",
            Err(TokenError::Unavailable(_) | TokenError::Transient(_)) => "unavailable",
        };
        metrics::counter!(
            crate::metrics::TOKEN_REQUESTS,
            "org" => org.name.clone(),
            "outcome" => label
        )
        .increment(1);
        match &outcome {
            Ok(session) => tracing::info!(
                org = %org.name, user, outcome = "ok", instance = %session.instance,
                "token request"
            ),
            // As `&str`, not `%`: the text format quotes (and escapes) them, so a crafted
            // `error_description` cannot pass for more fields of the line.
            Err(TokenError::Rejected { error, description }) => tracing::warn!(
                org = %org.name, user, outcome = "rejected", sf_error = error.as_str(),
                sf_error_description = description.as_str(), "token request"
            ),
            Err(TokenError::Unavailable(reason) | TokenError::Transient(reason)) => tracing::warn!(
                org = %org.name, user, outcome = "unavailable", reason = reason.as_str(),
                "token request"
            ),
        }
        outcome
    }

    async fn exchange(&self, org: &Org, user: &str) -> Result<Session, TokenError> {
        let assertion = assertion::sign(org, user)
            .map_err(|e| TokenError::Unavailable(format!("cannot sign the assertion: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", assertion.expose())
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(org.token_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(body::full(form))
            .map_err(|e| TokenError::Unavailable(format!("cannot build the token request: {e}")))?;
        let response = self.http.request(request).await.map_err(|e| {
            let what = if e.is_connect() {
                "cannot reach"
            } else {
                "no answer from"
            };
            // The caller hears the class of failure; the log keeps the socket's details.
            let detail = crate::error::chain::error_chain(&e);
            tracing::warn!(org = %org.name, detail = detail.as_str(), "{what} the token endpoint");
            TokenError::Transient(format!(
                "{what} {}: {}",
                org.token_url,
                crate::upstream::failure::failure_class(&e, "token endpoint")
            ))
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_TOKEN_RESPONSE)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    TokenError::Unavailable(format!(
                        "the token response is larger than {} KiB: not a token response",
                        MAX_TOKEN_RESPONSE / 1024
                    ))
                } else {
                    TokenError::Transient(format!("cannot read the token response: {e}"))
                }
            })?;
        parse(org, status, &bytes)
    }
}

/// The longest `error` or `error_description` kept from a token endpoint's refusal.
const MAX_REFUSAL_TEXT: usize = 300;

/// A token endpoint's refusal text as it may go into a log line and an answer: control
/// characters (a newline would start a forged log line) become spaces, and it is cut short.
fn plain_text(text: &str) -> String {
    text.chars()
        .take(MAX_REFUSAL_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Reads a token endpoint answer. Error messages never quote the body: it may hold a token.
fn parse(org: &Org, status: StatusCode, bytes: &Bytes) -> Result<Session, TokenError> {
    if status.is_success() {
        let success: Success = serde_json::from_slice(bytes).map_err(|_| {
            TokenError::Unavailable(format!(
                "the token endpoint answered HTTP {status} with a body that is not a token response"
            ))
        })?;
        let token = success
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenError::Unavailable("the token response has no access_token".to_owned())
            })?;
        let token = AccessToken::new(&token).ok_or_else(|| {
            TokenError::Unavailable("the access_token is not printable ASCII".to_owned())
        })?;
        let instance = match (&org.instance_url, success.instance_url) {
            (Some(pinned), _) => pinned.clone(),
            (None, Some(url)) => {
                let instance = InstanceUrl::parse(url.trim_end_matches('/')).map_err(|m| {
                    TokenError::Unavailable(format!("the token response's instance_url {m}"))
                })?;
                if !org.instances.allows(&instance) {
                    // The caller is not told where it pointed (no host or port to probe with).
                    tracing::warn!(
                        org = %org.name, instance_url = %instance,
                        "the token response's instance_url is not an allowed instance"
                    );
                    return Err(TokenError::Unavailable(format!(
                        "the token response's instance_url is not allowed: sfproxy sends \
                         sessions to Salesforce's own domains on port 443 (to the login host \
                         itself when login_url is not Salesforce's); if the instance is yours, \
                         list its host in [orgs.{}] instance_hosts",
                        org.name
                    )));
                }
                instance
            }
            (None, None) => {
                return Err(TokenError::Unavailable(
                    "the token response has no instance_url; pin [orgs.X] instance_url".to_owned(),
                ));
            }
        };
        return Ok(Session {
            token,
            instance,
            ttl: org.session_ttl,
            minted_at: Instant::now(),
            user_info: tokio::sync::OnceCell::new(),
            stored: None,
        });
    }
    if status.is_client_error() {
        if let Ok(failure) = serde_json::from_slice::<Failure>(bytes) {
            return Err(TokenError::Rejected {
                error: plain_text(&failure.error),
                description: plain_text(&failure.error_description),
            });
        }
    }
    let failure = format!(
        "the token endpoint {} answered HTTP {status}",
        org.token_url
    );
    if status.is_server_error() {
        Err(TokenError::Transient(failure))
    } else {
        Err(TokenError::Unavailable(failure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(pinned: Option<&str>) -> Org {
        let pair = crate::pki::connected_app_cert("t", 1).unwrap();
        Org {
            instance_url: pinned.map(|u| InstanceUrl::parse(u).unwrap()),
            ..Org::for_tests("https://login.salesforce.com", "c", &pair.key_pem)
        }
    }

    fn parse_str(org: &Org, status: u16, body: &'static str) -> Result<Session, TokenError> {
        parse(
            org,
            StatusCode::from_u16(status).unwrap(),
            &Bytes::from_static(body.as_bytes()),
        )
    }

    #[test]
    fn success_is_read_leniently() {
        let session = parse_str(
            &org(None),
            200,
            r#"{"access_token":"00D!AR8","scope":"api","instance_url":"https://acme.my.salesforce.com",
                "id":"x","token_type":"Bearer","issued_at":"1","signature":"s","extra":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(
            session.instance.to_string(),
            "https://acme.my.salesforce.com"
        );
        assert_eq!(session.token.bearer(), "Bearer 00D!AR8");
        assert!(!format!("{session:?}").contains("00D!AR8"));
    }

    #[test]
    fn pinned_instance_wins() {
        let session = parse_str(
            &org(Some("https://pinned.example")),
            200,
            r#"{"access_token":"t","instance_url":"https://other.example"}"#,
        )
        .unwrap();
        assert_eq!(session.instance.to_string(), "https://pinned.example");
    }

    #[test]
    fn refusals_and_garbage_are_told_apart() {
        let org = org(None);
        let rejected = parse_str(
            &org,
            400,
            r#"{"error":"invalid_grant","error_description":"audience is invalid"}"#,
        );
        assert!(
            matches!(rejected, Err(TokenError::Rejected { error, .. }) if error == "invalid_grant")
        );
        for (status, body) in [
            (200, "<html>oops</html>"),
            (200, r#"{"instance_url":"https://a.example"}"#),
            (
                200,
                r#"{"access_token":"t","instance_url":"http://a.example"}"#,
            ),
            (503, "<html>maintenance</html>"),
            (404, "not found"),
        ] {
            let result = parse_str(&org, status, body);
            assert!(
                matches!(
                    result,
                    Err(TokenError::Unavailable(_) | TokenError::Transient(_))
                ),
                "{status} {body}"
            );
            assert_eq!(
                result.unwrap_err().is_transient(),
                status >= 500,
                "only 5xx is worth a retry: {status} {body}"
            );
        }
    }

    #[test]
    fn an_instance_url_outside_the_allowed_ones_is_refused_without_naming_it() {
        for url in [
            "https://127.0.0.1:9",
            "https://localhost",
            "https://evil.example",
        ] {
            let body = format!(r#"{{"access_token":"t","instance_url":"{url}"}}"#);
            let refused = parse(&org(None), StatusCode::OK, &Bytes::from(body.into_bytes()));
            let Err(TokenError::Unavailable(reason)) = refused else {
                panic!("{url} allowed");
            };
            assert!(reason.contains("not allowed") && reason.contains("instance_hosts"));
            assert!(!reason.contains(&url[8..]), "{reason}");
        }
        // Pinned: the operator's choice, whatever the token response says.
        let pinned = parse_str(
            &org(Some("https://127.0.0.1:9443")),
            200,
            r#"{"access_token":"t","instance_url":"https://127.0.0.1:9"}"#,
        );
        assert_eq!(
            pinned.unwrap().instance.to_string(),
            "https://127.0.0.1:9443"
        );
    }

    #[test]
    fn refusal_texts_cannot_forge_log_lines() {
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"error":"invalid_grant\nFAKE","error_description":"bad\r\n2026-01-01T00:00:00Z  INFO forged {long}"}}"#
        );
        let refused = parse(
            &org(None),
            StatusCode::BAD_REQUEST,
            &Bytes::from(body.into_bytes()),
        );
        let Err(TokenError::Rejected { error, description }) = refused else {
            panic!("not a refusal");
        };
        assert_eq!(error, "invalid_grant FAKE");
        assert!(description.starts_with("bad  2026-01-01T00:00:00Z  INFO forged x"));
        assert!(!description.contains(['\n', '\r']));
        assert_eq!(description.chars().count(), MAX_REFUSAL_TEXT);
    }
}
