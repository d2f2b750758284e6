//! All of Salesforce's wire knowledge: the login (the JWT assertion, the token endpoint, and the
//! cache of sessions that keeps the proxy far below Salesforce's 3,600 logins per user per hour,
//! behind its login guard), where each API reads the session, the answers that say it expired,
//! the `Sforce-Limit-Info` header, and the hints for refused logins. The layers ask; only this
//! module knows how Salesforce says it.

pub mod assertion;
pub mod cache;
pub mod credential;
pub mod expiry;
pub mod guard;
pub mod hints;
pub mod limit_info;
pub mod token;
