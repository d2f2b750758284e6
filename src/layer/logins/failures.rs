//! Wrong passwords per source: past `max_failures_per_minute` in a minute, every login from that
//! source is refused until the minute is over, right password or not. Guessing a client's secret
//! through sfproxy is then slow, and a wrong secret looping in a job logs one line a minute.
//!
//! An IPv6 source is its /64: one host commonly holds the whole prefix. The memory outlives
//! reloads (the app keeps it), and a flood of new sources cannot evict a blocked one.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered at most; past it the expired windows go, then those not blocked.
const MAX_SOURCES: usize = 65_536;

/// One source's minute: when it started, the failures in it, whether its block was logged.
struct Minute {
    start: Instant,
    failures: u32,
    logged: bool,
}

#[derive(Default)]
pub(crate) struct Failures {
    seen: Mutex<HashMap<IpAddr, Minute>>,
}

/// What a login from a source meets.
#[derive(Debug, PartialEq)]
pub(super) enum Gate {
    Open,
    /// Refused for the rest of the minute; `first`: the first refusal of it (the one logged).
    Blocked {
        first: bool,
    },
}

impl Failures {
    /// Whether logins from `source` are refused for the rest of its minute, past `limit`.
    pub(super) fn gate(&self, source: IpAddr, limit: u32) -> Gate {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(&key(source)) {
            Some(minute) if minute.start.elapsed() < WINDOW && minute.failures >= limit => {
                let first = !minute.logged;
                minute.logged = true;
                Gate::Blocked { first }
            }
            _ => Gate::Open,
        }
    }

    /// Counts a wrong password from `source`: the failures in its minute so far.
    pub(super) fn record(&self, source: IpAddr, limit: u32) -> u32 {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let source = key(source);
        if seen.len() >= MAX_SOURCES && !seen.contains_key(&source) {
            seen.retain(|_, minute| minute.start.elapsed() < WINDOW);
            if seen.len() >= MAX_SOURCES {
                seen.retain(|_, minute| minute.failures >= limit);
            }
            if seen.len() >= MAX_SOURCES {
                // Every remembered source is blocked: this one is counted by nobody.
                return 1;
            }
        }
        let minute = seen.entry(source).or_insert(Minute {
            start: Instant::now(),
            failures: 0,
            logged: false,
        });
        if minute.start.elapsed() >= WINDOW {
            *minute = Minute {
                start: Instant::now(),
                failures: 0,
                logged: false,
            };
        }
        minute.failures = minute.failures.saturating_add(1);
        minute.failures
    }
}

/// The source a failure counts against: an IPv4 address, or an IPv6 address's /64.
fn key(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_a_source_is_refused_others_are_not() {
        let failures = Failures::default();
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        for n in 1..=2 {
            assert_eq!(failures.record(one, 3), n);
            assert_eq!(failures.gate(one, 3), Gate::Open);
        }
        failures.record(one, 3);
        assert_eq!(failures.gate(one, 3), Gate::Blocked { first: true });
        assert_eq!(failures.gate(one, 3), Gate::Blocked { first: false });
        assert_eq!(failures.gate(two, 3), Gate::Open);
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let failures = Failures::default();
        failures.record("2001:db8:1:2::1".parse().unwrap(), 1);
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(failures.gate(same, 1), Gate::Blocked { first: true });
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(failures.gate(other, 1), Gate::Open);
        // An IPv4-mapped address is the IPv4 source.
        failures.record("192.0.2.7".parse().unwrap(), 1);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(failures.gate(mapped, 1), Gate::Blocked { first: true });
    }

    #[test]
    fn a_flood_of_sources_does_not_unblock_one() {
        let failures = Failures::default();
        let blocked: IpAddr = "10.9.9.9".parse().unwrap();
        failures.record(blocked, 2);
        failures.record(blocked, 2);
        for n in 0..MAX_SOURCES as u32 + 10 {
            failures.record(IpAddr::from(n.to_be_bytes()), 2);
        }
        assert!(matches!(failures.gate(blocked, 2), Gate::Blocked { .. }));
    }
}
