//! The SOAP API's wire knowledge: which requests are SOAP calls and of which API, the envelope's
//! `SessionHeader` (where SOAP reads the session, never from a header), and the faults it answers
//! with (Salesforce's `INVALID_SESSION_ID`, and sfproxy's own `sf:PROXY_...` refusals).

pub(crate) mod api;
pub(crate) mod call;
pub(crate) mod envelope;
pub(crate) mod fault;
pub(crate) mod inflating;
