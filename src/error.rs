//! Every way a request can fail, and the one mapping from failure to HTTP answer.
//!
//! Layers return a typed [`ProxyError`] naming the side that failed (caller, Salesforce login,
//! Salesforce API, the proxy itself); `layer::rescue` turns it into a response here, in one place.
//! Bodies use Salesforce's own error shape, `[{"errorCode":..,"message":..}]`, so a caller's
//! existing Salesforce error handling reads them. Nothing here may carry a token, an assertion, a
//! key or a secret: messages are built from names, hosts and Salesforce's error codes only.

pub(crate) mod chain;

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

pub(crate) use self::chain::error_chain;
use crate::{
    body::{ProxyBody, full, gzip::GzipError},
    salesforce::{
        cache::LoginError,
        credential::BULK_V1_INVALID_SESSION,
        hints::login_hint,
        soap::{
            envelope::EnvelopeError,
            fault::{self, ProxyFault},
        },
        token::TokenError,
    },
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The caller's request cannot be proxied as sent.
    #[error("{0}")]
    BadRequest(String),
    /// Framed by both `Content-Length` and `Transfer-Encoding` (request smuggling): answered with
    /// `Connection: close`.
    #[error(
        "the request has both Content-Length and Transfer-Encoding; send one (RFC 9112 section 6.3)"
    )]
    AmbiguousFraming,
    /// A request after one whose framing sfproxy could not follow, on the same connection:
    /// whether it is framed twice cannot be told, so it is refused, with `Connection: close`.
    #[error(
        "sfproxy could not follow the framing of an earlier request on this connection; send \
         this request on a new connection"
    )]
    FramingLost,
    /// The caller is not a known client, or its credentials are wrong.
    #[error("{0}")]
    AuthRequired(String),
    /// No route serves this target.
    #[error("no route serves host {host:?} path {path:?}")]
    NoRoute { host: String, path: String },
    /// Routes serve this target, but none admits this client.
    #[error("client {client:?} may not use a route for host {host:?} path {path:?}")]
    ClientForbidden {
        client: String,
        host: String,
        path: String,
    },
    #[error("CONNECT is not supported")]
    ConnectUnsupported,
    /// A CONNECT where no tunnel can be opened whatever its target (on an HTTP/2 connection,
    /// inside a tunnel): why.
    #[error("{0}")]
    ConnectRefused(&'static str),
    /// A CONNECT to a port sfproxy opens no tunnel to.
    #[error(
        "sfproxy opens tunnels to port 443 (https, with [proxy.intercept]) and port 80 (plain \
         http) only, not to {host}:{port}"
    )]
    TunnelPortRefused { host: String, port: u16 },
    /// A method Salesforce's APIs do not use (`TRACE` would reflect the bearer token).
    #[error(
        "the method {0} is not forwarded; sfproxy forwards GET, HEAD, POST, PUT, PATCH, DELETE \
         and OPTIONS (and CONNECT host:port for a tunnel)"
    )]
    MethodNotAllowed(String),
    /// Salesforce refused the JWT assertion (now, or within the remembered backoff).
    /// Salesforce's texts quoted: a crafted description cannot pass for fields of the log line.
    #[error("Salesforce refused the login of {user:?} to org {org:?}: {error:?} ({description:?})")]
    LoginRejected {
        org: String,
        user: String,
        error: String,
        description: String,
        retry_after: Option<Duration>,
    },
    /// The token endpoint could not be asked or gave no usable answer.
    #[error("Salesforce login for org {org:?} is unavailable: {reason}")]
    LoginUnavailable {
        org: String,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The (org, user) spent its hourly budget of token requests.
    #[error(
        "the login budget of {user:?} in org {org:?} is spent ({limit} token requests in the last \
         hour); sfproxy will not risk Salesforce's login rate limit"
    )]
    LoginBudgetExceeded {
        org: String,
        user: String,
        limit: u32,
        retry_after: Duration,
    },
    /// The request body is larger than `proxy.max_body`.
    #[error("the request body is larger than the proxy's limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// More connections are open than `proxy.max_connections`.
    #[error("the proxy has {limit} connections open, its limit; try again shortly")]
    TooManyConnections { limit: usize },
    /// The process has no file descriptor left for a new connection.
    #[error("the proxy is out of file descriptors (its open files limit); try again shortly")]
    OutOfDescriptors,
    /// The request line and headers are larger than `proxy.max_header_bytes`.
    #[error("the request headers are larger than the proxy's limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// The request's header list is larger than the instance takes on the connection every
    /// request to it shares; it was not sent.
    #[error(
        "the request headers ({size} bytes as HTTP/2 counts them) are larger than the Salesforce \
         instance {instance} of org {org:?} takes ({limit} bytes, the instance's limit); nothing \
         was sent"
    )]
    InstanceHeadersTooLarge {
        org: String,
        instance: String,
        size: usize,
        limit: u32,
    },
    #[error("the Salesforce instance {instance} of org {org:?} could not be reached: {reason}")]
    UpstreamUnreachable {
        org: String,
        instance: String,
        reason: String,
    },
    /// The instance refused the request without processing it (HTTP/2 REFUSED_STREAM, or a
    /// stream above a GOAWAY's last one): sending it again is safe.
    #[error(
        "the Salesforce instance {instance} of org {org:?} refused the request unprocessed: {reason}"
    )]
    UpstreamRefused {
        org: String,
        instance: String,
        reason: String,
    },
    #[error("the Salesforce instance {instance} of org {org:?} sent no answer within {after:?}")]
    UpstreamTimeout {
        org: String,
        instance: String,
        after: Duration,
    },
    /// The caller went away (or broke its body's framing) before its request was read whole:
    /// nobody receives this answer, but the log line and metrics say what happened.
    #[error("the caller's request body ended early: {0}")]
    CallerGone(String),
    #[error("internal proxy error: {0}")]
    Internal(String),
    /// A SOAP call whose envelope sfproxy cannot put the session in; nothing was sent.
    #[error("{0}; nothing was sent")]
    BadEnvelope(String),
    /// A SOAP envelope whose Body does not start within `max_header_bytes`.
    #[error("{0}; nothing was sent")]
    EnvelopeHeadTooLarge(String),
    /// On a route with `logins = true`: no session id sfproxy handed out, or one that is
    /// expired, tampered with, sealed with another key or no longer admitted. Salesforce's own
    /// answer, on which every legacy client logs in again; the log says which it was.
    /// `bulk_v1`: on a Bulk API 1.0 path, answered in Bulk's own shape.
    #[error("Session expired or invalid")]
    InvalidSession { bulk_v1: bool },
}

/// nginx's "client closed request": not a status any caller receives, but one logs and
/// dashboards recognise.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A gzip request body that broke, or grew past `max_body`, as it was inflated.
impl From<GzipError> for ProxyError {
    fn from(error: GzipError) -> Self {
        match error {
            GzipError::TooLarge { limit } => Self::BodyTooLarge { limit },
            GzipError::Invalid(why) => EnvelopeError::Gzip(why.to_owned()).into(),
        }
    }
}

impl From<EnvelopeError> for ProxyError {
    fn from(error: EnvelopeError) -> Self {
        match error {
            EnvelopeError::TooLarge { .. } => Self::EnvelopeHeadTooLarge(error.to_string()),
            EnvelopeError::InflatedTooLarge { limit } => Self::BodyTooLarge { limit },
            EnvelopeError::Body(error) => Self::CallerGone(error_chain(&error)),
            other => Self::BadEnvelope(other.to_string()),
        }
    }
}

impl ProxyError {
    /// Why `user` of `org` has no session: a refusal, an unavailable token endpoint (both
    /// remembered for `retry_after`), or a spent login budget.
    pub(crate) fn login(org: &str, user: &str, error: &LoginError) -> Self {
        match error {
            LoginError::Failed {
                error: TokenError::Rejected { error, description },
                retry_after,
            } => Self::LoginRejected {
                org: org.to_owned(),
                user: user.to_owned(),
                error: error.clone(),
                description: description.clone(),
                retry_after: Some(*retry_after),
            },
            LoginError::Failed {
                error: TokenError::Unavailable(reason) | TokenError::Transient(reason),
                retry_after,
            } => Self::LoginUnavailable {
                org: org.to_owned(),
                reason: reason.clone(),
                retry_after: Some(*retry_after),
            },
            LoginError::BudgetExceeded { limit, retry_after } => Self::LoginBudgetExceeded {
                org: org.to_owned(),
                user: user.to_owned(),
                limit: *limit,
                retry_after: *retry_after,
            },
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::AmbiguousFraming | Self::FramingLost => {
                StatusCode::BAD_REQUEST
            }
            Self::AuthRequired(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Self::NoRoute { .. } | Self::ClientForbidden { .. } => StatusCode::FORBIDDEN,
            Self::ConnectUnsupported | Self::ConnectRefused(_) | Self::MethodNotAllowed(_) => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            Self::TunnelPortRefused { .. } => StatusCode::FORBIDDEN,
            Self::LoginRejected { .. }
            | Self::UpstreamUnreachable { .. }
            | Self::UpstreamRefused { .. } => StatusCode::BAD_GATEWAY,
            Self::LoginUnavailable { .. }
            | Self::LoginBudgetExceeded { .. }
            | Self::TooManyConnections { .. }
            | Self::OutOfDescriptors => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } | Self::InstanceHeadersTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadEnvelope(_) => StatusCode::BAD_REQUEST,
            Self::InvalidSession { bulk_v1: false } => StatusCode::UNAUTHORIZED,
            Self::InvalidSession { bulk_v1: true } => StatusCode::BAD_REQUEST,
            Self::EnvelopeHeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::CallerGone(_) => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    /// The `errorCode` of the body: part of the interface, callers match on it.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::AmbiguousFraming | Self::FramingLost => "PROXY_BAD_REQUEST",
            Self::AuthRequired(_) => "PROXY_AUTH_REQUIRED",
            Self::NoRoute { .. } | Self::TunnelPortRefused { .. } => "PROXY_NO_ROUTE",
            Self::ClientForbidden { .. } => "PROXY_CLIENT_FORBIDDEN",
            Self::ConnectUnsupported | Self::ConnectRefused(_) => "PROXY_CONNECT_UNSUPPORTED",
            Self::MethodNotAllowed(_) => "PROXY_METHOD_NOT_ALLOWED",
            Self::LoginRejected { .. } => "PROXY_LOGIN_REJECTED",
            Self::LoginUnavailable { .. } => "PROXY_LOGIN_UNAVAILABLE",
            Self::LoginBudgetExceeded { .. } => "PROXY_LOGIN_BUDGET_EXCEEDED",
            Self::BodyTooLarge { .. } => "PROXY_BODY_TOO_LARGE",
            Self::HeadersTooLarge { .. }
            | Self::InstanceHeadersTooLarge { .. }
            | Self::EnvelopeHeadTooLarge(_) => "PROXY_HEADERS_TOO_LARGE",
            Self::TooManyConnections { .. } | Self::OutOfDescriptors => {
                "PROXY_TOO_MANY_CONNECTIONS"
            }
            Self::UpstreamUnreachable { .. } | Self::UpstreamRefused { .. } => {
                "PROXY_UPSTREAM_UNREACHABLE"
            }
            Self::UpstreamTimeout { .. } => "PROXY_UPSTREAM_TIMEOUT",
            Self::Internal(_) => "PROXY_INTERNAL",
            Self::CallerGone(_) => "PROXY_CALLER_GONE",
            Self::BadEnvelope(_) => "PROXY_BAD_ENVELOPE",
            Self::InvalidSession { .. } => "INVALID_SESSION_ID",
        }
    }

    /// What the caller reads: the failure, and what to do about it where that is known.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::ConnectUnsupported => "sfproxy does not open https:// tunnels here (no \
                [proxy.intercept]): send http:// URLs through the proxy (e.g. \
                http://acme.my.salesforce.com/services/...), or tunnel plain http to port 80; \
                sfproxy speaks https to Salesforce itself"
                .to_owned(),
            Self::NoRoute { .. } => format!(
                "{self}; the proxy only forwards to Salesforce orgs named by its configured routes"
            ),
            Self::Internal(_) => "internal proxy error; the proxy log has the details".to_owned(),
            other => other.to_string(),
        }
    }

    /// When the caller may usefully try again, for `Retry-After`.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::LoginRejected { retry_after, .. }
            | Self::LoginUnavailable { retry_after, .. } => *retry_after,
            Self::LoginBudgetExceeded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// `Retry-After` for this answer, if the caller may usefully try again: whole seconds,
    /// rounded up, at least 1 ("0" would invite an immediate retry).
    pub(crate) fn retry_after_header(&self) -> Option<HeaderValue> {
        let after = self.retry_after()?;
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        Some(HeaderValue::from(seconds.max(1)))
    }

    /// What the operator should do, where sfproxy knows (a refused login).
    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            Self::LoginRejected {
                error, description, ..
            } => login_hint(error, description),
            _ => None,
        }
    }

    /// The body of the answer: `[{"errorCode":..,"message":..}]`, plus Salesforce's error and a
    /// hint for refused logins.
    pub(crate) fn to_json(&self) -> String {
        let mut entry = Map::new();
        entry.insert("errorCode".into(), json!(self.code()));
        entry.insert("message".into(), json!(self.message()));
        if let Self::LoginRejected {
            error, description, ..
        } = self
        {
            entry.insert("salesforceError".into(), json!(error));
            entry.insert("salesforceErrorDescription".into(), json!(description));
        }
        if let Some(hint) = self.hint() {
            entry.insert("hint".into(), json!(hint));
        }
        Value::Array(vec![Value::Object(entry)]).to_string()
    }

    /// The refusal as a SOAP 1.1 fault, for a SOAP caller's toolkit: `sf:{code}`, the message,
    /// and the status and hint in `detail`.
    pub(crate) fn to_fault(&self) -> String {
        ProxyFault {
            code: self.code(),
            message: &self.message(),
            status: self.status().as_u16(),
            hint: self.hint(),
        }
        .to_xml()
    }

    /// The JSON answer, in Salesforce's REST error shape (Bulk API 1.0's XML for an invalid
    /// session there, which its clients read to log in again).
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        if matches!(self, Self::InvalidSession { bulk_v1: true }) {
            let body = BULK_V1_INVALID_SESSION.to_owned();
            return self.answer(status, "application/xml", body);
        }
        self.answer(status, "application/json", self.to_json())
    }

    /// The answer on a SOAP path: the fault, with status 500 as Salesforce answers faults (a
    /// toolkit parses a fault body only then), except 407, which a proxy client must see.
    pub(crate) fn into_soap_response(self) -> Response<ProxyBody> {
        if matches!(self, Self::InvalidSession { .. }) {
            return self.answer(
                self.soap_status(),
                fault::CONTENT_TYPE,
                fault::invalid_session().to_owned(),
            );
        }
        self.answer(self.soap_status(), fault::CONTENT_TYPE, self.to_fault())
    }

    /// The status of the fault answer.
    pub(crate) fn soap_status(&self) -> StatusCode {
        match self.status() {
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn answer(
        &self,
        status: StatusCode,
        content_type: &'static str,
        body: String,
    ) -> Response<ProxyBody> {
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(after) = self.retry_after_header() {
            headers.insert(header::RETRY_AFTER, after);
        }
        if matches!(self, Self::AmbiguousFraming | Self::FramingLost) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::MethodNotAllowed(_)) {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if matches!(self, Self::AuthRequired(_)) {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sfproxy\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<ProxyBody>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn login_rejection_carries_salesforce_error_and_hint() {
        let error = ProxyError::LoginRejected {
            org: "acme".into(),
            user: "u@acme.com".into(),
            error: "invalid_grant".into(),
            description: "audience is invalid".into(),
            retry_after: Some(Duration::from_millis(29_500)),
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        let body = body_json(response).await;
        assert_eq!(body[0]["errorCode"], "PROXY_LOGIN_REJECTED");
        assert_eq!(body[0]["salesforceError"], "invalid_grant");
        assert!(
            body[0]["hint"]
                .as_str()
                .unwrap()
                .contains("test.salesforce.com")
        );
    }

    #[tokio::test]
    async fn auth_required_asks_for_basic_credentials() {
        let response = ProxyError::AuthRequired("who are you".into()).into_response();
        assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(
            response.headers()[header::PROXY_AUTHENTICATE],
            "Basic realm=\"sfproxy\""
        );
        assert_eq!(
            body_json(response).await[0]["errorCode"],
            "PROXY_AUTH_REQUIRED"
        );
    }
}
