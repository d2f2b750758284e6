//! What is refused, and what the caller reads.

use super::*;
use crate::salesforce::soap::envelope::error::Unstarted;

/// The refusal for `input`, which must be the same in one frame, in 1-byte frames and (when it
/// is small) in two frames split at every byte.
pub(super) async fn refused(input: &[u8], limits: &Limits) -> EnvelopeError {
    let api = SoapApi::Partner;
    let Err(err) = send(whole(input), &api, None, limits).await else {
        panic!("{} was accepted", String::from_utf8_lossy(input));
    };
    let Err(bytewise_err) = send(bytewise(input), &api, None, limits).await else {
        panic!(
            "{} was accepted in 1-byte frames",
            String::from_utf8_lossy(input)
        );
    };
    assert_eq!(err.to_string(), bytewise_err.to_string());
    if input.len() < 1200 {
        for cut in 1..input.len() {
            let parts = vec![
                Bytes::copy_from_slice(&input[..cut]),
                Bytes::copy_from_slice(&input[cut..]),
            ];
            match send(frames(parts), &api, None, limits).await {
                Err(split_err) => {
                    assert_eq!(split_err.to_string(), err.to_string(), "split at {cut}")
                }
                Ok(_) => panic!(
                    "{} was accepted split at {cut}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
    }
    err
}

pub(super) async fn refused_str(input: &str) -> EnvelopeError {
    refused(input.as_bytes(), &limits()).await
}

#[tokio::test]
async fn a_doctype_is_refused_wherever_it_is() {
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \
                \"&lol;&lol;&lol;\">]><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">\
                <soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>";
    let err = refused_str(bomb).await;
    assert!(matches!(err, EnvelopeError::Doctype));
    assert_eq!(
        err.to_string(),
        "the request body has a DOCTYPE declaration, which a SOAP message must not have: \
         sfproxy refuses it (it never expands entities)"
    );
    let xxe = format!(
        "<!doctype x SYSTEM \"file:///etc/passwd\"><e:Envelope xmlns:e=\"{ENV}\"><e:Body/></e:Envelope>"
    );
    assert!(matches!(refused_str(&xxe).await, EnvelopeError::Doctype));
    let inside = format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><e:Header><!DOCTYPE x></e:Header><e:Body/></e:Envelope>"
    );
    assert!(matches!(refused_str(&inside).await, EnvelopeError::Doctype));
}

#[tokio::test]
async fn other_encodings_are_refused() {
    let latin = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><e:Envelope xmlns:e=\"{ENV}\"><e:Body/></e:Envelope>"
    );
    let err = refused_str(&latin).await;
    assert_eq!(
        err.to_string(),
        "the request body is not UTF-8: its XML declaration names the encoding ISO-8859-1; \
         sfproxy accepts SOAP envelopes in UTF-8 only"
    );
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            format!("<e:Envelope xmlns:e=\"{ENV}\"><e:Body/></e:Envelope>")
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let err = refused(&utf16, &limits()).await;
    assert!(matches!(err, EnvelopeError::Encoding(_)));
    assert!(
        err.to_string()
            .contains("UTF-16 (little-endian) byte order mark"),
        "{err}"
    );
    let no_bom = &utf16[2..];
    assert!(matches!(
        refused(no_bom, &limits()).await,
        EnvelopeError::Encoding(_)
    ));
    let be: Vec<u8> = [0xfe, 0xff, 0, b'<'].to_vec();
    assert!(matches!(
        refused(&be, &limits()).await,
        EnvelopeError::Encoding(_)
    ));
}

#[tokio::test]
async fn what_is_not_xml_is_refused() {
    let err = refused_str("{\"a\":1}").await;
    assert!(matches!(err, EnvelopeError::NotXml { .. }));
    assert_eq!(
        err.to_string(),
        "the request body is not XML: it does not start with '<'; a SOAP call's body must be a \
         SOAP 1.1 envelope in UTF-8"
    );
    assert!(matches!(
        refused_str("  \r\nhello").await,
        EnvelopeError::NotXml { .. }
    ));
    let mismatched = format!("<e:Envelope xmlns:e=\"{ENV}\"><e:Header></e:Head></e:Envelope>");
    let err = refused_str(&mismatched).await;
    assert!(
        err.to_string()
            .contains("</e:Head> does not match <e:Header>"),
        "{err}"
    );
    let bang = format!("<e:Envelope xmlns:e=\"{ENV}\"><!x><e:Body/></e:Envelope>");
    assert!(matches!(
        refused_str(&bang).await,
        EnvelopeError::NotXml { .. }
    ));
    let attr = format!("<e:Envelope xmlns:e=\"{ENV}\" broken><e:Body/></e:Envelope>");
    assert!(matches!(
        refused_str(&attr).await,
        EnvelopeError::NotXml { .. }
    ));
}

#[tokio::test]
async fn the_root_must_be_a_soap_1_1_envelope() {
    let err = refused_str("<foo/>").await;
    assert_eq!(
        err.to_string(),
        "the request body is not a SOAP 1.1 envelope: its root element is foo (in no namespace), \
         not Envelope in http://schemas.xmlsoap.org/soap/envelope/"
    );
    let err = refused_str("<x:Foo xmlns:x=\"urn:x\"><x:Body/></x:Foo>").await;
    assert_eq!(
        err.to_string(),
        "the request body is not a SOAP 1.1 envelope: its root element is {urn:x}Foo, not \
         Envelope in http://schemas.xmlsoap.org/soap/envelope/"
    );
    let soap12 = "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\">\
                  <env:Body/></env:Envelope>";
    let err = refused_str(soap12).await;
    assert!(matches!(err, EnvelopeError::NoEnvelope { .. }));
    assert!(err.to_string().ends_with(
        "not Envelope in http://schemas.xmlsoap.org/soap/envelope/; SOAP 1.2 is not accepted: \
         Salesforce's SOAP API takes SOAP 1.1"
    ));
    let undeclared = refused_str("<soapenv:Envelope><soapenv:Body/></soapenv:Envelope>").await;
    assert!(
        undeclared
            .to_string()
            .contains("its prefix soapenv is not declared"),
        "{undeclared}"
    );
}

#[tokio::test]
async fn an_envelope_without_a_body_is_refused() {
    let err = refused_str(&format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><e:Header/></e:Envelope>"
    ))
    .await;
    assert!(matches!(err, EnvelopeError::NoBody));
    let err = refused_str(&format!("<e:Envelope xmlns:e=\"{ENV}\"/>")).await;
    assert!(matches!(err, EnvelopeError::NoBody));
    // A Body in another namespace is not the Body.
    let err = refused_str(&format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><x:Body xmlns:x=\"urn:x\"/></e:Envelope>"
    ))
    .await;
    assert!(matches!(err, EnvelopeError::NoBody));
}

#[tokio::test]
async fn a_body_that_ends_before_the_body_element_is_truncated() {
    let full = format!("<e:Envelope xmlns:e=\"{ENV}\"><e:Header><a>text</a></e:Header><e:Body>");
    for cut in [0, 1, 5, 20, full.len() - 1] {
        let err = refused(&full.as_bytes()[..cut], &limits()).await;
        assert!(
            matches!(err, EnvelopeError::Truncated),
            "cut at {cut}: {err}"
        );
    }
    assert_eq!(
        EnvelopeError::Truncated.to_string(),
        "the request body ended before the SOAP envelope's Body started"
    );
}

#[tokio::test]
async fn a_body_start_past_the_bound_is_too_large() {
    let padding = format!("<!--{}-->", "x".repeat(2000));
    let input = format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><e:Header>{padding}</e:Header><e:Body><q/></e:Body></e:Envelope>"
    );
    let small = Limits {
        max_header_bytes: 1000,
        max_body: 1 << 20,
    };
    let err = refused(input.as_bytes(), &small).await;
    assert!(
        matches!(
            err,
            EnvelopeError::TooLarge {
                limit: 1000,
                what: Unstarted::Body
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the SOAP envelope's Body does not start within its first 1000 bytes: sfproxy reads at \
         most that much of an envelope (max_header_bytes) to put the session in its Header"
    );
    // The Body start tag ending exactly at the bound is within it; the call it holds is not.
    let head = format!("<e:Envelope xmlns:e=\"{ENV}\"><e:Body>");
    let exact = Limits {
        max_header_bytes: head.len(),
        max_body: 1 << 20,
    };
    let input = format!("{head}<q/></e:Body></e:Envelope>");
    let err = refused(input.as_bytes(), &exact).await;
    assert!(
        matches!(
            err,
            EnvelopeError::TooLarge {
                what: Unstarted::Call,
                ..
            }
        ),
        "{err}"
    );
    // The call's start tag ending exactly at the bound is within it.
    let with_call = Limits {
        max_header_bytes: head.len() + "<q/>".len(),
        max_body: 1 << 20,
    };
    let (out, _, op) = send(whole(input.as_bytes()), &SoapApi::Partner, None, &with_call)
        .await
        .unwrap();
    assert_eq!(op.map(|o| o.name), Some("q".into()));
    assert!(out.ends_with(b"<e:Body><q/></e:Body></e:Envelope>"));
    let one_less = Limits {
        max_header_bytes: head.len() - 1,
        max_body: 1 << 20,
    };
    let err = refused(input.as_bytes(), &one_less).await;
    assert!(
        matches!(
            err,
            EnvelopeError::TooLarge {
                what: Unstarted::Body,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_caller_body_is_a_body_error() {
    let head =
        Bytes::from_static(b"<e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\">");
    let stream = futures_util::stream::iter([
        Ok(Frame::data(head)),
        Err(BodyError("connection reset".into())),
    ]);
    let body = StreamBody::new(stream).boxed_unsync();
    let err = open(body, &SoapApi::Partner, Encoding::Identity, None, &limits())
        .await
        .unwrap_err();
    assert!(matches!(err, EnvelopeError::Body(_)));
    assert_eq!(
        err.to_string(),
        "reading the request body failed: connection reset"
    );
}
