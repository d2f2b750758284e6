//! The values a config gets for what it leaves out, and the bounds of what it may set: one place,
//! so the docs, `sfproxy check` and the validation agree.

use std::time::Duration;

use bytesize::ByteSize;

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
pub(crate) const DEFAULT_REPLAY_LIMIT: ByteSize = ByteSize::mib(1);
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Salesforce does not say how long a session lives (2 h of inactivity by default): reuse a token
/// well within that, and rely on the 401 replay for the rest.
pub(crate) const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(60 * 60);
pub(crate) const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(2 * 60);
/// Salesforce's documented ceiling for a JWT's `exp`.
pub(crate) const MAX_ASSERTION_TTL: Duration = Duration::from_secs(3 * 60);
/// How long a login (its token requests and retries) may take before it counts as unavailable.
pub(crate) const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the token host failed, callers get the remembered error this long.
pub(crate) const DEFAULT_UNAVAILABLE_BACKOFF: Duration = Duration::from_secs(5);
/// After Salesforce refused the assertion, callers get the remembered refusal this long.
pub(crate) const DEFAULT_REJECTED_BACKOFF: Duration = Duration::from_secs(30);
/// A sixth of Salesforce's 3,600 logins per user per hour: room for other tools using the user.
pub(crate) const DEFAULT_MAX_LOGINS_PER_HOUR: u32 = 600;
pub(crate) const DEFAULT_MAX_HEADER_BYTES: ByteSize = ByteSize::kib(64);
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bulk API 2.0 takes up to 150 MB per upload.
pub(crate) const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(200);
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// More serving threads than this is a typo, not a machine.
pub(super) const MAX_WORKERS: usize = 1024;
/// hyper needs room for at least a request line and a few headers.
pub(super) const MIN_HEADER_BYTES: usize = 8 * 1024;
pub(super) const MAX_HEADER_BYTES: usize = 1024 * 1024;
pub(crate) const DEFAULT_PATH_PREFIX: &str = "/";
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A working day: an integration logs in at its start and is not asked again before its end.
pub(crate) const DEFAULT_LOGINS_SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
pub(super) const MIN_LOGINS_SESSION_TTL: Duration = Duration::from_secs(1);
/// A handed-out id is a bearer credential nobody can revoke short of a new key: a week at most.
pub(super) const MAX_LOGINS_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Enough for a mistyped password or two, far too few to guess a secret.
pub(crate) const DEFAULT_MAX_FAILURES_PER_MINUTE: u32 = 10;
pub(crate) const CONFIG_ENV: &str = "SFPROXY_CONFIG";
pub(crate) const DEFAULT_CONFIG_FILE: &str = "sfproxy.toml";
/// `[shared]`: the key prefix, and how long one Redis command may take (bounds included).
pub(crate) const DEFAULT_SHARED_PREFIX: &str = "sfproxy:";
pub(crate) const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(250);
pub(crate) const MIN_SHARED_TIMEOUT: Duration = Duration::from_millis(10);
pub(crate) const MAX_SHARED_TIMEOUT: Duration = Duration::from_secs(10);
