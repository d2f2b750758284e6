//! The route user's `getUserInfo()`, for a login's answer (its ids, SOAP's `userInfo`): asked
//! once per real session (callers logging in together wait for the one call) and sent through
//! the stages below like any SOAP call, so it gets the session, the replay and the log line
//! every call gets.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header, uri::PathAndQuery};
use tower::{Service, ServiceExt};

use super::desk::Below;
use crate::{
    body::{self, Buffered, ProxyBody, buffer_up_to},
    context::RouteMatch,
    error::{ProxyError, error_chain},
    salesforce::{
        login::user_info::{self, UserInfo},
        soap::fault,
        token::Session,
    },
};

/// A getUserInfo() answer is a few kilobytes.
const MAX_USER_INFO: usize = 256 * 1024;

/// The user's `getUserInfo()`, asked once per session (callers logging in together wait for the
/// one call), sent through the stages below like any SOAP call.
pub(super) async fn user_info_of<S>(
    inner: S,
    session: &Arc<Session>,
    matched: &RouteMatch,
    version: &str,
) -> Result<Arc<UserInfo>, ProxyError>
where
    S: Below,
{
    session
        .user_info
        .get_or_try_init(move || fetch_user_info(inner, matched, version))
        .await
        .cloned()
}

async fn fetch_user_info<S>(
    inner: S,
    matched: &RouteMatch,
    version: &str,
) -> Result<Arc<UserInfo>, ProxyError>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
    S::Future: Send,
{
    let path: PathAndQuery = format!("/services/Soap/u/{version}")
        .parse()
        .map_err(|_| ProxyError::Internal("a getUserInfo() path that does not parse".into()))?;
    let mut request = Request::new(body::full(Bytes::from(user_info::request())));
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=UTF-8"),
    );
    headers.insert("soapaction", HeaderValue::from_static("\"\""));
    request.extensions_mut().insert(RouteMatch {
        route: matched.route.clone(),
        metrics: matched.metrics.clone(),
        path,
    });
    let response = inner.oneshot(request).await?;
    let status = response.status();
    let unavailable = |reason: String| ProxyError::LoginUnavailable {
        org: matched.route.org.name.clone(),
        reason,
        retry_after: None,
    };
    let answer = match buffer_up_to(response.into_body(), MAX_USER_INFO).await {
        Ok(Buffered::Complete(bytes)) => bytes,
        Ok(Buffered::Streaming(_)) => {
            return Err(unavailable(
                "getUserInfo() answered more than 256 KiB".into(),
            ));
        }
        Err(error) => {
            return Err(unavailable(format!(
                "getUserInfo()'s answer was cut off: {}",
                error_chain(&error)
            )));
        }
    };
    if status != StatusCode::OK {
        return Err(unavailable(format!(
            "the user's getUserInfo() was answered {status}{}",
            match fault::is_invalid_session(&answer) {
                true => " INVALID_SESSION_ID",
                false => "",
            }
        )));
    }
    user_info::parse(&answer)
        .map(Arc::new)
        .map_err(|why| unavailable(format!("the user's getUserInfo() answer: {why}")))
}
