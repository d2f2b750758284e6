//! The fleet's side of a login, in Redis: the stored session of each (org, user), the lock that
//! makes one replica log in for all, the remembered failure and the hourly budget.
//!
//! Each step is one Lua script, so it is atomic and one round trip. A miss *claims*: it gets the
//! stored session, or the remembered failure, or the lock (`SET NX PX`, so a replica that dies
//! mid-login frees it by expiry), or is told to wait. The lock holder *stores* the session it
//! minted (`PX` its `session_ttl`) or the failure (`PX` its backoff) and frees the lock in the
//! same script; waiters see it on their next claim. A session Salesforce refused is *forgotten*
//! only if it is still the one stored (compare and delete), so a late report cannot remove a
//! newer session. The budget is a sorted set of the token requests of the last hour, timed by
//! Redis's clock so replicas' clocks need not agree.
//!
//! Keys are `{prefix}{name}:session|failure|lock` with `name` the keyed hash of (org, its
//! settings, user) — in braces, so a cluster would keep one pair's keys together — and
//! `{prefix}{name}:budget` for (org, user). Values are sealed to their key ([`SharedKey`]).

use std::{
    sync::LazyLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use crate::{
    config::{InstanceUrl, Org},
    salesforce::token::{AccessToken, Session, TokenError},
    shared::{seal::SharedKey, tier::SharedTier},
};

/// The Redis keys of one (org, user).
pub(crate) struct Pair {
    session: String,
    failure: String,
    lock: String,
    budget: String,
}

impl Pair {
    pub(crate) fn new(tier: &SharedTier, org: &Org, user: &str) -> Self {
        let (key, prefix) = (&tier.settings.key, &tier.settings.prefix);
        let name = key.name(&[org.name.as_bytes(), &org.settings_id, user.as_bytes()]);
        let budget = key.name(&[b"budget", org.name.as_bytes(), user.as_bytes()]);
        Self {
            session: format!("{prefix}{{{name}}}:session"),
            failure: format!("{prefix}{{{name}}}:failure"),
            lock: format!("{prefix}{{{name}}}:lock"),
            budget: format!("{prefix}{{{budget}}}:budget"),
        }
    }
}

/// What a claim found.
pub(crate) enum Claim {
    /// A live session another replica (or this one, earlier) stored.
    Stored(Session),
    /// A remembered failure, and how long it still holds.
    Failed(TokenError, Duration),
    /// This replica holds the lock: it logs in, then [`store`]s or [`fail`]s.
    Mine(Lock),
    /// Another replica is logging in: ask again shortly.
    Busy,
}

/// The lock of one login, freed by [`store`], [`fail`] or [`unlock`], or by its expiry.
pub(crate) struct Lock(String);

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('GET', KEYS[1])
if s and s ~= ARGV[3] then return {1, s} end
local f = ARGV[4] == '0' and redis.call('GET', KEYS[2])
if f then return {2, f, redis.call('PTTL', KEYS[2])} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {3} end
return {0}
",
    )
});

static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1
",
    )
});

static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// Compare and delete: KEYS[1] goes only if it still holds ARGV[1].
static COMPARE_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// -1: admitted (and counted); else the milliseconds until the oldest request leaves the window.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
",
    )
});

/// A session as stored: enough to use it, nothing about who holds it.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    token: String,
    instance: String,
    /// Unix milliseconds: every replica's copy expires when the first one does.
    minted_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoredFailure {
    Rejected { error: String, description: String },
    Unavailable { reason: String },
    Transient { reason: String },
}

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // A lock token or budget entry only needs to differ from the others': should the generator
    // fail, the time does.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return format!("t{:x}", unix_ms());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Claims the (org, user) of `pair`: its stored session (other than `stale`, a session this
/// replica knows is refused or means to replace), its remembered failure, or its lock for
/// `lock_for`. `None`: the tier is down.
pub(crate) async fn claim(
    tier: &SharedTier,
    pair: &Pair,
    org: &Org,
    stale: Option<&[u8]>,
    lock_for: Duration,
) -> Option<Claim> {
    let token = random_token();
    let mut stale = stale.map(<[u8]>::to_vec).unwrap_or_default();
    let mut passed_over: Option<Vec<u8>> = None;
    // A stored session that does not open is passed over as stale, a failure that does not open
    // as absent: three asks at most, the last of which takes the lock if it is free.
    let mut skip_failure = false;
    for _ in 0..3 {
        if let Some(sealed) = passed_over.take() {
            stale = sealed;
        }
        let (token, stale, skip) = (&token, &stale, if skip_failure { "1" } else { "0" });
        let answer: Value = tier
            .run("claim", |mut c| async move {
                CLAIM
                    .key(&pair.session)
                    .key(&pair.failure)
                    .key(&pair.lock)
                    .arg(token)
                    .arg(millis(lock_for))
                    .arg(stale)
                    .arg(skip)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let Value::Array(items) = answer else {
            tier.mark_down("claim: the answer is not a list");
            return None;
        };
        match items.as_slice() {
            [Value::Int(1), Value::BulkString(sealed)] => {
                match open_session(&tier.settings.key, &pair.session, sealed, org) {
                    Some(session) => return Some(Claim::Stored(session)),
                    None => {
                        tracing::warn!(
                            org = %org.name,
                            "a session stored in the shared tier does not open with this \
                             replica's key and settings: passed over, and replaced by the next \
                             login"
                        );
                        passed_over = Some(sealed.clone());
                    }
                }
            }
            [Value::Int(2), Value::BulkString(sealed), Value::Int(pttl)] => {
                let remaining = Duration::from_millis(u64::try_from(*pttl).unwrap_or(0));
                let opened = tier.settings.key.open(&pair.failure, sealed);
                let failure = opened.and_then(|plain| serde_json::from_slice(&plain).ok());
                match failure {
                    Some(failure) => return Some(Claim::Failed(token_error(failure), remaining)),
                    None => {
                        tracing::warn!(
                            org = %org.name,
                            "a failure stored in the shared tier does not open with this \
                             replica's key: passed over"
                        );
                        skip_failure = true;
                    }
                }
            }
            [Value::Int(3)] => return Some(Claim::Mine(Lock(token.clone()))),
            [Value::Int(0)] => return Some(Claim::Busy),
            _ => {
                tier.mark_down("claim: the answer is not what sfproxy's script returns");
                return None;
            }
        }
    }
    Some(Claim::Busy)
}

/// Stores `session` for the fleet, forgets the failure and frees `lock`; the stored value is
/// kept on the session, for [`forget`].
pub(crate) async fn store(tier: &SharedTier, pair: &Pair, lock: Lock, session: &mut Session) {
    let stored = StoredSession {
        token: session.token.as_str().to_owned(),
        instance: session.instance.to_string(),
        minted_ms: unix_ms().saturating_sub(millis(session.minted_at.elapsed())),
    };
    let sealed = serde_json::to_vec(&stored)
        .map_err(|e| e.to_string())
        .and_then(|plain| tier.settings.key.seal(&pair.session, &plain));
    let Ok(sealed) = sealed else {
        unlock(tier, pair, lock).await;
        return;
    };
    let ttl = session.ttl.saturating_sub(session.minted_at.elapsed());
    let (value, lock_token) = (&sealed, &lock.0);
    let stored: Option<i64> = tier
        .run("store", |mut c| async move {
            STORE
                .key(&pair.session)
                .key(&pair.failure)
                .key(&pair.lock)
                .arg(value)
                .arg(millis(ttl))
                .arg(lock_token)
                .invoke_async(&mut c)
                .await
        })
        .await;
    if stored.is_some() {
        session.stored = Some(sealed);
    }
}

/// Remembers `error` for the fleet for `backoff`, and frees `lock`.
pub(crate) async fn fail(
    tier: &SharedTier,
    pair: &Pair,
    lock: Lock,
    error: &TokenError,
    backoff: Duration,
) {
    let failure = match error {
        TokenError::Rejected { error, description } => StoredFailure::Rejected {
            error: error.clone(),
            description: description.clone(),
        },
        TokenError::Unavailable(reason) => StoredFailure::Unavailable {
            reason: reason.clone(),
        },
        TokenError::Transient(reason) => StoredFailure::Transient {
            reason: reason.clone(),
        },
    };
    let sealed = serde_json::to_vec(&failure)
        .map_err(|e| e.to_string())
        .and_then(|plain| tier.settings.key.seal(&pair.failure, &plain));
    let Ok(sealed) = sealed else {
        unlock(tier, pair, lock).await;
        return;
    };
    let backoff_ms = if backoff.is_zero() {
        0
    } else {
        millis(backoff)
    };
    let (value, lock_token) = (&sealed, &lock.0);
    let _: Option<i64> = tier
        .run("fail", |mut c| async move {
            FAIL.key(&pair.failure)
                .key(&pair.lock)
                .arg(value)
                .arg(backoff_ms)
                .arg(lock_token)
                .invoke_async(&mut c)
                .await
        })
        .await;
}

/// Frees `lock` if it is still this replica's.
pub(crate) async fn unlock(tier: &SharedTier, pair: &Pair, lock: Lock) {
    compare_and_delete(tier, &pair.lock, lock.0.as_bytes()).await;
}

/// Removes the stored session if it is still `stored` (Salesforce refused it).
pub(crate) async fn forget(tier: &SharedTier, pair: &Pair, stored: &[u8]) {
    compare_and_delete(tier, &pair.session, stored).await;
}

async fn compare_and_delete(tier: &SharedTier, key: &str, value: &[u8]) {
    let _: Option<i64> = tier
        .run("compare-and-delete", |mut c| async move {
            COMPARE_AND_DELETE
                .key(key)
                .arg(value)
                .invoke_async(&mut c)
                .await
        })
        .await;
}

/// Takes one token request from the fleet's hourly budget of `limit`: `Some(Ok)` admitted,
/// `Some(Err(wait))` spent until `wait` has passed, `None` the tier is down.
pub(crate) async fn admit(
    tier: &SharedTier,
    pair: &Pair,
    limit: u32,
    window: Duration,
) -> Option<Result<(), Duration>> {
    let member = &random_token();
    let answer: i64 = tier
        .run("budget", |mut c| async move {
            ADMIT
                .key(&pair.budget)
                .arg(millis(window))
                .arg(limit)
                .arg(member)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    Some(match u64::try_from(answer) {
        Ok(wait) => Err(Duration::from_millis(wait)),
        Err(_) => Ok(()),
    })
}

/// A stored session, if it opens at `redis_key` and may be used under `org`'s current settings.
fn open_session(key: &SharedKey, redis_key: &str, sealed: &[u8], org: &Org) -> Option<Session> {
    let plain = key.open(redis_key, sealed)?;
    let stored: StoredSession = serde_json::from_slice(&plain).ok()?;
    let token = AccessToken::new(&stored.token)?;
    let instance = match &org.instance_url {
        Some(pinned) => pinned.clone(),
        None => {
            let instance = InstanceUrl::parse(&stored.instance).ok()?;
            org.instances.allows(&instance).then_some(instance)?
        }
    };
    let age = Duration::from_millis(unix_ms().saturating_sub(stored.minted_ms));
    if age >= org.session_ttl {
        return None;
    }
    Some(Session {
        token,
        instance,
        ttl: org.session_ttl,
        minted_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
        user_info: tokio::sync::OnceCell::new(),
        stored: Some(sealed.to_vec()),
    })
}

fn token_error(failure: StoredFailure) -> TokenError {
    match failure {
        StoredFailure::Rejected { error, description } => {
            TokenError::Rejected { error, description }
        }
        StoredFailure::Unavailable { reason } => TokenError::Unavailable(reason),
        StoredFailure::Transient { reason } => TokenError::Transient(reason),
    }
}
