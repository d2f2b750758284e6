//! sfproxy: a forward authenticating HTTP proxy for Salesforce.
//!
//! Legacy callers send plain, unauthenticated REST calls; sfproxy identifies the caller, picks a
//! route (org + integration user), gets a session with the OAuth 2.0 JWT bearer flow, and
//! forwards the call to the org's instance over TLS. Modules are listed in the order a request
//! meets them.

pub mod body;
pub mod config;
pub mod demo;
pub mod error;
pub mod layer;
pub mod mock_org;
pub mod pki;
pub mod salesforce;
pub mod server;
pub mod stack;
pub mod upstream;
