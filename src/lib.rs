//! sfproxy: a forward authenticating HTTP proxy for Salesforce.
//!
//! Legacy callers send plain, unauthenticated REST calls; sfproxy identifies the caller, picks a
//! route (org + integration user), gets a session with the OAuth 2.0 JWT bearer flow, and
//! forwards the call to the org's instance over TLS. Modules are listed in the order a request
//! meets them (docs/architecture.md has the map); only what the binary and the tests use is
//! public.

// Start-up: the validated config, and the running proxy that swaps it on reload.
pub mod config;

pub mod app;

// Accepting connections, the threads that serve them, then the tower stack: trace, rescue,
// limits, identify, route, session, replay, upstream; what a request carries between them.
mod server;

mod workers;

mod stack;

mod context;

mod layer;

// Salesforce's wire knowledge: logins, sessions, expiry answers, where the credential goes.
mod salesforce;

mod upstream;

// What several replicas share through Redis: sessions, their logins, the budget, failures.
mod shared;

// Shared by every stage: the body type, errors and their answers, metrics, log lines.
mod body;

mod error;

mod metrics;

pub mod logs;

mod tap;

mod framing;

// Beside the request path: the admin port, setup tools, the demo and its stand-in org.
mod admin;

pub mod check;

pub mod intercept;

pub mod keygen;

pub mod demo;

pub mod mock_org;

pub mod pki;
