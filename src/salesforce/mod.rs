//! All of Salesforce's wire knowledge: its domains and login audiences, the login (the JWT assertion, the token endpoint, and the
//! cache of sessions that keeps the proxy far below Salesforce's 3,600 logins per user per hour,
//! behind its login guard), where each API reads the session, the answers that say it expired,
//! the `Sforce-Limit-Info` header, and the hints for refused logins. The layers ask; only this
//! module knows how Salesforce says it.

pub(crate) mod assertion;
pub(crate) mod cache;
pub(crate) mod credential;
pub(crate) mod domains;
pub(crate) mod expiry;
pub(crate) mod guard;
pub(crate) mod hints;
pub(crate) mod limit_info;
pub(crate) mod token;
