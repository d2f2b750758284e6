//! Where a session comes from when the cache has none: a login, guarded, and — with `[shared]`
//! up — one login for the whole fleet.
//!
//! Every token request passes the [`LoginGuard`]: remembered failures, the hourly budget, and
//! bounded retries of transient failures. With the shared tier up, a miss first claims the
//! (org, user) in Redis ([`fleet::claim`]): a session another replica stored is used as it is;
//! a failure another replica remembered is answered as if it were this one's; otherwise one
//! replica takes the lock and logs in — taking its token request from the fleet's budget as
//! well as its own — and the others poll until it has stored the session (or the failure). A
//! replica that cannot get an answer from the fleet within the lock's life plus a login logs in
//! alone, and so does every replica while the tier is down.
//!
//! Polling, not pub/sub: a waiter asks once per [`POLL`], one atomic script per ask, and only
//! while a login is in flight (one waiter per process, the cache's single flight sees to that);
//! a subscription would be a second connection per process to keep alive and resubscribe, to
//! save at most one poll interval on a login that takes a round trip to Salesforce.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

use crate::{
    config::Org,
    salesforce::{
        guard::{LoginGuard, WINDOW},
        token::{Session, TokenClient, TokenError},
    },
    shared::{
        fleet::{self, Claim, Pair},
        tier::SharedTier,
    },
};

/// How often a replica waiting for another's login asks Redis again.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// The lock outlives the login it guards by this much: the holder stores before it expires.
const LOCK_SLACK: Duration = Duration::from_secs(1);

/// Transient failures get this many more tries, within the org's `login_timeout`.
const MAX_RETRIES: u32 = 2;
const RETRY_BASE: Duration = Duration::from_millis(200);

/// Why no session could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoginError {
    /// The login failed, now or within its remembered backoff; ask again after `retry_after`.
    #[error("{error}")]
    Failed {
        error: TokenError,
        retry_after: Duration,
    },
    /// The (org, user) spent its hourly budget of token requests.
    #[error("{limit} token requests in the last hour: the login budget is spent")]
    BudgetExceeded { limit: u32, retry_after: Duration },
}

/// Where a new session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// This process's token request.
    Minted,
    /// The shared tier: another replica's login (or this one's, before a restart).
    Shared,
}

/// The guard of every login, and the shared tier when `[shared]` is set; both outlive reloads.
#[derive(Default)]
pub(crate) struct Minter {
    guard: LoginGuard,
    shared: ArcSwapOption<SharedTier>,
}

/// `RETRY_BASE * 2^attempt`, jittered to 50–150 % so callers of many proxies do not retry in step.
fn retry_pause(attempt: u32) -> Duration {
    let mut noise = [0u8; 2];
    let jitter = match aws_lc_rs::rand::fill(&mut noise) {
        Ok(()) => 0.5 + f64::from(u16::from_le_bytes(noise)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    RETRY_BASE.mul_f64(f64::from(1u32 << attempt.min(8)) * jitter)
}

impl Minter {
    pub(crate) fn guard(&self) -> &LoginGuard {
        &self.guard
    }

    pub(crate) fn shared(&self) -> Option<Arc<SharedTier>> {
        self.shared.load_full()
    }

    pub(crate) fn set_shared(&self, tier: Option<Arc<SharedTier>>) {
        self.shared.store(tier);
    }

    /// The shared tier, if it is set and up.
    pub(crate) fn fleet(&self) -> Option<Arc<SharedTier>> {
        self.shared.load_full().filter(|tier| tier.is_up())
    }

    /// A new session for (org, user). `stale`: the stored value of the session this replica
    /// means to replace, which the fleet must not hand back.
    pub(crate) async fn session(
        &self,
        org: &Org,
        user: &str,
        tokens: &TokenClient,
        stale: Option<&[u8]>,
    ) -> Result<(Session, Origin), LoginError> {
        if let Some(tier) = self.fleet() {
            if let Some(outcome) = self.through_fleet(&tier, org, user, tokens, stale).await {
                return outcome;
            }
        }
        self.login(org, user, tokens, None)
            .await
            .map(|s| (s, Origin::Minted))
    }

    /// `None`: the fleet gave no answer (the tier went down, or the replica logging in did not
    /// store anything in time); the caller logs in alone.
    async fn through_fleet(
        &self,
        tier: &SharedTier,
        org: &Org,
        user: &str,
        tokens: &TokenClient,
        stale: Option<&[u8]>,
    ) -> Option<Result<(Session, Origin), LoginError>> {
        let pair = Pair::new(tier, org, user);
        let lock_for = org.login_timeout + LOCK_SLACK;
        let give_up = Instant::now() + lock_for + org.login_timeout;
        loop {
            match fleet::claim(tier, &pair, org, stale, lock_for).await? {
                Claim::Stored(session) => return Some(Ok((session, Origin::Shared))),
                Claim::Failed(error, retry_after) => {
                    return Some(Err(LoginError::Failed { error, retry_after }));
                }
                Claim::Mine(lock) => {
                    let outcome = self.login(org, user, tokens, Some((tier, &pair))).await;
                    return Some(match outcome {
                        Ok(mut session) => {
                            fleet::store(tier, &pair, lock, &mut session).await;
                            Ok((session, Origin::Minted))
                        }
                        Err(LoginError::Failed { error, retry_after }) => {
                            fleet::fail(tier, &pair, lock, &error, retry_after).await;
                            Err(LoginError::Failed { error, retry_after })
                        }
                        Err(spent) => {
                            fleet::unlock(tier, &pair, lock).await;
                            Err(spent)
                        }
                    });
                }
                Claim::Busy if Instant::now() < give_up => tokio::time::sleep(POLL).await,
                Claim::Busy => {
                    tracing::warn!(
                        org = %org.name, user,
                        "the replica logging in for the fleet stored nothing in time: \
                         logging in here"
                    );
                    return None;
                }
            }
        }
    }

    /// One login: the remembered failure if there is one, else token requests within the budget
    /// (the fleet's too, given `fleet`), transient failures retried with backoff inside
    /// `login_timeout`.
    async fn login(
        &self,
        org: &Org,
        user: &str,
        tokens: &TokenClient,
        fleet: Option<(&SharedTier, &Pair)>,
    ) -> Result<Session, LoginError> {
        if let Some((error, retry_after)) = self.guard.remembered(org, user) {
            return Err(LoginError::Failed { error, retry_after });
        }
        let deadline = Instant::now() + org.login_timeout;
        let mut attempt = 0;
        loop {
            if let Err(retry_after) = self.admit(org, user, fleet).await {
                tracing::warn!(
                    org = %org.name, user, limit = org.max_logins_per_hour, ?retry_after,
                    "login budget spent: no token request"
                );
                return Err(LoginError::BudgetExceeded {
                    limit: org.max_logins_per_hour,
                    retry_after,
                });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let error = match tokens.mint(org, user, remaining).await {
                Ok(session) => {
                    self.guard.clear(org, user);
                    return Ok(session);
                }
                Err(error) => error,
            };
            let pause = retry_pause(attempt);
            if error.is_transient() && attempt < MAX_RETRIES && Instant::now() + pause < deadline {
                attempt += 1;
                tokio::time::sleep(pause).await;
                continue;
            }
            let retry_after = self.guard.remember(org, user, &error);
            return Err(LoginError::Failed { error, retry_after });
        }
    }

    /// The fleet's budget first (when it answers), then this process's: a replica never spends
    /// more than its own budget, and the fleet never more than one.
    async fn admit(
        &self,
        org: &Org,
        user: &str,
        fleet: Option<(&SharedTier, &Pair)>,
    ) -> Result<(), Duration> {
        if let Some((tier, pair)) = fleet {
            if let Some(Err(wait)) = fleet::admit(tier, pair, org.max_logins_per_hour, WINDOW).await
            {
                return Err(wait);
            }
        }
        self.guard.admit(org, user)
    }

    /// Removes a session Salesforce refused from the shared tier, if it is still the one stored.
    pub(crate) async fn forget(&self, org: &Org, user: &str, refused: &Session) {
        if let (Some(tier), Some(stored)) = (self.fleet(), &refused.stored) {
            fleet::forget(&tier, &Pair::new(&tier, org, user), stored).await;
        }
    }
}
