//! `sfproxy check`: proves a config works before traffic depends on it.
//!
//! For every route (or one), it logs in as the route's user exactly as the proxy would and calls
//! `GET {instance}/services/data/` with the session, printing one line per route with the
//! Salesforce error and its hint when something is wrong. It also warns about the two setup
//! mistakes that surface only later: a private key (or logins or shared key) others can read, and a clock
//! far enough off the token host's that Salesforce says `expired authorization code`. With
//! `[logins]`, one line first says how legacy logins are answered, so a key that would be made
//! at start (sessions lost on restart) is seen before it matters; with `[shared]`, one says
//! whether Redis answers (and fails the check when it does not).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{Method, Request, header};
use http_body_util::{BodyExt, Limited};

use crate::{
    body,
    config::{Config, KeySource, Org, SharedSettings},
    error::error_chain,
    salesforce::{
        hints::login_hint,
        token::{Session, TokenClient, TokenError},
    },
    upstream::client::{HttpClient, tls_config},
};

/// Beyond this difference with the token host's clock, assertions start to fail.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 64 * 1024;

/// What `check` found: printable lines, and whether every route passed.
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub ok: bool,
}

/// Checks `routes` of `config` (all when `only` is `None`). `Err` is a usage error.
pub async fn run(config: &Config, only: Option<&str>) -> Result<Report, String> {
    let routes: Vec<_> = config
        .routes
        .iter()
        .filter(|r| only.is_none_or(|name| *r.name == *name))
        .collect();
    if let (Some(name), true) = (only, routes.is_empty()) {
        let known: Vec<&str> = config.routes.iter().map(|r| &*r.name).collect();
        return Err(format!(
            "no route named {name:?}; routes: {}",
            known.join(", ")
        ));
    }
    let http = crate::upstream::client::build_client(&config.proxy)?;
    let tokens = TokenClient::new(http.clone());
    let mut warnings = Vec::new();
    let mut orgs_seen: Vec<&str> = Vec::new();
    for route in &routes {
        let org = &route.org;
        if orgs_seen.contains(&org.name.as_str()) {
            continue;
        }
        orgs_seen.push(&org.name);
        warnings.extend(key_file_warning(org));
        warnings.extend(clock_warning(org, &http).await);
    }

    if let Some(KeySource::File(path)) = &config.logins_key_source {
        warnings.extend(key_mode_warning("logins.key_file", path));
    }
    if let Some(SharedSettings {
        key_source: KeySource::File(path),
        ..
    }) = &config.shared
    {
        warnings.extend(key_mode_warning("shared.key_file", path));
    }

    let mut sessions: HashMap<(String, String), Result<Arc<Session>, TokenError>> = HashMap::new();
    let mut lines: Vec<String> = logins_line(config).into_iter().collect();
    let mut ok = true;
    if let Some(shared) = &config.shared {
        let (line, reachable) = shared_line(config, shared).await;
        lines.push(line);
        ok &= reachable;
    }
    for route in routes {
        let org = &route.org;
        let key = (org.name.clone(), route.user.clone());
        if !sessions.contains_key(&key) {
            let session = tokens
                .mint(org, &route.user, org.login_timeout)
                .await
                .map(Arc::new);
            sessions.insert(key.clone(), session);
        }
        let prefix = format!("route={} org={} user={}", route.name, org.name, route.user);
        let line = match &sessions[&key] {
            Ok(session) => match call_api(&http, session).await {
                Ok(()) => format!("{prefix} instance={} OK", session.instance),
                Err(problem) => {
                    ok = false;
                    format!("{prefix} instance={} FAILED: {problem}", session.instance)
                }
            },
            Err(TokenError::Rejected { error, description }) => {
                ok = false;
                let hint = login_hint(error, description)
                    .map(|h| format!(" (hint: {h})"))
                    .unwrap_or_default();
                format!(
                    "{prefix} FAILED: Salesforce refused the login: {error}: {description}{hint}"
                )
            }
            Err(TokenError::Unavailable(reason) | TokenError::Transient(reason)) => {
                ok = false;
                format!("{prefix} FAILED: login unavailable: {reason}")
            }
        };
        lines.push(line);
    }
    Ok(Report {
        lines,
        warnings,
        ok,
    })
}

/// `GET {instance}/services/data/` with the session: the cheapest call every user may make.
async fn call_api(http: &HttpClient, session: &Session) -> Result<(), String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("{}/services/data/", session.instance))
        .header(header::AUTHORIZATION, session.token.bearer())
        .header(header::ACCEPT, "application/json")
        .body(body::empty())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(30), http.request(request))
        .await
        .map_err(|_| "the instance did not answer within 30s".to_owned())?
        .map_err(|e| format!("cannot reach the instance: {}", error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let bytes = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            let first = v.get(0)?;
            Some(format!(
                "{}: {}",
                first.get("errorCode")?.as_str()?,
                first.get("message")?.as_str()?
            ))
        })
        .unwrap_or_default();
    Err(format!("the API answered HTTP {status} {detail}")
        .trim_end()
        .to_owned())
}

fn key_file_warning(org: &Org) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = org.key_file.as_ref()?;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "warning: orgs.{}.private_key_file {} is readable by group or others (mode {mode:o}): chmod 600 {}",
                org.name,
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = org;
        None
    }
}

/// How `[logins]` answers: the key's source, the session lifetime, the failure limit, the routes.
fn logins_line(config: &Config) -> Option<String> {
    let logins = config.logins.as_ref()?;
    let key = match &config.logins_key_source {
        Some(KeySource::File(path)) => format!("key_file {}", path.display()),
        Some(KeySource::Env(var)) => format!("key_env {var}"),
        None => "key made at start: handed-out sessions end with a restart".to_owned(),
    };
    let routes: Vec<&str> = config
        .routes
        .iter()
        .filter(|r| r.logins)
        .map(|r| &*r.name)
        .collect();
    let routes = if routes.is_empty() {
        "none (no route has logins = true)".to_owned()
    } else {
        routes.join(", ")
    };
    Some(format!(
        "legacy logins: {key}; session_ttl={} max_failures_per_minute={}; routes: {routes}",
        humantime_serde::re::humantime::format_duration(logins.session_ttl),
        logins.max_failures_per_minute
    ))
}

/// A key file (`what`) readable by group or others: as for an org's private key.
fn key_mode_warning(what: &str, path: &std::path::Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "warning: {what} {} is readable by group or others (mode {mode:o}): chmod 600 {}",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (what, path);
        None
    }
}

/// Connects to the shared tier as the proxy would and says what answered; `false` when nothing
/// did (the proxy would run, but each replica alone).
async fn shared_line(config: &Config, shared: &SharedSettings) -> (String, bool) {
    let key = match &shared.key_source {
        KeySource::File(path) => format!("key_file {}", path.display()),
        KeySource::Env(var) => format!("key_env {var}"),
    };
    let tls = match shared.tls {
        true => match tls_config(&config.proxy) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => return (format!("shared tier: {} FAILED: {e}", shared.url), false),
        },
        false => None,
    };
    let within = Duration::from_secs(5).max(shared.timeout);
    match crate::shared::open(shared, tls.as_ref(), within).await {
        Ok(mut connection) => {
            let server = crate::shared::server_version(&mut connection)
                .await
                .unwrap_or_else(|| "a Redis server".to_owned());
            (
                format!(
                    "shared tier: {} OK ({server}{}); prefix {:?}, timeout {}, {key}",
                    shared.url,
                    if shared.tls { ", TLS" } else { "" },
                    shared.prefix,
                    humantime_serde::re::humantime::format_duration(shared.timeout),
                ),
                true,
            )
        }
        Err(reason) => (
            format!(
                "shared tier: {} FAILED: {reason} (the proxy would run, each replica with its \
                 own sessions and logins)",
                shared.url
            ),
            false,
        ),
    }
}

/// Compares this host's clock with the `Date` of the token host's answer.
async fn clock_warning(org: &Org, http: &HttpClient) -> Option<String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(org.token_url.clone())
        .body(body::empty())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
        .await
        .ok()?
        .ok()?;
    let date = response.headers().get(header::DATE)?.to_str().ok()?;
    let theirs = httpdate::parse_http_date(date).ok()?;
    let ours = SystemTime::now();
    let skew = ours
        .duration_since(theirs)
        .or_else(|_| theirs.duration_since(ours))
        .ok()?;
    (skew > MAX_CLOCK_SKEW).then(|| {
        format!(
            "warning: this host's clock differs from {}'s by {}s; Salesforce refuses assertions \
             whose times are off ('expired authorization code' or 'invalid assertion'): sync the \
             clock (NTP)",
            org.token_url.host().unwrap_or("the token host"),
            skew.as_secs()
        )
    })
}
