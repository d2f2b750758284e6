//! The rewrite, byte for byte: every case is checked with the body in one frame, in 1-byte
//! frames, and (for the small cases) in two frames split at every byte.

mod calls;
mod presented;
mod refusals;
mod session_header;
mod stream;

use super::*;

pub(super) const SID: &str = "00D5g000001abcd!AQ4AQNotARealSessionIdButLongEnough";
pub(super) const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

pub(super) fn limits() -> Limits {
    Limits {
        max_header_bytes: 64 * 1024,
        max_body: 1 << 30,
    }
}

pub(super) fn frames(parts: Vec<Bytes>) -> ProxyBody {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> =
        parts.into_iter().map(|p| Ok(Frame::data(p))).collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

pub(super) fn bytewise(input: &[u8]) -> ProxyBody {
    frames(
        input
            .iter()
            .map(|b| Bytes::copy_from_slice(&[*b]))
            .collect(),
    )
}

pub(super) fn whole(input: &[u8]) -> ProxyBody {
    body::full(input.to_vec())
}

/// What goes upstream for `body`: the bytes, the Content-Length, the operation.
pub(super) async fn send(
    body: ProxyBody,
    api: &SoapApi,
    content_length: Option<u64>,
    limits: &Limits,
) -> Result<(Vec<u8>, Option<u64>, Option<Operation>), EnvelopeError> {
    let opened = open(body, api, Encoding::Identity, content_length, limits).await?;
    let (out, len) = opened.template.body(SID, opened.rest);
    let out = out.collect().await.map_err(EnvelopeError::Body)?.to_bytes();
    Ok((out.to_vec(), len, opened.operation))
}

/// Rewrites `input` in every framing; all must agree. Returns the output and the operation.
async fn rewrite(input: &str, api: &SoapApi) -> (String, Option<Operation>) {
    let len = Some(input.len() as u64);
    let (out, cl, op) = send(whole(input.as_bytes()), api, len, &limits())
        .await
        .unwrap();
    assert_eq!(cl, Some(out.len() as u64), "Content-Length is the output's");
    let (bytes, _, op1) = send(bytewise(input.as_bytes()), api, len, &limits())
        .await
        .unwrap();
    assert_eq!(bytes, out, "1-byte frames give the same bytes");
    assert_eq!(op1, op);
    if input.len() < 1200 {
        for cut in 1..input.len() {
            let parts = vec![
                Bytes::copy_from_slice(&input.as_bytes()[..cut]),
                Bytes::copy_from_slice(&input.as_bytes()[cut..]),
            ];
            let (bytes, _, _) = send(frames(parts), api, len, &limits()).await.unwrap();
            assert_eq!(bytes, out, "split at byte {cut}");
        }
    }
    (String::from_utf8(out).unwrap(), op)
}

fn envelope(header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope \
         xmlns:soapenv=\"{ENV}\" xmlns:urn=\"urn:partner.soap.sforce.com\">\n{header}\
         <soapenv:Body>{body}</soapenv:Body>\n</soapenv:Envelope>\n"
    )
}

const QUERY: &str = "\n    <urn:query>\n      <urn:queryString>SELECT Id FROM Account</urn:queryString>\n    </urn:query>\n  ";

fn inserted(ns: &str) -> String {
    format!("<SessionHeader xmlns=\"{ns}\"><sessionId>{SID}</sessionId></SessionHeader>")
}

#[tokio::test]
async fn no_header_gets_one_before_the_body() {
    let input = envelope("  ", QUERY);
    let (out, op) = rewrite(&input, &SoapApi::Partner).await;
    let header = format!(
        "<soapenv:Header>{}</soapenv:Header>",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, envelope(&format!("  {header}"), QUERY));
    assert_eq!(
        op,
        Some(Operation {
            namespace: "urn:partner.soap.sforce.com".into(),
            name: "query".into()
        })
    );
}

#[tokio::test]
async fn no_header_with_the_envelope_in_the_default_namespace() {
    let input =
        format!("<Envelope xmlns=\"{ENV}\"><Body><query xmlns=\"urn:x\"/></Body></Envelope>");
    let (out, op) = rewrite(&input, &SoapApi::Enterprise).await;
    let want = format!(
        "<Envelope xmlns=\"{ENV}\"><Header>{}</Header><Body><query xmlns=\"urn:x\"/></Body></Envelope>",
        inserted("urn:enterprise.soap.sforce.com")
    );
    assert_eq!(out, want);
    assert_eq!(
        op.map(|o| (o.namespace, o.name)),
        Some(("urn:x".into(), "query".into()))
    );
}

#[tokio::test]
async fn a_self_closing_header_is_opened() {
    let input = envelope("  <soapenv:Header/>\n  ", QUERY);
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let header = format!(
        "  <soapenv:Header>{}</soapenv:Header>\n  ",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, envelope(&header, QUERY));
    let input = envelope("<soapenv:Header a=\"1\" />", "");
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let header = format!(
        "<soapenv:Header a=\"1\" >{}</soapenv:Header>",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, envelope(&header, ""));
}

#[tokio::test]
async fn other_headers_are_kept_and_the_session_header_goes_first() {
    let others = "\n    <urn:CallOptions><urn:client>ERP/1.0</urn:client></urn:CallOptions>\n    \
                  <urn:AllOrNoneHeader><urn:allOrNone>true</urn:allOrNone></urn:AllOrNoneHeader>\n    \
                  <urn:QueryOptions><urn:batchSize>200</urn:batchSize></urn:QueryOptions>\n  ";
    let input = envelope(
        &format!("  <soapenv:Header>{others}</soapenv:Header>\n  "),
        QUERY,
    );
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let header = format!(
        "  <soapenv:Header>{}{others}</soapenv:Header>\n  ",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, envelope(&header, QUERY));
}

#[tokio::test]
async fn an_empty_session_header_gets_a_session_id_with_its_prefix() {
    for sh in [
        "<urn:SessionHeader></urn:SessionHeader>",
        "<urn:SessionHeader/>",
    ] {
        let input = envelope(&format!("<soapenv:Header>{sh}</soapenv:Header>"), QUERY);
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        let want = format!(
            "<soapenv:Header><urn:SessionHeader><urn:sessionId>{SID}</urn:sessionId>\
             </urn:SessionHeader></soapenv:Header>"
        );
        assert_eq!(out, envelope(&want, QUERY), "{sh}");
    }
    // Unprefixed, its namespace declared on it: the inserted sessionId is in it too.
    let input = envelope(
        "<soapenv:Header><SessionHeader xmlns=\"urn:partner.soap.sforce.com\">\n</SessionHeader></soapenv:Header>",
        QUERY,
    );
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<soapenv:Header><SessionHeader xmlns=\"urn:partner.soap.sforce.com\">\n\
         <sessionId>{SID}</sessionId></SessionHeader></soapenv:Header>"
    );
    assert_eq!(out, envelope(&want, QUERY));
}

#[tokio::test]
async fn a_stale_session_id_is_replaced_in_place() {
    let header = "<soapenv:Header>\n <urn:CallOptions/>\n <urn:SessionHeader>\n  \
                  <urn:sessionId>00Dstale!old&amp;session</urn:sessionId>\n </urn:SessionHeader>\n\
                  </soapenv:Header>";
    let input = envelope(header, QUERY);
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = header.replace("00Dstale!old&amp;session", SID);
    assert_eq!(out, envelope(&want, QUERY));
}

#[tokio::test]
async fn the_default_namespace_form_and_empty_session_ids() {
    for (id, filled) in [
        ("<sessionId/>", format!("<sessionId>{SID}</sessionId>")),
        ("<sessionId />", format!("<sessionId>{SID}</sessionId>")),
        (
            "<sessionId></sessionId>",
            format!("<sessionId>{SID}</sessionId>"),
        ),
        (
            "<sessionId xmlns=\"urn:partner.soap.sforce.com\">x</sessionId>",
            format!("<sessionId xmlns=\"urn:partner.soap.sforce.com\">{SID}</sessionId>"),
        ),
        (
            "<urn:sessionId/>",
            format!("<urn:sessionId>{SID}</urn:sessionId>"),
        ),
    ] {
        let header = |id: &str| {
            format!(
                "<soapenv:Header><SessionHeader xmlns=\"urn:partner.soap.sforce.com\">{id}\
                 </SessionHeader></soapenv:Header>"
            )
        };
        let input = envelope(&header(id), QUERY);
        let (out, _) = rewrite(&input, &SoapApi::Partner).await;
        assert_eq!(out, envelope(&header(&filled), QUERY), "{id}");
    }
}

#[tokio::test]
async fn each_api_inserts_its_own_namespace() {
    let cases = [
        (SoapApi::Partner, "urn:partner.soap.sforce.com"),
        (SoapApi::Enterprise, "urn:enterprise.soap.sforce.com"),
        (SoapApi::Metadata, "http://soap.sforce.com/2006/04/metadata"),
        (SoapApi::Tooling, "urn:tooling.soap.sforce.com"),
        (
            SoapApi::Apex {
                class: "OrderService".into(),
            },
            "http://soap.sforce.com/schemas/class/OrderService",
        ),
    ];
    for (api, ns) in cases {
        let input = envelope("", "<urn:x/>");
        let (out, _) = rewrite(&input, &api).await;
        let want = envelope(
            &format!("<soapenv:Header>{}</soapenv:Header>", inserted(ns)),
            "<urn:x/>",
        );
        assert_eq!(out, want, "{api:?}");
    }
}

#[tokio::test]
async fn every_session_header_in_the_api_namespace_gets_the_session() {
    // Two in the API's namespace (prefixed, and the default namespace declared on it) each get
    // it; one in another namespace is content, kept byte for byte.
    let foreign =
        "<x:SessionHeader xmlns:x=\"urn:x\"><x:sessionId>mine</x:sessionId></x:SessionHeader>";
    let header = format!(
        "<soapenv:Header><urn:SessionHeader><urn:sessionId>a</urn:sessionId>\
         </urn:SessionHeader>{foreign}<SessionHeader xmlns=\"urn:partner.soap.sforce.com\"/>\
         </soapenv:Header>"
    );
    let input = envelope(&header, QUERY);
    let opened = open(
        whole(input.as_bytes()),
        &SoapApi::Partner,
        Encoding::Identity,
        None,
        &limits(),
    )
    .await
    .unwrap();
    assert_eq!(opened.template.slots(), 2);
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<soapenv:Header><urn:SessionHeader><urn:sessionId>{SID}</urn:sessionId>\
         </urn:SessionHeader>{foreign}<SessionHeader xmlns=\"urn:partner.soap.sforce.com\">\
         <sessionId>{SID}</sessionId></SessionHeader></soapenv:Header>"
    );
    assert_eq!(out, envelope(&want, QUERY));
}

#[tokio::test]
async fn only_direct_children_count() {
    // A sessionId deeper than the SessionHeader's child, and a SessionHeader inside another
    // header, are content: the Header still gets one of its own.
    let header = "<soapenv:Header><urn:Other><urn:SessionHeader/></urn:Other>\
                  </soapenv:Header>";
    let input = envelope(header, QUERY);
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<soapenv:Header>{}<urn:Other><urn:SessionHeader/></urn:Other></soapenv:Header>",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, envelope(&want, QUERY));
}

#[tokio::test]
async fn the_session_id_is_escaped() {
    let input = envelope("<soapenv:Header><urn:SessionHeader/></soapenv:Header>", "");
    let opened = open(
        whole(input.as_bytes()),
        &SoapApi::Partner,
        Encoding::Identity,
        None,
        &limits(),
    )
    .await
    .unwrap();
    let (body, len) = opened.template.body("a&b<c>d", opened.rest);
    assert_eq!(len, None, "no Content-Length without the caller's");
    let out = body.collect().await.unwrap().to_bytes();
    assert_eq!(
        out,
        envelope(
            "<soapenv:Header><urn:SessionHeader><urn:sessionId>a&amp;b&lt;c&gt;d</urn:sessionId>\
             </urn:SessionHeader></soapenv:Header>",
            ""
        )
    );
}

#[tokio::test]
async fn crlf_whitespace_comments_and_bom_are_kept() {
    let input = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<!-- a comment -->\r\n\
                 <?some-pi data?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"\r\n   \
                 xmlns:m=\"http://soap.sforce.com/2006/04/metadata\">\r\n\t<s:Header >\r\n\t\t<!-- <m:SessionHeader> -->\r\n\
                 \t\t<m:SessionHeader>\r\n\t\t\t<m:sessionId>\r\n old \r\n</m:sessionId><!--x-->\r\n\t\t</m:SessionHeader>\r\n\
                 \t</s:Header >\r\n\t<s:Body\r\n>\r\n<![CDATA[x]]><m:readMetadata/></s:Body></s:Envelope>\r\n";
    let (out, op) = rewrite(input, &SoapApi::Metadata).await;
    assert_eq!(out, input.replace("\r\n old \r\n", SID));
    assert!(out.as_bytes().starts_with(&[0xef, 0xbb, 0xbf]));
    assert_eq!(
        op,
        Some(Operation {
            namespace: "http://soap.sforce.com/2006/04/metadata".into(),
            name: "readMetadata".into()
        })
    );
}

#[tokio::test]
async fn operations_and_their_absence() {
    let (_, op) = rewrite(&envelope("", ""), &SoapApi::Partner).await;
    assert_eq!(op, None, "an empty Body has no operation");
    let input = format!("<e:Envelope xmlns:e=\"{ENV}\"><e:Body/></e:Envelope>");
    let (out, op) = rewrite(&input, &SoapApi::Tooling).await;
    assert_eq!(op, None);
    assert_eq!(
        out,
        format!(
            "<e:Envelope xmlns:e=\"{ENV}\"><e:Header>{}</e:Header><e:Body/></e:Envelope>",
            inserted("urn:tooling.soap.sforce.com")
        )
    );
    // The operation's own declaration counts; an undeclared prefix gives no namespace.
    let (_, op) = rewrite(
        &envelope("", "<q:create xmlns:q=\"urn:q\"/>"),
        &SoapApi::Partner,
    )
    .await;
    assert_eq!(
        op.map(|o| (o.namespace, o.name)),
        Some(("urn:q".into(), "create".into()))
    );
    let (_, op) = rewrite(&envelope("", "<zz:create/>"), &SoapApi::Partner).await;
    assert_eq!(
        op.map(|o| (o.namespace, o.name)),
        Some((String::new(), "create".into()))
    );
    // The Body's declarations count, the Header's do not.
    let input = format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><e:Header xmlns:p=\"urn:h\"/>\
         <e:Body xmlns:p=\"urn:b\"><p:login/></e:Body></e:Envelope>"
    );
    let (_, op) = rewrite(&input, &SoapApi::Partner).await;
    assert_eq!(op.map(|o| o.namespace), Some("urn:b".into()));
}

#[tokio::test]
async fn content_length_is_the_new_head_plus_the_rest() {
    let input = envelope("", QUERY);
    let added = format!(
        "<soapenv:Header>{}</soapenv:Header>",
        inserted("urn:partner.soap.sforce.com")
    );
    for declared in [input.len() as u64, input.len() as u64 + 1000] {
        let (out, cl, _) = send(
            whole(input.as_bytes()),
            &SoapApi::Partner,
            Some(declared),
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(out.len(), input.len() + added.len());
        // The rest is what the caller declared minus the head it sent.
        assert_eq!(cl, Some(declared + added.len() as u64));
    }
    let (_, cl, _) = send(whole(input.as_bytes()), &SoapApi::Partner, None, &limits())
        .await
        .unwrap();
    assert_eq!(cl, None);
}

#[tokio::test]
async fn a_kept_rest_can_be_sent_again() {
    let input = envelope("", QUERY);
    let opened = open(
        whole(input.as_bytes()),
        &SoapApi::Partner,
        Encoding::Identity,
        Some(input.len() as u64),
        &limits(),
    )
    .await
    .unwrap();
    let rest = opened.rest.collect().await.unwrap().to_bytes();
    let (first, n1) = opened.template.body("one", body::full(rest.clone()));
    let (second, n2) = opened.template.body("two", body::full(rest));
    let first = first.collect().await.unwrap().to_bytes();
    let second = second.collect().await.unwrap().to_bytes();
    assert_eq!(n1, Some(first.len() as u64));
    assert_eq!(n2, Some(second.len() as u64));
    assert_eq!(
        String::from_utf8_lossy(&first).replace("one", "two"),
        String::from_utf8_lossy(&second)
    );
}

#[test]
fn content_encodings() {
    let headers = |values: &[&str]| {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::CONTENT_ENCODING, v.parse().unwrap());
        }
        h
    };
    let enc = |values: &[&str]| Encoding::from_headers(&headers(values));
    assert_eq!(enc(&[]).unwrap(), Encoding::Identity);
    assert_eq!(enc(&["identity"]).unwrap(), Encoding::Identity);
    assert_eq!(enc(&["gzip"]).unwrap(), Encoding::Gzip);
    assert_eq!(enc(&["GZIP"]).unwrap(), Encoding::Gzip);
    assert_eq!(enc(&["x-gzip"]).unwrap(), Encoding::Gzip);
    assert_eq!(enc(&["identity, gzip"]).unwrap(), Encoding::Gzip);
    for refused in [&["deflate"][..], &["br"], &["gzip, gzip"], &["gzip", "br"]] {
        let err = enc(refused).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::ContentEncoding(_)),
            "{refused:?}"
        );
    }
    assert_eq!(
        enc(&["br"]).unwrap_err().to_string(),
        "Content-Encoding br is not supported on SOAP calls: sfproxy accepts gzip, or no \
         Content-Encoding (identity)"
    );
}

#[tokio::test]
async fn a_session_id_with_markup_inside_is_replaced_whole() {
    let header = "<soapenv:Header><urn:SessionHeader><urn:sessionId><!-- c -->old<b>x</b>\
                  </urn:sessionId></urn:SessionHeader></soapenv:Header>";
    let input = envelope(header, QUERY);
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<soapenv:Header><urn:SessionHeader><urn:sessionId>{SID}</urn:sessionId>\
         </urn:SessionHeader></soapenv:Header>"
    );
    assert_eq!(out, envelope(&want, QUERY));
}

#[tokio::test]
async fn the_soap_namespace_may_be_declared_on_the_header_and_body() {
    let input = "<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\">\
                 <h:Header xmlns:h=\"http://schemas.xmlsoap.org/soap/envelope/\"/>\
                 <b:Body xmlns:b=\"http://schemas.xmlsoap.org/soap/envelope/\"><q/></b:Body></Envelope>";
    let (out, op) = rewrite(input, &SoapApi::Partner).await;
    let want = input.replace(
        "<h:Header xmlns:h=\"http://schemas.xmlsoap.org/soap/envelope/\"/>",
        &format!(
            "<h:Header xmlns:h=\"http://schemas.xmlsoap.org/soap/envelope/\">{}</h:Header>",
            inserted("urn:partner.soap.sforce.com")
        ),
    );
    assert_eq!(out, want);
    assert_eq!(op.map(|o| o.name), Some("q".into()));
    // A Header in another namespace is not the Header: one is inserted before the Body.
    let input = format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><x:Header xmlns:x=\"urn:x\"/><e:Body/></e:Envelope>"
    );
    let (out, _) = rewrite(&input, &SoapApi::Partner).await;
    let want = format!(
        "<e:Envelope xmlns:e=\"{ENV}\"><x:Header xmlns:x=\"urn:x\"/><e:Header>{}</e:Header>\
         <e:Body/></e:Envelope>",
        inserted("urn:partner.soap.sforce.com")
    );
    assert_eq!(out, want);
}
