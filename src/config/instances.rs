//! Where a session may be sent: the instance URLs a token response may name for an org —
//! Salesforce's own domains on 443 when the org logs in at Salesforce, the login host itself
//! for a stand-in, and what `instance_hosts` adds. A hostile or mistaken token endpoint cannot
//! make sfproxy dial anywhere else. The policy itself is model data (`model::InstancePolicy`);
//! here are its rules: how entries are read and what they allow.

use http::{Uri, uri::Authority};

use super::model::{HostPattern, InstanceHost, InstancePolicy, InstanceUrl};
use crate::salesforce::domains::is_salesforce_host;

/// A host and port, lower-case, without the trailing dot; the port 443 when not given.
fn host_and_port(authority: &Authority) -> (String, u16) {
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    (host, authority.port_u16().unwrap_or(443))
}

impl InstanceHost {
    pub(super) fn parse(raw: &str) -> Result<Self, String> {
        let entry = raw.trim();
        let (host, port) = match entry.rsplit_once(':') {
            // A bracketed IPv6 address without a port has colons but ends with `]`.
            Some((host, port)) if !entry.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{raw:?}: {port:?} is not a port (1-65535)"))?;
                (host, port)
            }
            _ => (entry, 443),
        };
        let pattern = HostPattern::parse(host).map_err(|_| {
            format!("{raw:?} is not an instance host (use \"host\", \"*.domain\" or \"host:port\")")
        })?;
        if pattern == HostPattern::Any {
            return Err(format!(
                "{raw:?} would send sessions wherever a token response points: name the hosts \
                 or \"*.domain\""
            ));
        }
        Ok(Self {
            host: pattern,
            port,
        })
    }

    /// The rule of a route's host patterns (`layer::route`), kept here so that where a session
    /// may be sent does not depend on the request path's code; `*` is refused by [`Self::parse`].
    fn matches(&self, host: &str, port: u16) -> bool {
        self.port == port
            && match &self.host {
                HostPattern::Any => false,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                }
                HostPattern::Exact(name) => host == name,
            }
    }
}

/// Where sessions of an org may be sent when the token response names the instance: a hostile or
/// mistaken token endpoint must not make sfproxy dial (and report on) any host and port it likes.
/// By default, port 443 under Salesforce's domains when `login_url` is a Salesforce host, and
/// the login host and port itself when it is not (a stand-in); plus the `instance_hosts` entries.
impl InstancePolicy {
    pub(crate) fn new(login_url: &Uri, listed: Vec<InstanceHost>) -> Self {
        let login = login_url
            .authority()
            .map(host_and_port)
            .filter(|(host, port)| !(*port == 443 && is_salesforce_host(host)));
        Self { login, listed }
    }

    /// Whether a session may be sent to `instance`.
    pub(crate) fn allows(&self, instance: &InstanceUrl) -> bool {
        let (host, port) = host_and_port(&instance.0);
        let default = match &self.login {
            None => port == 443 && is_salesforce_host(&host),
            Some((login_host, login_port)) => *login_host == host && *login_port == port,
        };
        default || self.listed.iter().any(|entry| entry.matches(&host, port))
    }
}
