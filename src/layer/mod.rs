//! The middleware of the request path, one per file, in the order a request meets them
//! (`stack.rs` assembles them).

pub(crate) mod identify;
pub(crate) mod limits;
pub(crate) mod logins;
pub(crate) mod replay;
pub(crate) mod rescue;
pub(crate) mod route;
pub(crate) mod session;
pub(crate) mod trace;
