//! A legacy login answered: who logs in (the client whose secret the password is, from its
//! networks), as which route (the one with `logins = true` whose user is the username, serving
//! this target, admitting that client), then that route's session as for any request (cache,
//! single flight, JWT bearer login on a miss) and the user's `getUserInfo()` (fetched once per
//! session, through the stages below, so it is sent like any call). The answer is Salesforce's
//! own shape, with a session id sfproxy seals in place of the real one, and URLs that bring the
//! caller back to the address it logged in at.

use std::{sync::Arc, time::SystemTime};

use aws_lc_rs::{constant_time::verify_slices_are_equal, digest};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::{
    desk::{Below, Desk, From, now},
    failures::Gate,
    user_info::user_info_of,
};
use crate::{
    body::{self, Buffered, ProxyBody, buffer_up_to},
    context::{Answer, Notes, RouteMatch, SoapCall},
    error::{ProxyError, error_chain},
    salesforce::{
        login::{
            oauth::{self, Grant, Issued},
            sealed::{self, Handout},
            soap::{self as login_soap, LoginResult},
            user_info::UserInfo,
        },
        soap::{api::SoapApi, fault},
    },
};

/// A login's form or envelope is a few hundred bytes.
const MAX_LOGIN_BODY: usize = 64 * 1024;
/// The API version getUserInfo() is asked in for an OAuth login (a SOAP login uses its own).
const USER_INFO_VERSION: &str = "59.0";

/// Why a login was not answered with a session.
enum Refused {
    /// Salesforce's `INVALID_LOGIN`: wrong username or password, or too many of them.
    Invalid,
    /// The route's session could not be had: sfproxy's error, in the login's shape.
    Failed(ProxyError),
}

/// A login that worked.
struct LoggedIn {
    matched: RouteMatch,
    client: Arc<str>,
    session_id: String,
    user_info: Arc<UserInfo>,
}

/// What a login presents.
enum Presented<'a> {
    /// A username and password (SOAP `login()`, the password grant).
    Password {
        username: &'a str,
        password: &'a str,
    },
    /// The client's name and secret (the client-credentials grant).
    Client { name: &'a str, secret: &'a str },
}

impl Presented<'_> {
    fn secret(&self) -> &str {
        match self {
            Presented::Password { password, .. } => password,
            Presented::Client { secret, .. } => secret,
        }
    }
}

/// `POST /services/oauth2/token` on a route with `logins = true`.
pub(super) async fn token<S>(
    inner: S,
    desk: &Desk,
    from: &From,
    candidates: &[RouteMatch],
    request: Request<ProxyBody>,
) -> Answer
where
    S: Below,
{
    let base = caller_base(&request);
    let notes = request.extensions().get::<Arc<Notes>>().cloned();
    let query = request
        .uri()
        .query()
        .map(|q| Bytes::copy_from_slice(q.as_bytes()));
    let body = read_whole(request.into_body()).await?;
    // Salesforce also takes the fields in the query string, as some scripts send them.
    let form = match (oauth::parse_form(&body), query) {
        (Grant::Other(named), Some(query)) if named.is_empty() => query,
        _ => body,
    };
    let grant = oauth::parse_form(&form);
    let (presented, secret_sent, kind) = match &grant {
        Grant::Password { username, password } => (
            Presented::Password { username, password },
            client_secret_field(&form),
            "password",
        ),
        Grant::ClientCredentials {
            client_id,
            client_secret,
        } => (
            Presented::Client {
                name: client_id,
                secret: client_secret,
            },
            client_secret.clone(),
            "client_credentials",
        ),
        Grant::Other(grant) => {
            tracing::info!(
                grant = ?grant,
                "refused a token request on a route with logins = true: sfproxy answers the \
                 password and client_credentials grants only"
            );
            return Ok(json(
                StatusCode::BAD_REQUEST,
                oauth::unsupported_grant(grant),
            ));
        }
    };
    let logged_in = log_in(
        inner.clone(),
        desk,
        from,
        candidates,
        &presented,
        USER_INFO_VERSION,
        kind,
    )
    .await;
    match logged_in {
        Ok(logged_in) => {
            note(notes.as_deref(), &logged_in);
            let (Some(org_id), Some(user_id)) =
                (logged_in.user_info.org_id(), logged_in.user_info.user_id())
            else {
                return Err(ProxyError::Internal("getUserInfo() without ids".into()));
            };
            let route = &logged_in.matched.route;
            let id = format!(
                "{}/id/{org_id}/{user_id}",
                route.org.audience.trim_end_matches('/')
            );
            let issued_at_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            let instance_url = format!("{base}{}", stripped_prefix(&logged_in.matched));
            let body = oauth::success(&Issued {
                access_token: &logged_in.session_id,
                instance_url: &instance_url,
                id: &id,
                issued_at_ms,
                secret: &secret_sent,
            });
            Ok(json(StatusCode::OK, body))
        }
        Err(Refused::Invalid) => Ok(json(StatusCode::BAD_REQUEST, oauth::invalid_grant())),
        Err(Refused::Failed(error)) => {
            let oauth_error = match error.status() {
                StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
                _ => "invalid_grant",
            };
            let body =
                oauth::proxy_failure(oauth_error, error.code(), &error.message(), error.hint());
            Ok(retry_after(json(error.status(), body), &error))
        }
    }
}

/// SOAP `login()`: `call` is the opened envelope, `request`'s body its rest.
pub(super) async fn soap<S>(
    inner: S,
    desk: &Desk,
    from: &From,
    candidates: &[RouteMatch],
    request: Request<ProxyBody>,
    call: SoapCall,
) -> Answer
where
    S: Below,
{
    let base = caller_base(&request);
    let notes = request.extensions().get::<Arc<Notes>>().cloned();
    let Some(version) = soap_version(request.extensions().get::<RouteMatch>()) else {
        return Err(ProxyError::BadEnvelope(
            "login() is answered on /services/Soap/u/{version} and /services/Soap/c/{version}"
                .into(),
        ));
    };
    // A gzip envelope that broke as it was inflated is refused as such, not as a caller gone.
    let rest = match read_whole(request.into_body()).await {
        Ok(rest) => {
            call.inflating.judge(Ok(Response::new(body::empty())))?;
            rest
        }
        Err(error) => return call.inflating.judge(Err(error)),
    };
    let (username, password) = match login_soap::credentials(&rest) {
        Ok(credentials) => credentials,
        Err(why) => {
            return Err(ProxyError::BadEnvelope(format!(
                "a login() that cannot be read: {why}"
            )));
        }
    };
    let presented = Presented::Password {
        username: &username,
        password: &password,
    };
    match log_in(
        inner.clone(),
        desk,
        from,
        candidates,
        &presented,
        &version,
        "soap",
    )
    .await
    {
        Ok(logged_in) => {
            note(notes.as_deref(), &logged_in);
            let Some(org_id) = logged_in.user_info.org_id() else {
                return Err(ProxyError::Internal(
                    "getUserInfo() without an org id".into(),
                ));
            };
            let org15 = sealed::org_id15(org_id);
            let enterprise = call.api == SoapApi::Enterprise;
            let letter = if enterprise { "c" } else { "u" };
            let prefix = stripped_prefix(&logged_in.matched);
            let server_url = format!("{base}{prefix}/services/Soap/{letter}/{version}/{org15}");
            let metadata_server_url = format!("{base}{prefix}/services/Soap/m/{version}/{org15}");
            let route = &logged_in.matched.route;
            let body = login_soap::login_response(&LoginResult {
                enterprise,
                session_id: &logged_in.session_id,
                server_url: &server_url,
                metadata_server_url: &metadata_server_url,
                user_id: logged_in.user_info.user_id().unwrap_or_default(),
                sandbox: route.org.audience.contains("test.salesforce.com"),
                user_info: &logged_in.user_info,
                session_seconds_valid: desk.session_ttl.as_secs(),
            });
            Ok(xml(StatusCode::OK, body))
        }
        Err(Refused::Invalid) => Ok(xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            login_soap::invalid_login_fault(),
        )),
        Err(Refused::Failed(error)) => {
            let body = login_soap::proxy_login_fault(error.code(), &error.message(), error.hint());
            Ok(retry_after(xml(error.soap_status(), body), &error))
        }
    }
}

async fn log_in<S>(
    inner: S,
    desk: &Desk,
    from: &From,
    candidates: &[RouteMatch],
    presented: &Presented<'_>,
    version: &str,
    kind: &'static str,
) -> Result<LoggedIn, Refused>
where
    S: Below,
{
    let source = from.source;
    let refuse = |reason: &str| {
        let failures = desk.failures.record(source, desk.max_failures_per_minute);
        tracing::warn!(%source, grant = kind, failures, reason, "legacy login refused: INVALID_LOGIN");
        count(kind, "invalid");
        Refused::Invalid
    };
    if let Gate::Blocked { first } = desk.failures.gate(source, desk.max_failures_per_minute) {
        // Once a minute per source at WARN: a job looping on a wrong secret floods nothing.
        let message = "legacy login refused: too many wrong passwords from this address in the \
                       last minute (max_failures_per_minute)";
        match first {
            true => tracing::warn!(%source, grant = kind, "{message}"),
            false => tracing::debug!(%source, grant = kind, "{message}"),
        }
        count(kind, "limited");
        return Err(Refused::Invalid);
    }
    let secret = digest::digest(&digest::SHA256, presented.secret().as_bytes());
    let client = desk.clients.iter().find(|client| {
        let named = match presented {
            Presented::Client { name, .. } => *client.name == **name,
            Presented::Password { .. } => true,
        };
        named
            && client
                .secret_sha256
                .as_ref()
                .is_some_and(|expected| verify_slices_are_equal(secret.as_ref(), expected).is_ok())
    });
    let Some(client) = client else {
        return Err(refuse("no client has this secret"));
    };
    from.may_be(client).map_err(refuse)?;
    let matched = candidates.iter().find(|m| {
        m.route.admits(&client.name)
            && match presented {
                Presented::Password { username, .. } => {
                    m.route.user.eq_ignore_ascii_case(username.trim())
                }
                Presented::Client { .. } => true,
            }
    });
    let Some(matched) = matched else {
        return Err(refuse(
            "no route with logins = true serving this host and path has this username and admits \
             the client",
        ));
    };
    let route = &matched.route;
    let (org, user) = (&route.org, route.user.as_str());
    let session = match desk
        .cache
        .get(org, user, &desk.tokens, &matched.metrics.org)
        .await
    {
        Ok((session, _)) => session,
        Err(error) => {
            count(kind, "failed");
            let error = ProxyError::login(&org.name, user, &error);
            tracing::warn!(route = %route.name, code = error.code(), "legacy login failed: {error}");
            return Err(Refused::Failed(error));
        }
    };
    let user_info = match user_info_of(inner, &session, matched, version).await {
        Ok(user_info) => user_info,
        Err(error) => {
            count(kind, "failed");
            tracing::warn!(route = %route.name, code = error.code(), "legacy login failed: {error}");
            return Err(Refused::Failed(error));
        }
    };
    let Some(org_id) = user_info.org_id() else {
        return Err(Refused::Failed(ProxyError::Internal(
            "getUserInfo() named no organizationId".into(),
        )));
    };
    let handout = Handout {
        client: client.name.to_string(),
        route: route.name.to_string(),
        user: route.user.clone(),
        expires: now() + desk.session_ttl.as_secs(),
        secret: client
            .secret_sha256
            .as_ref()
            .map(sealed::secret_tag)
            .unwrap_or_default(),
    };
    let session_id = sealed::seal(&desk.key, sealed::org_id15(org_id), &handout)
        .map_err(|e| Refused::Failed(ProxyError::Internal(e)))?;
    tracing::info!(route = %route.name, client = %client.name, grant = kind, "answered a legacy login");
    count(kind, "ok");
    Ok(LoggedIn {
        matched: matched.clone(),
        client: client.name.clone(),
        session_id,
        user_info,
    })
}

/// The scheme and authority the caller used: an absolute-form target's (through the proxy, or
/// inside a tunnel), else `http://` and `Host` (sfproxy as a gateway).
fn caller_base(request: &Request<ProxyBody>) -> String {
    let uri = request.uri();
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        return format!("{scheme}://{authority}");
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The route's prefix when the proxy strips it: the caller's URLs carry it.
fn stripped_prefix(matched: &RouteMatch) -> &str {
    match matched.route.strip_prefix {
        true => matched.route.path_prefix.trim_end_matches('/'),
        false => "",
    }
}

/// `{version}` of `/services/Soap/{u|c}/{version}`.
fn soap_version(matched: Option<&RouteMatch>) -> Option<String> {
    let path = matched?.path.path();
    let mut segments = path.trim_start_matches('/').split('/');
    let services = segments.next()?;
    let soap = segments.next()?;
    let api = segments.next()?;
    let version = segments.next()?;
    let named = services.eq_ignore_ascii_case("services")
        && soap.eq_ignore_ascii_case("soap")
        && matches!(api, "u" | "c");
    let numeric = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (named && numeric).then(|| version.to_owned())
}

/// The password grant's `client_secret` (any is accepted), which keys the answer's signature.
fn client_secret_field(form: &[u8]) -> String {
    form_urlencoded::parse(form)
        .find(|(name, _)| name == "client_secret")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

async fn read_whole(body: ProxyBody) -> Result<Bytes, ProxyError> {
    match buffer_up_to(body, MAX_LOGIN_BODY).await {
        Ok(Buffered::Complete(bytes)) => Ok(bytes),
        Ok(Buffered::Streaming(_)) => Err(ProxyError::BadRequest(format!(
            "a login request larger than {MAX_LOGIN_BODY} bytes"
        ))),
        Err(error) => Err(ProxyError::CallerGone(error_chain(&error))),
    }
}

fn note(notes: Option<&Notes>, logged_in: &LoggedIn) {
    if let Some(notes) = notes {
        notes.set_client(logged_in.client.clone());
        notes.set_route(
            logged_in.matched.route.clone(),
            logged_in.matched.metrics.clone(),
        );
    }
}

fn count(grant: &'static str, outcome: &'static str) {
    metrics::counter!(crate::metrics::LEGACY_LOGINS, "grant" => grant, "outcome" => outcome)
        .increment(1);
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<ProxyBody> {
    answer(status, oauth::CONTENT_TYPE, body)
}

fn xml(status: StatusCode, body: Vec<u8>) -> Response<ProxyBody> {
    answer(status, fault::CONTENT_TYPE, body)
}

/// A failed login's answer says when to try again, as sfproxy's own login errors do.
fn retry_after(mut response: Response<ProxyBody>, error: &ProxyError) -> Response<ProxyBody> {
    if let Some(after) = error.retry_after_header() {
        response.headers_mut().insert(header::RETRY_AFTER, after);
    }
    response
}

fn answer(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
