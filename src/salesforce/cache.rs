//! Sessions per (org, user), shared by every request that needs one.
//!
//! Salesforce allows 3,600 logins per user per hour and does not say how long a session lives, so
//! a session is reused for the org's `session_ttl` and dropped early only when Salesforce says it
//! expired. Misses go through moka's entry API: however many callers miss at once, one token
//! request runs and they all get its result (never read-then-insert, which races). Invalidation
//! removes only the session that failed, so a caller holding an old token cannot evict the fresh
//! one a concurrent replay already minted. A young session reported expired within the
//! [spacing](super::guard::remint_spacing) of the last drop is kept while it is that young:
//! however often fresh sessions "expire", that costs at most one login per spacing. Where a
//! missing session comes from — a guarded login, or with `[shared]` the fleet's — is the
//! [`Minter`]'s business; a hit never leaves this process.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};

use crate::{
    config::Org,
    metrics::OrgMetrics,
    salesforce::{
        minting::{Minter, Origin},
        token::{Session, TokenClient},
    },
    shared::tier::SharedTier,
};

pub(crate) use crate::salesforce::minting::LoginError;

/// Distinct (org, user) pairs are few; this only bounds a misconfiguration.
const MAX_SESSIONS: u64 = 10_000;

/// An org's sessions are keyed by its settings too, so a reload that changes the org's login
/// settings starts afresh while an unchanged org keeps its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    org: String,
    settings: [u8; 32],
    user: String,
}

impl Key {
    fn new(org: &Org, user: &str) -> Self {
        Self {
            org: org.name.clone(),
            settings: org.settings_id,
            user: user.to_owned(),
        }
    }
}

/// Where the session of a request came from, for the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Cache,
    Minted,
    /// From the shared tier: another replica's login.
    Shared,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Minted => "minted",
            Self::Shared => "shared",
        }
    }
}

/// Each session lives for its own org's `session_ttl` from when it was minted, also when it
/// replaces an older one (a warm renewal): moka would otherwise keep the old one's deadline.
struct SessionTtl;

impl Expiry<Key, Arc<Session>> for SessionTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        session: &Arc<Session>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(remaining(session))
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        session: &Arc<Session>,
        _updated_at: Instant,
        _until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining(session))
    }
}

/// What is left of a session's `ttl`: all of it when minted here, less its age when another
/// replica minted it.
fn remaining(session: &Session) -> Duration {
    session.ttl.saturating_sub(session.minted_at.elapsed())
}

/// The sessions of every (org, user), and where new ones come from; both outlive reloads.
#[derive(Clone)]
pub(crate) struct SessionCache {
    /// Keys come from the config, not from callers: a fast hash needs no flooding resistance.
    sessions: Cache<Key, Arc<Session>, foldhash::fast::RandomState>,
    minter: Arc<Minter>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(SessionTtl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            minter: Arc::default(),
        }
    }
}

impl SessionCache {
    /// The shared tier in use, if `[shared]` is set.
    pub(crate) fn shared(&self) -> Option<Arc<SharedTier>> {
        self.minter.shared()
    }

    /// Puts `tier` in use (a reload that changed `[shared]`, or removed it: `None`).
    pub(crate) fn set_shared(&self, tier: Option<Arc<SharedTier>>) {
        self.minter.set_shared(tier);
    }

    /// The live session for (org, user), logging in with `tokens` if there is none.
    /// The lookup is counted in `metrics`, the org's handles.
    pub(crate) async fn get(
        &self,
        org: &Org,
        user: &str,
        tokens: &TokenClient,
        metrics: &OrgMetrics,
    ) -> Result<(Arc<Session>, Source), Arc<LoginError>> {
        let key = Key::new(org, user);
        // The common case, a live session, takes a plain read; only a miss takes the entry
        // lock that makes concurrent misses share one login.
        let (session, source) = match self.sessions.get(&key).await {
            Some(session) => (session, Source::Cache),
            None => {
                let shared = std::sync::atomic::AtomicBool::new(false);
                // Boxed: the login's future is large, and only a miss needs it.
                let entry = Box::pin(self.sessions.entry(key).or_try_insert_with(async {
                    let (session, origin) = self.minter.session(org, user, tokens, None).await?;
                    shared.store(origin == Origin::Shared, Ordering::Relaxed);
                    Ok::<_, LoginError>(Arc::new(session))
                }))
                .await?;
                let source = match (entry.is_fresh(), shared.load(Ordering::Relaxed)) {
                    (false, _) => Source::Cache,
                    (true, false) => Source::Minted,
                    (true, true) => Source::Shared,
                };
                (entry.into_value(), source)
            }
        };
        let handles = metrics.get();
        match source {
            Source::Minted => handles.session_miss.increment(1),
            Source::Cache => handles.session_hit.increment(1),
            Source::Shared => handles.session_shared.increment(1),
        }
        Ok((session, source))
    }

    /// The cached session of (org, user), without logging in.
    pub(crate) async fn peek(&self, org: &Org, user: &str) -> Option<Arc<Session>> {
        self.sessions.get(&Key::new(org, user)).await
    }

    /// Puts a new session in place of `current` (keeping a session warm): the fleet's, if
    /// another replica renewed it already, else a login.
    pub(crate) async fn refresh(
        &self,
        org: &Org,
        user: &str,
        tokens: &TokenClient,
        current: &Session,
    ) -> Result<Arc<Session>, LoginError> {
        let stale = current.stored.as_deref();
        let (session, _) = self.minter.session(org, user, tokens, stale).await?;
        let session = Arc::new(session);
        self.sessions
            .insert(Key::new(org, user), session.clone())
            .await;
        Ok(session)
    }

    /// Drops `expired` if it is still the cached session for (org, user), unless it is a young
    /// session reported expired within seconds of the last drop ([`LoginGuard::may_drop`]):
    /// that one is kept, so repeated reports cost no login each; callers find it still cached.
    pub(crate) async fn invalidate(&self, org: &Org, user: &str, expired: &Arc<Session>) {
        // From the fleet first, by every caller it failed for: no lookup that misses after this
        // (here or on another replica) can be handed the refused session back.
        self.minter.forget(org, user, expired).await;
        self.sessions
            .entry(Key::new(org, user))
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) if Arc::ptr_eq(entry.value(), expired) => {
                        if self.minter.guard().may_drop(
                            org,
                            user,
                            expired.minted_at,
                            Instant::now(),
                        ) {
                            Op::Remove
                        } else {
                            tracing::warn!(
                                org = %org.name, user,
                                age = ?expired.minted_at.elapsed(),
                                "Salesforce refused a session minted moments after the last one \
                                 it refused; kept, not renewed, for now"
                            );
                            Op::Nop
                        }
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::InstanceUrl, mock_org::MockOrg, salesforce::token::TokenError};

    /// The org's metric handles, as the stack attaches them (no recorder: nothing is kept).
    fn counted() -> &'static OrgMetrics {
        static METRICS: std::sync::LazyLock<OrgMetrics> =
            std::sync::LazyLock::new(|| OrgMetrics::new("acme"));
        &METRICS
    }

    async fn setup() -> (MockOrg, SessionCache, TokenClient, Arc<Org>) {
        let (mock, tokens, org) = crate::salesforce::fixture::standin().await;
        (mock, SessionCache::default(), tokens, org)
    }

    #[tokio::test]
    async fn a_stale_invalidation_keeps_the_fresh_session() {
        let (mock, cache, tokens, org) = setup().await;
        let (first, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Minted);
        let (again, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Cache);
        assert!(Arc::ptr_eq(&first, &again));

        cache.invalidate(&org, "u", &first).await;
        let (second, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Minted);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(mock.token_requests(), 2);

        // A late caller still holding the first session must not evict the second.
        cache.invalidate(&org, "u", &first).await;
        let (still, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Cache);
        assert!(Arc::ptr_eq(&second, &still));
        assert_eq!(mock.token_requests(), 2);
        assert_eq!(
            still.instance,
            InstanceUrl::parse(&mock.url()).unwrap(),
            "the instance comes from the token response"
        );
    }

    #[tokio::test]
    async fn a_young_session_expiring_again_is_not_reminted_for_every_caller() {
        let (mock, cache, tokens, org) = setup().await;
        let (first, _) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        // The first expiry is renewed, at once.
        cache.invalidate(&org, "u", &first).await;
        let (second, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Minted);
        assert_eq!(mock.token_requests(), 2);

        // The replacement "expires" too, reported by many callers at once and one by one: it
        // is kept, they all share it, and no login is made.
        let reports = (0..50).map(|_| async {
            cache.invalidate(&org, "u", &second).await;
            cache.get(&org, "u", &tokens, counted()).await.unwrap()
        });
        for (session, source) in futures_util::future::join_all(reports).await {
            assert!(Arc::ptr_eq(&session, &second));
            assert_eq!(source, Source::Cache);
        }
        for _ in 0..50 {
            cache.invalidate(&org, "u", &second).await;
            let (session, _) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
            assert!(Arc::ptr_eq(&session, &second));
        }
        assert_eq!(mock.token_requests(), 2, "one re-mint in all");
    }

    #[tokio::test]
    async fn a_renewed_session_lives_its_own_ttl_not_the_old_ones() {
        let (mock, cache, tokens, org) = setup().await;
        let ttl = Duration::from_millis(600);
        let org = Org {
            session_ttl: ttl,
            ..Arc::try_unwrap(org).ok().unwrap()
        };
        let (first, _) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        tokio::time::sleep(ttl / 2).await;
        let renewed = cache.refresh(&org, "u", &tokens, &first).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        // Past the first session's deadline, within the renewed one's.
        tokio::time::sleep(ttl * 2 / 3).await;
        let cached = cache
            .peek(&org, "u")
            .await
            .expect("the renewed session is still cached");
        assert!(Arc::ptr_eq(&cached, &renewed));
        tokio::time::sleep(ttl / 2).await;
        assert!(
            cache.peek(&org, "u").await.is_none(),
            "and it expires in its turn"
        );
        assert_eq!(mock.token_requests(), 2);
    }

    #[tokio::test]
    async fn failures_are_remembered_not_retried() {
        let (mock, cache, tokens, org) = setup().await;
        mock.fail_next_token_requests(
            1,
            crate::mock_org::TokenFailure::OAuth {
                status: 400,
                error: "invalid_grant".into(),
                description: "ip restricted".into(),
            },
        );
        let error = cache.get(&org, "u", &tokens, counted()).await.unwrap_err();
        assert!(matches!(
            &*error,
            LoginError::Failed { error: TokenError::Rejected { description, .. }, retry_after }
                if description == "ip restricted" && *retry_after == org.rejected_backoff
        ));
        // Remembered: callers get the refusal, and no token request is made, until it ends.
        let again = cache.get(&org, "u", &tokens, counted()).await.unwrap_err();
        assert!(
            matches!(&*again, LoginError::Failed { retry_after, .. } if *retry_after <= org.rejected_backoff)
        );
        assert_eq!(mock.token_requests(), 1);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_twice_within_the_timeout() {
        let (mock, cache, tokens, org) = setup().await;
        let unavailable = crate::mock_org::TokenFailure::Raw {
            status: 503,
            content_type: "text/html".into(),
            body: "<html>down</html>".into(),
        };
        mock.fail_next_token_requests(2, unavailable.clone());
        let (_, source) = cache.get(&org, "u", &tokens, counted()).await.unwrap();
        assert_eq!(source, Source::Minted, "the third attempt succeeded");
        assert_eq!(mock.token_requests(), 3);

        // Three failures: the login fails, and its failure is remembered.
        let (mock, cache, tokens, org) = setup().await;
        mock.fail_next_token_requests(5, unavailable);
        let error = cache.get(&org, "u", &tokens, counted()).await.unwrap_err();
        assert!(matches!(&*error, LoginError::Failed { error, .. } if error.is_transient()));
        assert_eq!(mock.token_requests(), 3, "one try and two retries");
        assert!(cache.get(&org, "u", &tokens, counted()).await.is_err());
        assert_eq!(
            mock.token_requests(),
            3,
            "remembered for unavailable_backoff"
        );
    }

    #[tokio::test]
    async fn the_hourly_budget_is_never_exceeded() {
        let (mock, cache, tokens, org) = setup().await;
        let mut org = Arc::try_unwrap(org).unwrap();
        org.max_logins_per_hour = 2;
        org.rejected_backoff = Duration::ZERO;
        let org = Arc::new(org);
        mock.fail_next_token_requests(
            2,
            crate::mock_org::TokenFailure::OAuth {
                status: 400,
                error: "invalid_grant".into(),
                description: "ip restricted".into(),
            },
        );
        for _ in 0..2 {
            assert!(cache.get(&org, "u", &tokens, counted()).await.is_err());
        }
        let error = cache.get(&org, "u", &tokens, counted()).await.unwrap_err();
        assert!(matches!(
            &*error,
            LoginError::BudgetExceeded { limit: 2, retry_after } if *retry_after > Duration::from_secs(3500)
        ));
        assert_eq!(mock.token_requests(), 2);
    }
}
