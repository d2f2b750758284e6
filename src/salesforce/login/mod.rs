//! Legacy logins answered by sfproxy: SOAP `login()` and OAuth's password and client-credentials
//! grants, which Salesforce retires, kept working for integrations that cannot change. Here is
//! only the wire knowledge: the session ids sfproxy hands out ([`sealed`]), the token endpoint's
//! forms and answers ([`oauth`]), SOAP `login()` and its answers ([`soap`]), and the user's
//! `getUserInfo()` ([`user_info`]).

pub(crate) mod sealed;
