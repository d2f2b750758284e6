//! Sessions per (org, user), shared by every request that needs one.
//!
//! Salesforce allows 3,600 logins per user per hour and does not say how long a session lives, so
//! a session is reused for the org's `session_ttl` and dropped early only when Salesforce says it
//! expired. Misses go through moka's entry API: however many callers miss at once, one token
//! request runs and they all get its result (never read-then-insert, which races). Invalidation
//! removes only the session that failed, so a caller holding an old token cannot evict the fresh
//! one a concurrent replay already minted.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};

use crate::{
    config::Org,
    salesforce::token::{Session, TokenClient, TokenError},
};

/// Distinct (org, user) pairs are few; this only bounds a misconfiguration.
const MAX_SESSIONS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    org: String,
    user: String,
}

/// Where the session of a request came from, for the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Minted,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Minted => "minted",
        }
    }
}

/// Each session lives for its own org's `session_ttl`.
struct SessionTtl;

impl Expiry<Key, Arc<Session>> for SessionTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        session: &Arc<Session>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(session.ttl)
    }
}

#[derive(Clone)]
pub struct SessionCache {
    sessions: Cache<Key, Arc<Session>>,
    tokens: TokenClient,
}

impl SessionCache {
    pub fn new(tokens: TokenClient) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(SessionTtl)
                .build(),
            tokens,
        }
    }

    /// The live session for (org, user), minting one if there is none.
    pub async fn get(
        &self,
        org: &Arc<Org>,
        user: &str,
    ) -> Result<(Arc<Session>, Source), Arc<TokenError>> {
        let key = Key {
            org: org.name.clone(),
            user: user.to_owned(),
        };
        let entry = self
            .sessions
            .entry(key)
            .or_try_insert_with(async { self.tokens.mint(org, user).await.map(Arc::new) })
            .await?;
        let source = if entry.is_fresh() {
            Source::Minted
        } else {
            Source::Cache
        };
        Ok((entry.into_value(), source))
    }

    /// Drops `expired` if it is still the cached session for (org, user).
    pub async fn invalidate(&self, org: &Org, user: &str, expired: &Arc<Session>) {
        let key = Key {
            org: org.name.clone(),
            user: user.to_owned(),
        };
        self.sessions
            .entry(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) if Arc::ptr_eq(entry.value(), expired) => Op::Remove,
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }
}
