//! Talking to Salesforce's login service: the JWT assertion, the token endpoint, and the cache
//! of sessions that keeps the proxy far below Salesforce's 3,600 logins per user per hour.

pub mod assertion;
pub mod cache;
pub mod guard;
pub mod token;
