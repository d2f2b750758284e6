//! sfproxy: a forward authenticating HTTP proxy for Salesforce.
//!
//! Legacy callers send plain, unauthenticated REST calls; sfproxy identifies the caller, picks a
//! route (org + integration user), gets a session with the OAuth 2.0 JWT bearer flow, and
//! forwards the call to the org's instance over TLS. Modules are listed in the order a request
//! meets them.

// Start-up: the validated config, and the running proxy that swaps it on reload.
pub mod config;

pub mod app;

// Accepting connections, the threads that serve them, then the tower stack: trace, rescue,
// identify, route, session.
pub mod server;

pub mod context;

pub mod workers;

pub mod stack;

pub mod layer;

// Sessions from Salesforce's token endpoint, and the instance the request goes to.
pub mod salesforce;

pub mod upstream;

// Shared by every stage: the body type, errors and their answers, metrics, log lines.
pub mod body;

pub mod error;

pub mod metrics;

pub mod logs;

pub mod tap;

pub mod framing;

// Beside the request path: the admin port, setup tools, the demo and its stand-in org.
pub mod admin;

pub mod check;

pub mod intercept;

pub mod keygen;

pub mod demo;

pub mod mock_org;

pub mod pki;
