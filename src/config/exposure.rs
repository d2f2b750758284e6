//! The check that refuses a config exposing a Salesforce user to anyone who can reach the port:
//! a non-loopback listener without clients, or clients without a secret whose networks cover
//! too much public address space, one network or all of them together.

use ipnet::IpNet;

use super::{
    error::ConfigError,
    model::{Client, ProxySettings},
};

/// The broadest networks a client without a secret may have: 10.0.0.0/8 and fc00::/7 (private
/// ranges) pass; 0.0.0.0/1 or 2000::/3, most of the internet, do not.
pub(super) const MIN_OPEN_PREFIX_V4: u8 = 8;
pub(super) const MIN_OPEN_PREFIX_V6: u8 = 7;
/// How much public address space the clients without a secret may cover together: a /8 of
/// IPv4 (as one network may), and a /32 of IPv6 — the block a regional registry allocates to
/// an ISP or a large organisation, more than any one organisation's own callers sit in. (A /8
/// of IPv6 would let half the allocated internet in.)
pub(super) const MAX_OPEN_PREFIX_V4: u8 = 8;
pub(super) const MAX_OPEN_PREFIX_V6: u8 = 32;
/// Address space no stranger on the internet calls from: private (RFC 1918, ULA), shared
/// (RFC 6598), loopback and link-local. Not counted as exposure.
pub(super) const NOT_PUBLIC: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Refuses configs under which anyone who can reach the port would act as a Salesforce user.
pub(super) fn check_exposure(proxy: &ProxySettings, clients: &[Client]) -> Result<(), ConfigError> {
    if clients.is_empty() && !proxy.listen.ip().is_loopback() {
        return Err(ConfigError::new(
            "proxy.listen",
            format!(
                "{} is not a loopback address and there is no [clients] table: anyone who can \
                 reach the port would act as the routes' Salesforce users; add [clients.NAME] \
                 with networks and/or a secret",
                proxy.listen
            ),
        ));
    }
    let mut open: Vec<IpNet> = Vec::new();
    let mut open_clients: Vec<&str> = Vec::new();
    for client in clients {
        if client.secret_sha256.is_some() {
            continue;
        }
        let too_broad = client.networks.is_empty()
            || client.networks.iter().any(|n| match n {
                IpNet::V4(n) => n.prefix_len() < MIN_OPEN_PREFIX_V4,
                IpNet::V6(n) => n.prefix_len() < MIN_OPEN_PREFIX_V6,
            });
        if too_broad {
            return Err(ConfigError::new(
                format!("clients.{}", client.name),
                format!(
                    "has no secret and no networks, or networks broader than /{MIN_OPEN_PREFIX_V4} \
                     (IPv4) or /{MIN_OPEN_PREFIX_V6} (IPv6): anyone who can reach the port from \
                     them would be this client; narrow networks or set secret_sha256/secret_env"
                ),
            ));
        }
        // Coverage, not prefix sizes: 256 /8s are the whole internet, in one client or many.
        open.extend(client.networks.iter().copied());
        open_clients.push(&client.name);
        let (v4, v6) = public_coverage(&open);
        if v4 > 1 << (32 - MAX_OPEN_PREFIX_V4) || v6 > 1 << (64 - MAX_OPEN_PREFIX_V6) {
            let together = if open_clients.len() > 1 {
                format!(
                    " together with those of {}",
                    open_clients[..open_clients.len() - 1].join(", ")
                )
            } else {
                String::new()
            };
            return Err(ConfigError::new(
                format!("clients.{}", client.name),
                format!(
                    "has no secret, and its networks{together} cover more public address space \
                     than one /{MAX_OPEN_PREFIX_V4} (IPv4) or /{MAX_OPEN_PREFIX_V6} (IPv6): anyone \
                     who can reach the port from them would be a client; narrow networks or set \
                     secret_sha256/secret_env"
                ),
            ));
        }
    }
    Ok(())
}

/// How much public space `networks` cover, overlaps counted once: IPv4 in addresses, IPv6 in
/// /64s (a smaller network counts as one).
pub(super) fn public_coverage(networks: &[IpNet]) -> (u64, u128) {
    let not_public: Vec<IpNet> = NOT_PUBLIC.iter().filter_map(|n| n.parse().ok()).collect();
    let (mut v4, mut v6) = (0u64, 0u128);
    for net in IpNet::aggregate(&networks.to_vec()) {
        // Merged networks do not overlap, and a CIDR block and a reserved one overlap only when
        // one holds the other.
        let size = |n: &IpNet| -> u128 {
            match n {
                IpNet::V4(n) => 1u128 << (32 - n.prefix_len()),
                IpNet::V6(n) => 1u128 << (64 - n.prefix_len().min(64)),
            }
        };
        let reserved: u128 = not_public
            .iter()
            .filter(|p| {
                matches!(
                    (p, &net),
                    (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
                )
            })
            .map(|p| {
                if p.contains(&net) {
                    size(&net)
                } else if net.contains(p) {
                    size(p)
                } else {
                    0
                }
            })
            .sum();
        let public = size(&net).saturating_sub(reserved);
        match net {
            IpNet::V4(_) => v4 += u64::try_from(public).unwrap_or(u64::MAX),
            IpNet::V6(_) => v6 += public,
        }
    }
    (v4, v6)
}
