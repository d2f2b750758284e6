//! What the operator should do about a refused login: one hint per documented refusal of the
//! token endpoint (`../shared/salesforce.md`), given in the answer's `hint` and by
//! `sfproxy check`.

/// What the operator should change for each documented token endpoint refusal
/// (`../shared/salesforce.md`); matched on the description Salesforce sends.
pub(crate) fn login_hint(error: &str, description: &str) -> Option<&'static str> {
    let d = description.to_ascii_lowercase();
    let hint = match error {
        "invalid_grant" if d.contains("not admin approved") => {
            "pre-authorize the user: Permitted Users = \"Admin approved users are pre-authorized\" \
             and add the user's profile or permission set to the connected app"
        }
        "invalid_grant" if d.contains("inactive user") => {
            "the integration user is frozen or deactivated: unfreeze or reactivate it in Setup > \
             Users, or route to an active user"
        }
        "invalid_grant" if d.contains("approved this consumer") => {
            "in the connected app's policies set Permitted Users to \"Admin approved users are \
             pre-authorized\" and add the user's profile or permission set"
        }
        "invalid_grant" if d.contains("audience") => {
            "set the org's audience to https://login.salesforce.com, or https://test.salesforce.com \
             for sandboxes; not the My Domain URL"
        }
        "invalid_grant" if d.contains("expired") => {
            "the assertion's exp was already past when Salesforce read it: sync this host's clock \
             (NTP)"
        }
        "invalid_grant" if d.contains("invalid assertion") => {
            "upload the certificate of this private key to the connected app (Use digital \
             signatures), and check the username"
        }
        "invalid_grant" if d.contains("ip restricted") => {
            "relax the connected app's IP policy or allow this proxy's address in the profile's \
             login IP ranges"
        }
        "invalid_grant" if d.contains("rate exceeded") => {
            "Salesforce allows 3,600 logins per user per hour; wait, and check that nothing else \
             logs in as this user"
        }
        "expired_assertion" => {
            "the assertion's exp was already past when Salesforce read it: sync this host's clock \
             (NTP); exp is in UTC seconds"
        }
        "invalid_scope" => {
            "the connected app does not allow the requested scope: select \"Manage user data via \
             APIs (api)\" in the app's Selected OAuth Scopes"
        }
        "invalid_client_id" => {
            "check the org's client_id (the connected app's consumer key) and its login_url"
        }
        "invalid_app_access" => "assign the connected app to the user's profile or permission set",
        "invalid_request" if d.contains("preauthorized") || d.contains("refresh_token scope") => {
            "pre-authorize the user: Permitted Users = \"Admin approved users are pre-authorized\" \
             and add the user's profile or permission set to the app"
        }
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_refusal_has_a_hint() {
        for (error, description) in [
            ("invalid_grant", "user hasn't approved this consumer"),
            ("invalid_grant", "audience is invalid"),
            ("invalid_grant", "expired authorization code"),
            ("invalid_grant", "invalid assertion"),
            ("invalid_client_id", "client identifier invalid"),
            ("invalid_grant", "ip restricted"),
            ("invalid_grant", "login rate exceeded"),
            (
                "invalid_app_access",
                "user is not admin approved to access this app",
            ),
            ("invalid_scope", "the requested scope is not allowed"),
            ("expired_assertion", "assertion expired"),
            ("invalid_grant", "inactive user"),
            (
                "invalid_grant",
                "user is not admin approved to access this app",
            ),
        ] {
            assert!(
                login_hint(error, description).is_some(),
                "{error} {description}"
            );
        }
    }
}
