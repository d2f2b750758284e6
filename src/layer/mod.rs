//! The middleware of the request path, one per file, in the order a request meets them
//! (`stack.rs` assembles them).

pub mod identify;
pub mod limits;
pub mod replay;
pub mod rescue;
pub mod route;
pub mod session;
pub mod trace;
