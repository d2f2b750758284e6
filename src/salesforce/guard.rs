//! What protects Salesforce's login endpoint from the proxy: a memory of recent failures and an
//! hourly budget of token requests, per (org, user).
//!
//! Salesforce allows 3,600 logins per user per hour and then locks the user out of the API for
//! everyone. A misconfigured route or an outage must therefore cost a bounded number of token
//! requests however many callers keep trying: after a failure, callers get the remembered error
//! (with `Retry-After`) until its backoff ends; and no (org, user) may spend more than its budget
//! in any sliding hour. A remembered failure belongs to the org settings it happened with, so a
//! reload that fixes the org clears it; the budget follows the user whatever the settings.
//! Expiry answers are spaced too: a session Salesforce refuses again within
//! the [spacing](remint_spacing) of the last drop is kept, not re-minted
//! ([`LoginGuard::may_drop`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{config::Org, salesforce::token::TokenError};

/// The budget's sliding window.
pub(crate) const WINDOW: Duration = Duration::from_secs(3600);

/// A session younger than the spacing is dropped for an expiry answer only if no session of its
/// (org, user) was dropped within the spacing: expiry answers cost at most one login per
/// spacing, however many requests they answer. At least this long...
pub(crate) const REMINT_SPACING: Duration = Duration::from_secs(10);

/// ...and long enough that expiry answers spend at most half of `max_logins_per_hour`: 12 s at
/// the default budget of 600.
pub(crate) fn remint_spacing(max_logins_per_hour: u32) -> Duration {
    REMINT_SPACING.max(WINDOW * 2 / max_logins_per_hour.max(1))
}

#[derive(Default)]
pub(crate) struct LoginGuard {
    users: Mutex<HashMap<(String, String), UserState>>,
}

#[derive(Default)]
struct UserState {
    /// When each token request of the last hour was made, oldest first.
    attempts: VecDeque<Instant>,
    failure: Option<Remembered>,
    /// When a session was last dropped for an expiry answer.
    dropped: Option<Instant>,
}

struct Remembered {
    settings: [u8; 32],
    error: TokenError,
    until: Instant,
}

impl LoginGuard {
    fn with<T>(&self, org: &Org, user: &str, f: impl FnOnce(&mut UserState) -> T) -> T {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let state = users
            .entry((org.name.clone(), user.to_owned()))
            .or_default();
        f(state)
    }

    /// The failure to answer with instead of asking Salesforce, and how long it still holds.
    pub(crate) fn remembered(&self, org: &Org, user: &str) -> Option<(TokenError, Duration)> {
        let now = Instant::now();
        self.with(org, user, |state| {
            let failure = state.failure.as_ref()?;
            if failure.settings != org.settings_id || now >= failure.until {
                state.failure = None;
                return None;
            }
            Some((failure.error.clone(), failure.until - now))
        })
    }

    /// Takes one token request from the hourly budget, or says when the next one frees up.
    pub(crate) fn admit(&self, org: &Org, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let limit = org.max_logins_per_hour as usize;
        self.with(org, user, |state| {
            while state
                .attempts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                state.attempts.pop_front();
            }
            if state.attempts.len() >= limit {
                let oldest = state.attempts.front().copied().unwrap_or(now);
                return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
            }
            state.attempts.push_back(now);
            Ok(())
        })
    }

    /// Remembers `error` for the backoff its kind calls for; returns that backoff.
    pub(crate) fn remember(&self, org: &Org, user: &str, error: &TokenError) -> Duration {
        let backoff = match error {
            TokenError::Rejected { .. } => org.rejected_backoff,
            TokenError::Unavailable(_) | TokenError::Transient(_) => org.unavailable_backoff,
        };
        self.with(org, user, |state| {
            state.failure = Some(Remembered {
                settings: org.settings_id,
                error: error.clone(),
                until: Instant::now() + backoff,
            });
        });
        backoff
    }

    /// Whether a session minted at `minted_at`, reported expired at `now`, may be dropped (and
    /// so cost a login); a drop is remembered. Refused only when the session is younger than
    /// the [spacing](remint_spacing) and another was dropped within it: a first expiry is always renewed,
    /// a session that "expires" again moments later waits until it is that old.
    pub(crate) fn may_drop(&self, org: &Org, user: &str, minted_at: Instant, now: Instant) -> bool {
        let spacing = remint_spacing(org.max_logins_per_hour);
        let young = now.saturating_duration_since(minted_at) < spacing;
        self.with(org, user, |state| {
            let recent = state
                .dropped
                .is_some_and(|t| now.saturating_duration_since(t) < spacing);
            if young && recent {
                return false;
            }
            state.dropped = Some(now);
            true
        })
    }

    pub(crate) fn clear(&self, org: &Org, user: &str) {
        self.with(org, user, |state| state.failure = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_session_expiring_again_is_kept_until_the_spacing_passes() {
        let guard = LoginGuard::default();
        let app = crate::pki::connected_app_cert("t", 1).unwrap();
        let mut org = Org::for_tests("https://login.example", "ck", &app.key_pem);
        // A budget at which the spacing is its floor, 10 s.
        org.max_logins_per_hour = 3600;
        let t0 = Instant::now();
        let later = |secs: f64| t0 + Duration::from_secs_f64(secs);
        // A first expiry is renewed however young the session.
        assert!(guard.may_drop(&org, "u", t0, later(0.1)));
        // Its replacement, reported moments later (by any number of callers), is kept.
        for at in [0.3, 1.0, 9.9] {
            assert!(!guard.may_drop(&org, "u", later(0.2), later(at)), "{at}");
        }
        // Once the spacing has passed since the last drop, it may go.
        assert!(guard.may_drop(&org, "u", later(0.2), later(10.2)));
        // A session past the spacing is always dropped: it is not the one that just replaced
        // another.
        assert!(guard.may_drop(&org, "u", later(0.0), later(10.3)));
        // Other users are not affected.
        assert!(guard.may_drop(&org, "v", later(10.3), later(10.4)));
    }

    #[test]
    fn the_spacing_keeps_expiry_logins_within_half_the_budget() {
        assert_eq!(remint_spacing(3600), REMINT_SPACING);
        assert_eq!(remint_spacing(600), Duration::from_secs(12));
        assert_eq!(remint_spacing(60), Duration::from_secs(120));
        assert_eq!(remint_spacing(0), Duration::from_secs(7200));
        for budget in [1, 2, 3, 60, 600, 720, 3600] {
            let per_hour = WINDOW.as_secs_f64() / remint_spacing(budget).as_secs_f64();
            assert!(
                per_hour <= f64::from(budget) / 2.0 + 1e-9 || budget >= 720,
                "{budget}"
            );
        }
    }
}
