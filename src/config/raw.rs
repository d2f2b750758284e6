//! The config file exactly as written: serde's view of it, unknown keys refused. Nothing here is
//! checked; the validation in [`super`] turns it into the model, naming the key at fault.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) proxy: RawProxy,
    #[serde(default)]
    pub(super) orgs: IndexMap<String, RawOrg>,
    #[serde(default)]
    pub(super) clients: IndexMap<String, RawClient>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) listen: Option<SocketAddr>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) replay_limit: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) request_timeout: Option<Duration>,
    pub(super) admin_listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    pub(super) shutdown_grace: Option<Duration>,
    pub(super) max_header_bytes: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) header_timeout: Option<Duration>,
    pub(super) max_body: Option<ByteSize>,
    pub(super) max_connections: Option<usize>,
    pub(super) workers: Option<usize>,
    pub(super) intercept: Option<RawIntercept>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntercept {
    pub(super) ca_cert_file: PathBuf,
    pub(super) ca_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    pub(super) login_url: String,
    pub(super) audience: Option<String>,
    pub(super) client_id: String,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) private_key_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) session_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) assertion_ttl: Option<Duration>,
    pub(super) instance_url: Option<String>,
    #[serde(default)]
    pub(super) warm: bool,
    #[serde(default, with = "humantime_serde")]
    pub(super) login_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) unavailable_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) rejected_backoff: Option<Duration>,
    pub(super) max_logins_per_hour: Option<u32>,
    /// Where a token response's `instance_url` may point besides the defaults.
    pub(super) instance_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default)]
    pub(super) networks: Vec<IpNet>,
    pub(super) secret_sha256: Option<String>,
    pub(super) secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) hosts: Vec<String>,
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) strip_prefix: bool,
    pub(super) org: String,
    pub(super) user: String,
    pub(super) clients: Option<Vec<String>>,
}
