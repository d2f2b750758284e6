//! `[shared]`: several replicas, one login. Sessions, the lock that makes one replica log in for
//! the fleet, remembered failures and the hourly login budget live in Redis (or Valkey).
//!
//! A request whose session is in its process's cache never touches Redis; only a miss, a renewal
//! and an expiry do. Redis unreachable, slow or answering garbage never costs a request: the
//! process carries on alone ([`tier`]) and shares again when Redis is back. `seal` keeps what is
//! stored unreadable and unmovable, `connect` makes the connection, `fleet` is the protocol.

mod connect;
pub(crate) mod fleet;
pub(crate) mod seal;
pub(crate) mod tier;

pub(crate) use connect::{open, server_version};
