//! Which `SessionHeader` and `sessionId` are the caller's: only those in the API's namespace; what
//! sfproxy writes in them: the whole `sessionId`, keeping only namespace declarations.

use super::refusals::refused_str;
use super::*;

const PARTNER: &str = "urn:partner.soap.sforce.com";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

fn header(inner: &str) -> String {
    format!("<soapenv:Header>{inner}</soapenv:Header>")
}

#[tokio::test]
async fn a_session_header_in_another_namespace_is_kept_and_the_real_one_inserted() {
    for foreign in [
        "<x:SessionHeader xmlns:x=\"urn:x\"/>",
        "<x:SessionHeader xmlns:x=\"urn:x\"><x:sessionId>mine</x:sessionId></x:SessionHeader>",
        "<SessionHeader><sessionId>none</sessionId></SessionHeader>",
        "<urn:SessionHeader xmlns:urn=\"urn:other\"><urn:sessionId/></urn:SessionHeader>",
        "<zz:SessionHeader><zz:sessionId/></zz:SessionHeader>",
        // Attributes on a foreign one are its business.
        "<x:SessionHeader xmlns:x=\"urn:x\" soapenv:mustUnderstand=\"1\"/>",
    ] {
        let input = envelope(&header(foreign), QUERY);
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        let want = header(&format!("{}{foreign}", inserted(PARTNER)));
        assert_eq!(out, envelope(&want, QUERY), "{foreign}");
    }
}

#[tokio::test]
async fn the_namespace_is_the_apis() {
    // A Partner SessionHeader sent to the Enterprise API is not the Enterprise one.
    let partner = "<urn:SessionHeader><urn:sessionId>old</urn:sessionId></urn:SessionHeader>";
    let input = envelope(&header(partner), QUERY);
    let (out, _) = rewrite(&input, &SoapApi::Enterprise).await;
    let want = header(&format!(
        "{}{partner}",
        inserted("urn:enterprise.soap.sforce.com")
    ));
    assert_eq!(out, envelope(&want, QUERY));
    // Declared on the Header, or by a default namespace on the Envelope, it is.
    let input = format!(
        "<e:Envelope xmlns:e=\"{ENV}\" xmlns=\"{PARTNER}\"><e:Header xmlns:p=\"{PARTNER}\">\
         <p:SessionHeader><p:sessionId/></p:SessionHeader><SessionHeader/></e:Header>\
         <e:Body/></e:Envelope>"
    );
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<e:Envelope xmlns:e=\"{ENV}\" xmlns=\"{PARTNER}\"><e:Header xmlns:p=\"{PARTNER}\">\
         <p:SessionHeader><p:sessionId>{SID}</p:sessionId></p:SessionHeader><SessionHeader>\
         <sessionId>{SID}</sessionId></SessionHeader></e:Header><e:Body/></e:Envelope>"
    );
    assert_eq!(out, want);
    // An escaped namespace is the same namespace.
    let apex =
        "<a:SessionHeader xmlns:a=\"http://soap.sforce.com/schemas/class/&#79;rderService\"/>";
    let input = envelope(&header(apex), "");
    let (out, _) = rewrite(
        &input,
        &SoapApi::Apex {
            class: "OrderService".into(),
        },
    )
    .await;
    let want = header(&format!(
        "<a:SessionHeader xmlns:a=\"http://soap.sforce.com/schemas/class/&#79;rderService\">\
         <a:sessionId>{SID}</a:sessionId></a:SessionHeader>"
    ));
    assert_eq!(out, envelope(&want, ""));
}

#[tokio::test]
async fn a_session_id_in_another_namespace_is_kept_and_one_inserted() {
    for (sent, want) in [
        (
            "<urn:SessionHeader><x:sessionId xmlns:x=\"urn:x\">a</x:sessionId></urn:SessionHeader>"
                .to_owned(),
            format!(
                "<urn:SessionHeader><x:sessionId xmlns:x=\"urn:x\">a</x:sessionId>\
                 <urn:sessionId>{SID}</urn:sessionId></urn:SessionHeader>"
            ),
        ),
        (
            format!(
                "<SessionHeader xmlns=\"{PARTNER}\"><sessionId xmlns=\"\">a</sessionId>\
                 </SessionHeader>"
            ),
            format!(
                "<SessionHeader xmlns=\"{PARTNER}\"><sessionId xmlns=\"\">a</sessionId>\
                 <sessionId>{SID}</sessionId></SessionHeader>"
            ),
        ),
        (
            // Deeper than a direct child: content.
            "<urn:SessionHeader><urn:x><urn:sessionId>a</urn:sessionId></urn:x></urn:SessionHeader>"
                .to_owned(),
            format!(
                "<urn:SessionHeader><urn:x><urn:sessionId>a</urn:sessionId></urn:x>\
                 <urn:sessionId>{SID}</urn:sessionId></urn:SessionHeader>"
            ),
        ),
    ] {
        let input = envelope(&header(&sent), QUERY);
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        assert_eq!(out, envelope(&header(&want), QUERY), "{sent}");
    }
}

#[tokio::test]
async fn the_session_id_is_written_whole_with_only_its_namespace_declarations() {
    let sh = |id: &str| header(&format!("<urn:SessionHeader>{id}</urn:SessionHeader>"));
    for (sent, want) in [
        (
            "<urn:sessionId xsi:type=\"xsd:int\"/>".to_owned(),
            format!("<urn:sessionId>{SID}</urn:sessionId>"),
        ),
        (
            format!("<urn:sessionId xmlns:xsi=\"{XSI}\" xsi:nil=\"true\">old</urn:sessionId >"),
            format!("<urn:sessionId xmlns:xsi=\"{XSI}\">{SID}</urn:sessionId>"),
        ),
        (
            format!(
                "<sessionId a=\"1\" xmlns='{PARTNER}'\n  xmlns:q = \"urn:q\" b='2'>x<b/></sessionId>"
            ),
            format!("<sessionId xmlns='{PARTNER}' xmlns:q = \"urn:q\">{SID}</sessionId>"),
        ),
        (
            "<urn:sessionId\r\n/>".to_owned(),
            format!("<urn:sessionId>{SID}</urn:sessionId>"),
        ),
    ] {
        let input = envelope(&sh(&sent), QUERY);
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        assert_eq!(out, envelope(&sh(&want), QUERY), "{sent}");
    }
}

#[tokio::test]
async fn a_session_header_with_other_attributes_is_refused() {
    for (attrs, name) in [
        (" soapenv:mustUnderstand=\"1\"", "soapenv:mustUnderstand"),
        (
            " soapenv:actor=\"http://schemas.xmlsoap.org/soap/actor/next\"",
            "soapenv:actor",
        ),
        (
            " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\"",
            "xsi:nil",
        ),
        (" id='h1'", "id"),
        // A caller's bytes in the message are filtered: no control characters.
        (" a\u{1}b=\"1\"", "ab"),
    ] {
        for sh in [
            format!("<urn:SessionHeader{attrs}/>"),
            format!("<urn:SessionHeader{attrs}><urn:sessionId/></urn:SessionHeader>"),
        ] {
            let err = refused_str(&envelope(&header(&sh), QUERY)).await;
            assert!(
                matches!(&err, EnvelopeError::SessionHeaderAttribute { name: n } if n == name),
                "{sh}: {err}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "the SOAP envelope's SessionHeader carries the attribute {name}, which would \
                     make Salesforce ignore the session sfproxy writes in it; send the \
                     SessionHeader without it (namespace declarations are fine)"
                )
            );
        }
    }
    // Namespace declarations alone are fine.
    let sh = format!("<urn:SessionHeader xmlns:urn=\"{PARTNER}\" xmlns:x=\"urn:x\"/>");
    let (out, _) = rewrite(&envelope(&header(&sh), QUERY), &SoapApi::Partner).await;
    let want = header(&format!(
        "<urn:SessionHeader xmlns:urn=\"{PARTNER}\" xmlns:x=\"urn:x\"><urn:sessionId>{SID}\
         </urn:sessionId></urn:SessionHeader>"
    ));
    assert_eq!(out, envelope(&want, QUERY));
    // A long name is shown shortened.
    let long = "a".repeat(500);
    let err = refused_str(&envelope(
        &header(&format!("<urn:SessionHeader {long}=\"1\"/>")),
        QUERY,
    ))
    .await;
    let EnvelopeError::SessionHeaderAttribute { name } = err else {
        panic!("{err}");
    };
    assert_eq!(name, format!("{}…", "a".repeat(120)));
}

#[test]
fn parser_errors_are_shown_filtered() {
    use super::super::markup::shown_error;
    assert_eq!(shown_error(&"bad \u{1}name\n\t`x`"), "bad name`x`");
    let long = shown_error(&"e".repeat(1000));
    assert_eq!(long, format!("{}…", "e".repeat(240)));
}
