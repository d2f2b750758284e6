//! The caller's own session id, as `open` reports it: the text of the first `sessionId` the
//! rewrite replaces, in every framing and gzipped, the rewrite itself unchanged.

use super::stream::gzip;
use super::*;

const PARTNER: &str = "urn:partner.soap.sforce.com";

async fn opened(body: ProxyBody, encoding: Encoding) -> Opened {
    open(body, &SoapApi::Partner, encoding, None, &limits())
        .await
        .unwrap()
}

/// What `open` reports for `input`: in one frame, 1-byte frames, two frames split at every
/// byte, and gzipped (whole and 1 byte at a time); all must agree, on the rewrite too.
async fn presented(input: &str) -> Option<String> {
    let one = opened(whole(input.as_bytes()), Encoding::Identity).await;
    let want = one.template.head(SID);
    let mut bodies = vec![
        (bytewise(input.as_bytes()), Encoding::Identity),
        (whole(&gzip(input.as_bytes())), Encoding::Gzip),
        (bytewise(&gzip(input.as_bytes())), Encoding::Gzip),
    ];
    for cut in 1..input.len() {
        let parts = vec![
            Bytes::copy_from_slice(&input.as_bytes()[..cut]),
            Bytes::copy_from_slice(&input.as_bytes()[cut..]),
        ];
        bodies.push((frames(parts), Encoding::Identity));
    }
    for (i, (body, encoding)) in bodies.into_iter().enumerate() {
        let other = opened(body, encoding).await;
        assert_eq!(other.presented, one.presented, "framing {i}");
        assert_eq!(other.template.head(SID), want, "framing {i}");
    }
    one.presented
}

fn with_id(id: &str) -> String {
    envelope(
        &format!(
            "<soapenv:Header><urn:CallOptions/><urn:SessionHeader>{id}</urn:SessionHeader>\
             </soapenv:Header>"
        ),
        QUERY,
    )
}

fn urn(text: &str) -> String {
    with_id(&format!("<urn:sessionId>{text}</urn:sessionId>"))
}

#[tokio::test]
async fn presented_plain() {
    let sid = "00D5g000001abcd!AQ4AQCallersOwnSessionId.x_y-z";
    assert_eq!(presented(&urn(sid)).await.as_deref(), Some(sid));
    // The default-namespace form, declared on the sessionId itself.
    let input = with_id(&format!("<sessionId xmlns=\"{PARTNER}\">{sid}</sessionId>"));
    assert_eq!(presented(&input).await.as_deref(), Some(sid));
}

#[tokio::test]
async fn presented_escaped() {
    assert_eq!(
        presented(&urn("00D&amp;x&#33;y&#x21;&lt;z&gt;&quot;&apos;"))
            .await
            .as_deref(),
        Some("00D&x!y!<z>\"'")
    );
    // An unknown entity does not unescape: none, and the rewrite goes on as before.
    assert_eq!(presented(&urn("00D&nope;x")).await, None);
}

#[tokio::test]
async fn presented_cdata() {
    assert_eq!(
        presented(&urn("<![CDATA[00D!a&amp;<b>]]>"))
            .await
            .as_deref(),
        Some("00D!a&amp;<b>")
    );
    assert_eq!(
        presented(&urn(" 00D<![CDATA[&]]>x&amp;<![CDATA[ y ]]> "))
            .await
            .as_deref(),
        Some("00D&x& y")
    );
}

#[tokio::test]
async fn presented_whitespace_around() {
    assert_eq!(
        presented(&urn("\r\n\t  00D!abc  \r\n ")).await.as_deref(),
        Some("00D!abc")
    );
    assert_eq!(
        presented(&urn("  00D abc\n")).await.as_deref(),
        Some("00D abc"),
        "inner whitespace is kept"
    );
}

#[tokio::test]
async fn presented_empty() {
    for id in [
        "<urn:sessionId/>",
        "<urn:sessionId />",
        "<urn:sessionId></urn:sessionId>",
        "<urn:sessionId> \r\n\t </urn:sessionId>",
        "<urn:sessionId><![CDATA[  ]]></urn:sessionId>",
    ] {
        assert_eq!(presented(&with_id(id)).await, None, "{id}");
    }
}

#[tokio::test]
async fn presented_absent() {
    assert_eq!(presented(&envelope("", QUERY)).await, None);
    assert_eq!(presented(&envelope("<soapenv:Header/>", QUERY)).await, None);
    assert_eq!(presented(&with_id("")).await, None);
    // Deeper than the SessionHeader's child, or a SessionHeader deeper than the Header's.
    assert_eq!(
        presented(&with_id(
            "<urn:x><urn:sessionId>00D!a</urn:sessionId></urn:x>"
        ))
        .await,
        None
    );
    let input = envelope(
        "<soapenv:Header><urn:Other><urn:SessionHeader><urn:sessionId>00D!a</urn:sessionId>\
         </urn:SessionHeader></urn:Other></soapenv:Header>",
        QUERY,
    );
    assert_eq!(presented(&input).await, None);
    // A sessionId in the Body is not the caller's session.
    let input = envelope(
        "",
        "<urn:SessionHeader><urn:sessionId>00D!a</urn:sessionId></urn:SessionHeader>",
    );
    assert_eq!(presented(&input).await, None);
}

#[tokio::test]
async fn presented_ignores_a_foreign_session_header() {
    let foreign = "<x:SessionHeader xmlns:x=\"urn:x\"><x:sessionId>foreign</x:sessionId>\
                   </x:SessionHeader><SessionHeader><sessionId>none</sessionId></SessionHeader>\
                   <urn:SessionHeader><x:sessionId xmlns:x=\"urn:x\">wrong</x:sessionId>\
                   </urn:SessionHeader>";
    let input = envelope(
        &format!("<soapenv:Header>{foreign}</soapenv:Header>"),
        QUERY,
    );
    assert_eq!(presented(&input).await, None);
    let input = envelope(
        &format!(
            "<soapenv:Header>{foreign}<urn:SessionHeader><urn:sessionId>00D!real\
             </urn:sessionId></urn:SessionHeader></soapenv:Header>"
        ),
        QUERY,
    );
    assert_eq!(presented(&input).await.as_deref(), Some("00D!real"));
    // The Partner SessionHeader sent to the Enterprise API is not its session.
    let input = urn("00D!partner");
    let opened = open(
        whole(input.as_bytes()),
        &SoapApi::Enterprise,
        Encoding::Identity,
        None,
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(opened.presented, None);
}

#[tokio::test]
async fn presented_is_the_first() {
    let input =
        with_id("<urn:sessionId>00D!one</urn:sessionId><urn:sessionId>00D!two</urn:sessionId>");
    assert_eq!(presented(&input).await.as_deref(), Some("00D!one"));
    let input = envelope(
        "<soapenv:Header><urn:SessionHeader><urn:sessionId>00D!one</urn:sessionId>\
         </urn:SessionHeader><urn:SessionHeader><urn:sessionId>00D!two</urn:sessionId>\
         </urn:SessionHeader></soapenv:Header>",
        QUERY,
    );
    assert_eq!(presented(&input).await.as_deref(), Some("00D!one"));
    // The first decides, even when it holds none.
    let input = with_id("<urn:sessionId/><urn:sessionId>00D!two</urn:sessionId>");
    assert_eq!(presented(&input).await, None);
}

#[tokio::test]
async fn presented_with_markup_inside_is_none_and_the_rewrite_unchanged() {
    for text in [
        "<!-- c -->00D!a",
        "00D!a<b>x</b>",
        "00D!a<b/>",
        "00D<?pi x?>!a",
    ] {
        let input = urn(text);
        assert_eq!(presented(&input).await, None, "{text}");
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        assert_eq!(out, input.replace(text, SID), "{text}");
    }
}

#[tokio::test]
async fn presented_is_bounded() {
    let long = "a".repeat(4096);
    let padded = format!("  \n{long}\n  ");
    let opened_ = |text: String| async move {
        opened(whole(urn(&text).as_bytes()), Encoding::Identity)
            .await
            .presented
    };
    assert_eq!(opened_(long.clone()).await.as_deref(), Some(long.as_str()));
    assert_eq!(opened_(padded).await.as_deref(), Some(long.as_str()));
    assert_eq!(opened_(format!("{long}b")).await, None);
    // The bound is on the unescaped text: 4096 `&amp;` are 4096 bytes.
    let amps = "&amp;".repeat(4096);
    assert_eq!(
        opened_(amps).await.as_deref(),
        Some("&".repeat(4096).as_str())
    );
    assert_eq!(opened_("&amp;".repeat(4097)).await, None);
    // 1 byte at a time, too.
    let input = urn(&format!("{long}b"));
    let one = opened(bytewise(input.as_bytes()), Encoding::Identity).await;
    assert_eq!(one.presented, None);
    let input = urn(&long);
    let one = opened(bytewise(input.as_bytes()), Encoding::Identity).await;
    assert_eq!(one.presented.as_deref(), Some(long.as_str()));
}

#[tokio::test]
async fn presented_is_not_in_debug() {
    let opened = opened(whole(urn("00D!secret").as_bytes()), Encoding::Identity).await;
    assert_eq!(opened.presented.as_deref(), Some("00D!secret"));
    let shown = format!("{opened:?}");
    assert!(!shown.contains("00D!secret"), "{shown}");
    assert!(shown.contains("presented: true"), "{shown}");
}
