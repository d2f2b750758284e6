//! The call in the Body: found past whatever precedes it within the bound, refused when it is
//! not (a `logout` must never slip past sfproxy to Salesforce with the shared session).

use super::refusals::{refused, refused_str};
use super::*;
use crate::salesforce::soap::envelope::error::Unstarted;

const LOGOUT: &str = "<urn:logout/>";

fn logout() -> Option<Operation> {
    Some(Operation {
        namespace: "urn:partner.soap.sforce.com".into(),
        name: "logout".into(),
    })
}

fn small(max_header_bytes: usize) -> Limits {
    Limits {
        max_header_bytes,
        max_body: 1 << 20,
    }
}

fn call_too_large(err: &EnvelopeError) -> bool {
    matches!(
        err,
        EnvelopeError::TooLarge {
            what: Unstarted::Call,
            ..
        }
    )
}

#[tokio::test]
async fn a_call_past_whitespace_comments_and_text_is_found() {
    for before in [
        " ".repeat(1000),
        format!("\r\n<!--{}-->\n", "c".repeat(900)),
        "<?pi data?><!-- a --><![CDATA[x]]>text &amp; more\n".to_owned(),
    ] {
        let input = envelope("", &format!("{before}{LOGOUT}"));
        let (out, op) = rewrite(&input, &SoapApi::Partner).await;
        assert_eq!(op, logout(), "{before:.40}");
        assert!(out.ends_with(&format!(
            "{before}{LOGOUT}</soapenv:Body>\n</soapenv:Envelope>\n"
        )));
    }
}

#[tokio::test]
async fn a_call_hidden_past_the_bound_is_too_large() {
    // The reviewer's cases, at the default 64 KiB: whitespace, a comment, whitespace inside the
    // call's own start tag.
    let cases = [
        format!("{}{LOGOUT}", " ".repeat(70_000)),
        format!("<!--{}-->{LOGOUT}", "c".repeat(70_000)),
        format!("<urn:logout{}/>", " ".repeat(70_000)),
        format!("{}<urn:logout/>", "text ".repeat(14_000)),
    ];
    for body in &cases {
        let input = envelope("", body);
        let err = refused(input.as_bytes(), &limits()).await;
        assert!(call_too_large(&err), "{body:.20}: {err}");
        assert_eq!(
            err.to_string(),
            "the call in the SOAP envelope's Body (the Body's first element) does not start \
             within the envelope's first 65536 bytes: sfproxy reads at most that much of an \
             envelope (max_header_bytes) to put the session in its Header and to see which call \
             it makes"
        );
    }
}

#[tokio::test]
async fn a_call_hidden_past_a_small_bound_is_too_large_in_every_framing() {
    let head =
        format!("<e:Envelope xmlns:e=\"{ENV}\" xmlns:urn=\"urn:partner.soap.sforce.com\"><e:Body>");
    for body in [
        format!("{}{LOGOUT}", " ".repeat(300)),
        format!("<!--{}-->{LOGOUT}", "c".repeat(300)),
        format!("<urn:logout{}/>", " ".repeat(300)),
    ] {
        let input = format!("{head}{body}</e:Body></e:Envelope>");
        let err = refused(input.as_bytes(), &small(head.len() + 200)).await;
        assert!(call_too_large(&err), "{body:.20}: {err}");
        // With room for it, the call is found.
        let (_, _, op) = send(
            whole(input.as_bytes()),
            &SoapApi::Partner,
            None,
            &small(input.len()),
        )
        .await
        .unwrap();
        assert_eq!(op, logout());
    }
}

#[tokio::test]
async fn what_is_not_xml_before_the_call_is_refused() {
    for bad in [
        "<!-x-->",
        "<![cdata[x]]>",
        "<!x>",
        "</urn:other>",
        "<?xml version=\"1.0\"?>",
        "<urn:a b=\"1\" b>",
    ] {
        let input = envelope("", &format!("{bad}{LOGOUT}"));
        let err = refused_str(&input).await;
        assert!(matches!(err, EnvelopeError::NotXml { .. }), "{bad}: {err}");
    }
    // Within a large bound too: a complete but wrong comment is not waited on.
    let input = envelope("", &format!("<!-x-->{}{LOGOUT}", " ".repeat(100_000)));
    let err = refused(input.as_bytes(), &limits()).await;
    assert!(matches!(err, EnvelopeError::NotXml { .. }), "{err}");
}

#[tokio::test]
async fn only_the_body_ending_means_no_call() {
    for body in ["", "  \n ", "<!-- nothing -->", "<![CDATA[]]>"] {
        let (_, op) = rewrite(&envelope("", body), &SoapApi::Partner).await;
        assert_eq!(op, None, "{body}");
    }
    // The request body ending after the Body start (an envelope cut short): no call to see,
    // Salesforce answers for it.
    let head =
        format!("<e:Envelope xmlns:e=\"{ENV}\" xmlns:urn=\"urn:partner.soap.sforce.com\"><e:Body>");
    for tail in ["", "   ", "<!-- x", "<urn:logout"] {
        let input = format!("{head}{tail}");
        for body in [whole(input.as_bytes()), bytewise(input.as_bytes())] {
            let (out, _, op) = send(body, &SoapApi::Partner, None, &limits())
                .await
                .unwrap();
            assert_eq!(op, None, "{tail}");
            let from = head.len() - "<e:Body>".len();
            assert!(out.ends_with(&input.as_bytes()[from..]));
        }
    }
}

#[tokio::test]
async fn bad_markup_before_the_body_is_not_xml_at_once() {
    // quick-xml reports `<!-x-->` and `<![cdata[` as unclosed: complete in the buffer, they are
    // wrong, not waiting for more bytes (which would end in Truncated or TooLarge).
    for bad in ["<!-x-->", "<![cdata[x]]>"] {
        let input = format!(
            "<e:Envelope xmlns:e=\"{ENV}\"><e:Header>{bad}</e:Header><e:Body/></e:Envelope>"
        );
        let err = refused_str(&input).await;
        assert!(matches!(err, EnvelopeError::NotXml { .. }), "{bad}: {err}");
    }
}
