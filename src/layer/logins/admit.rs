//! The session ids sfproxy handed out, where Salesforce reads a session: `Authorization:
//! Bearer`/`OAuth` (REST), `X-SFDC-Session` (Bulk API 1.0), and, for SOAP, the envelope's
//! `SessionHeader` (read by the SOAP call's opening). An id names its client and route: the
//! request is that client's, from its networks, on that route, or it is refused with
//! `INVALID_SESSION_ID`. The log says why; never the id.

use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use http::{HeaderMap, header};

use super::desk::{Desk, From, now};
use crate::{
    context::RouteMatch,
    error::ProxyError,
    salesforce::{
        credential::X_SFDC_SESSION,
        login::sealed::{self, Unsealed},
    },
};

/// The session id a REST or Bulk 1.0 request carries, taken off it: sfproxy's ids never reach
/// Salesforce (the session stage attaches the real session in their place).
pub(super) fn from_headers(headers: &mut HeaderMap) -> Option<String> {
    let bulk = headers.remove(&X_SFDC_SESSION);
    let authorization = headers.remove(header::AUTHORIZATION);
    let from_authorization = authorization.as_ref().and_then(|value| {
        let text = value.to_str().ok()?.trim();
        let (scheme, id) = text.split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
            .then(|| id.trim().to_owned())
    });
    from_authorization.or_else(|| {
        bulk.as_ref()
            .and_then(|value| value.to_str().ok())
            .map(|id| id.trim().to_owned())
    })
}

/// The client and route `presented` names, when it is one of sfproxy's, alive, and good for this
/// request; `bulk_v1`: the request is Bulk API 1.0's, which answers a refusal in its own shape.
pub(super) fn admit(
    desk: &Desk,
    from: &From,
    candidates: &[RouteMatch],
    presented: &str,
    bulk_v1: bool,
) -> Result<(Arc<str>, RouteMatch), ProxyError> {
    let refused = |reason: &str| {
        tracing::warn!(
            source = %from.source,
            reason,
            "refused a session id on a route with logins = true; answered INVALID_SESSION_ID so \
             the client logs in again"
        );
        ProxyError::InvalidSession { bulk_v1 }
    };
    let handout = match sealed::open(&desk.key, presented, now()) {
        Ok(handout) => handout,
        Err(Unsealed::Expired) => return Err(refused("the handed-out session id expired")),
        Err(Unsealed::Invalid) => {
            return Err(refused(
                "not a session id sfproxy handed out (a stale Salesforce session, tampered with, \
                 or sealed with another logins key)",
            ));
        }
    };
    let Some(client) = desk.clients.iter().find(|c| *c.name == *handout.client) else {
        return Err(refused("the id's client is no longer configured"));
    };
    let secret = client.secret_sha256.as_ref().map(sealed::secret_tag);
    if secret.is_none_or(|tag| verify_slices_are_equal(&tag, &handout.secret).is_err()) {
        return Err(refused(
            "the client's secret changed since the id was handed out",
        ));
    }
    if let Err(reason) = from.may_be(client) {
        return Err(refused(reason));
    }
    let chosen = candidates.iter().find(|m| {
        *m.route.name == *handout.route
            && m.route.user == handout.user
            && m.route.admits(&client.name)
    });
    match chosen {
        Some(chosen) => Ok((client.name.clone(), chosen.clone())),
        None => Err(refused(
            "the id's route does not serve this host and path for its client (or no longer has \
             logins = true)",
        )),
    }
}
