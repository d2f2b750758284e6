//! Wrong passwords per source address: past `max_failures_per_minute` in a minute, every login
//! from that address is refused until the minute is over, right password or not. Guessing a
//! client's secret through sfproxy is then slow, and a wrong secret looping in a job cannot
//! flood the log.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it the expired windows go, then all (a flood of sources
/// must not grow the map without end).
const MAX_SOURCES: usize = 65_536;

pub(super) struct Failures {
    limit: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Failures {
    pub(super) fn new(limit: u32) -> Self {
        Self {
            limit,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether logins from `source` are refused for the rest of its minute.
    pub(super) fn blocked(&self, source: IpAddr) -> bool {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&source)
            .is_some_and(|(start, count)| start.elapsed() < WINDOW && *count >= self.limit)
    }

    /// Counts a wrong password from `source`: the failures in its minute so far.
    pub(super) fn record(&self, source: IpAddr) -> u32 {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_SOURCES {
            seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if seen.len() >= MAX_SOURCES {
                seen.clear();
            }
        }
        let entry = seen.entry(source).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_a_source_is_refused_others_are_not() {
        let failures = Failures::new(3);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        for n in 1..=2 {
            assert_eq!(failures.record(one), n);
            assert!(!failures.blocked(one));
        }
        failures.record(one);
        assert!(failures.blocked(one));
        assert!(!failures.blocked(two));
    }
}
