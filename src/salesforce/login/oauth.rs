//! The token endpoint's legacy grants (`password`, `client_credentials`): the form callers post
//! and the JSON Salesforce answers, so sfproxy can answer them itself in Salesforce's shape.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

pub(crate) const CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// What a token request asks for. `Debug` shows no password or secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    Password {
        username: String,
        password: String,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// Any other grant_type, as named ("" when there is none).
    Other(String),
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::Other(grant) => f.debug_tuple("Other").field(grant).finish(),
        }
    }
}

/// A token request's `application/x-www-form-urlencoded` body. Unknown fields are ignored, a
/// missing one reads as empty, and of a repeated one the first counts.
pub(crate) fn parse_form(body: &[u8]) -> Grant {
    let mut grant_type = None;
    let [mut username, mut password, mut client_id, mut client_secret] = [None, None, None, None];
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "grant_type" => &mut grant_type,
            "username" => &mut username,
            "password" => &mut password,
            "client_id" => &mut client_id,
            "client_secret" => &mut client_secret,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.into_owned());
        }
    }
    match grant_type.as_deref() {
        Some("password") => Grant::Password {
            username: username.unwrap_or_default(),
            password: password.unwrap_or_default(),
        },
        Some("client_credentials") => Grant::ClientCredentials {
            client_id: client_id.unwrap_or_default(),
            client_secret: client_secret.unwrap_or_default(),
        },
        _ => Grant::Other(grant_type.unwrap_or_default()),
    }
}

/// A granted token's answer.
pub(crate) struct Issued<'a> {
    pub(crate) access_token: &'a str,
    pub(crate) instance_url: &'a str,
    /// `https://login.salesforce.com/id/{orgId18}/{userId18}`.
    pub(crate) id: &'a str,
    pub(crate) issued_at_ms: u64,
    /// The key of the answer's signature: the connected app's consumer secret.
    pub(crate) secret: &'a str,
}

#[derive(Serialize)]
struct Success<'a> {
    access_token: &'a str,
    instance_url: &'a str,
    id: &'a str,
    token_type: &'a str,
    issued_at: &'a str,
    signature: &'a str,
}

/// Salesforce's 200 answer: `signature` is base64(HMAC-SHA256(secret, id + issued_at)).
pub(crate) fn success(issued: &Issued) -> Vec<u8> {
    let issued_at = issued.issued_at_ms.to_string();
    let key = hmac::Key::new(hmac::HMAC_SHA256, issued.secret.as_bytes());
    let tag = hmac::sign(&key, format!("{}{issued_at}", issued.id).as_bytes());
    let signature = STANDARD.encode(tag.as_ref());
    json(&Success {
        access_token: issued.access_token,
        instance_url: issued.instance_url,
        id: issued.id,
        token_type: "Bearer",
        issued_at: &issued_at,
        signature: &signature,
    })
}

/// Salesforce's 400 answer to wrong credentials.
pub(crate) fn invalid_grant() -> Vec<u8> {
    br#"{"error":"invalid_grant","error_description":"authentication failure"}"#.to_vec()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProxyFailure<'a> {
    #[serde(rename = "error")]
    error: &'a str,
    #[serde(rename = "error_description")]
    error_description: &'a str,
    error_code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

/// sfproxy's own refusal in OAuth's shape, with its code, message and hint beside.
pub(crate) fn proxy_failure(error: &str, code: &str, message: &str, hint: Option<&str>) -> Vec<u8> {
    json(&ProxyFailure {
        error,
        error_description: &format!("{code}: {message}"),
        error_code: code,
        message,
        hint,
    })
}

/// Salesforce's 400 answer to a grant type it does not know (whichever was named).
pub(crate) fn unsupported_grant(_grant: &str) -> Vec<u8> {
    br#"{"error":"unsupported_grant_type","error_description":"grant type not supported"}"#.to_vec()
}

/// Structs of strings always serialize; the fallback is never reached.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password_or_secret() {
        let body = b"grant_type=password&username=u&password=hunter2";
        assert!(!format!("{:?}", parse_form(body)).contains("hunter2"));
        let body = b"grant_type=client_credentials&client_id=erp&client_secret=hunter2";
        assert!(!format!("{:?}", parse_form(body)).contains("hunter2"));
    }

    #[test]
    fn reads_the_password_grant() {
        let body = b"grant_type=password&client_id=3MVG&client_secret=s&username=erp%40acme.com&password=p%26ss+w%3Dord&extra=1";
        assert_eq!(
            parse_form(body),
            Grant::Password {
                username: "erp@acme.com".to_owned(),
                password: "p&ss w=ord".to_owned()
            }
        );
        assert_eq!(
            parse_form(b"grant_type=password"),
            Grant::Password {
                username: String::new(),
                password: String::new()
            }
        );
        assert_eq!(
            parse_form(b"username=a&grant_type=password&username=b&password=x"),
            Grant::Password {
                username: "a".to_owned(),
                password: "x".to_owned()
            }
        );
    }

    #[test]
    fn reads_client_credentials_and_others() {
        assert_eq!(
            parse_form(b"grant_type=client_credentials&client_id=id&client_secret=s%2Bt"),
            Grant::ClientCredentials {
                client_id: "id".to_owned(),
                client_secret: "s+t".to_owned()
            }
        );
        assert_eq!(
            parse_form(
                b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x"
            ),
            Grant::Other("urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned())
        );
        assert_eq!(parse_form(b"username=a"), Grant::Other(String::new()));
        assert_eq!(parse_form(b""), Grant::Other(String::new()));
        assert_eq!(parse_form(b"\xff\xfe=%ff&&=="), Grant::Other(String::new()));
    }

    #[test]
    fn success_is_salesforce_shaped_and_signed() {
        let id = "https://login.salesforce.com/id/00D000000000001EAA/005000000000001AAA";
        let body = success(&Issued {
            access_token: "00D000000000001!AQ",
            instance_url: "https://acme.my.salesforce.com",
            id,
            issued_at_ms: 1_700_000_000_123,
            secret: "consumer-secret",
        });
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["access_token"], "00D000000000001!AQ");
        assert_eq!(value["instance_url"], "https://acme.my.salesforce.com");
        assert_eq!(value["id"], id);
        assert_eq!(value["token_type"], "Bearer");
        assert_eq!(value["issued_at"], "1700000000123");
        assert_eq!(value.as_object().unwrap().len(), 6);
        let signature = STANDARD
            .decode(value["signature"].as_str().unwrap())
            .unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"consumer-secret");
        let message = format!("{id}1700000000123");
        assert!(hmac::verify(&key, message.as_bytes(), &signature).is_ok());
        let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"another-secret");
        assert!(hmac::verify(&wrong, message.as_bytes(), &signature).is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2, through the same calls `success` makes.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            STANDARD.encode(tag.as_ref()),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn refusals_are_exact() {
        assert_eq!(
            invalid_grant(),
            br#"{"error":"invalid_grant","error_description":"authentication failure"}"#
        );
        assert_eq!(
            unsupported_grant("implicit"),
            br#"{"error":"unsupported_grant_type","error_description":"grant type not supported"}"#
        );
        let failure = proxy_failure(
            "invalid_grant",
            "SFPROXY_X",
            "a \"quoted\" message",
            Some("do y"),
        );
        assert_eq!(
            String::from_utf8(failure).unwrap(),
            r#"{"error":"invalid_grant","error_description":"SFPROXY_X: a \"quoted\" message","errorCode":"SFPROXY_X","message":"a \"quoted\" message","hint":"do y"}"#
        );
        let failure = proxy_failure("invalid_client", "C", "m", None);
        assert_eq!(
            String::from_utf8(failure).unwrap(),
            r#"{"error":"invalid_client","error_description":"C: m","errorCode":"C","message":"m"}"#
        );
    }
}
