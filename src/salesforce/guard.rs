//! What protects Salesforce's login endpoint from the proxy: a memory of recent failures and an
//! hourly budget of token requests, per (org, user).
//!
//! Salesforce allows 3,600 logins per user per hour and then locks the user out of the API for
//! everyone. A misconfigured route or an outage must therefore cost a bounded number of token
//! requests however many callers keep trying: after a failure, callers get the remembered error
//! (with `Retry-After`) until its backoff ends; and no (org, user) may spend more than its budget
//! in any sliding hour. A remembered failure belongs to the org settings it happened with, so a
//! reload that fixes the org clears it; the budget follows the user whatever the settings.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{config::Org, salesforce::token::TokenError};

const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct LoginGuard {
    users: Mutex<HashMap<(String, String), UserState>>,
}

#[derive(Default)]
struct UserState {
    /// When each token request of the last hour was made, oldest first.
    attempts: VecDeque<Instant>,
    failure: Option<Remembered>,
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
    pub fn remembered(&self, org: &Org, user: &str) -> Option<(TokenError, Duration)> {
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
    pub fn admit(&self, org: &Org, user: &str) -> Result<(), Duration> {
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
    pub fn remember(&self, org: &Org, user: &str, error: &TokenError) -> Duration {
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

    pub fn clear(&self, org: &Org, user: &str) {
        self.with(org, user, |state| state.failure = None);
    }
}
