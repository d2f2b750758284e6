//! Streaming: a 100 MB envelope through a bounded head, and gzip both ways.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use super::*;

const CHUNK: usize = 16 * 1024;
static FILL: [u8; CHUNK] = [b'x'; CHUNK];

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn partner_query() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{ENV}\" \
         xmlns:urn=\"urn:partner.soap.sforce.com\"><soapenv:Header><urn:CallOptions>\
         <urn:client>WSC</urn:client></urn:CallOptions><urn:SessionHeader><urn:sessionId>old\
         </urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:query>\
         <urn:queryString>SELECT Id, Name FROM Account WHERE Name = 'x'</urn:queryString>\
         </urn:query></soapenv:Body></soapenv:Envelope>"
    )
}

#[test]
fn open_is_send() {
    fn send<T: Send>(_: &T) {}
    let limits = limits();
    let fut = open(
        body::empty(),
        &SoapApi::Partner,
        Encoding::Identity,
        None,
        &limits,
    );
    send(&fut);
}

#[tokio::test]
async fn a_100_mb_envelope_streams_through_a_bounded_head() {
    // The head spans several frames (a 40 kB comment in the Header), then 100 MiB of content.
    let head = format!(
        "<soapenv:Envelope xmlns:soapenv=\"{ENV}\"><soapenv:Header><!--{}--></soapenv:Header>\
         <soapenv:Body><urn:create xmlns:urn=\"urn:partner.soap.sforce.com\">",
        "c".repeat(40_000)
    );
    let prefix = Bytes::from(head.clone());
    let total = 100 * 1024 * 1024;
    let prefix_chunks = prefix.len().div_ceil(CHUNK);
    let fill_chunks = (total - prefix.len()).div_ceil(CHUNK);
    let total = prefix.len() + fill_chunks * CHUNK;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let stream = futures_util::stream::iter(0..prefix_chunks + fill_chunks).map(move |i| {
        let data = if i < prefix_chunks {
            prefix.slice(i * CHUNK..((i + 1) * CHUNK).min(prefix.len()))
        } else {
            Bytes::from_static(&FILL)
        };
        counter.fetch_add(data.len(), Ordering::Relaxed);
        Ok::<_, BodyError>(Frame::data(data))
    });
    let limits = limits();
    let opened = open(
        StreamBody::new(stream).boxed_unsync(),
        &SoapApi::Partner,
        Encoding::Identity,
        Some(total as u64),
        &limits,
    )
    .await
    .unwrap();
    let read = pulled.load(Ordering::Relaxed);
    assert!(
        read <= limits.max_header_bytes + CHUNK,
        "open read {read} bytes"
    );
    assert_eq!(opened.operation.map(|o| o.name), Some("create".to_owned()));
    let (mut body, len) = opened.template.body(SID, opened.rest);
    let added = format!(
        "<SessionHeader xmlns=\"urn:partner.soap.sforce.com\"><sessionId>{SID}</sessionId></SessionHeader>"
    );
    assert_eq!(len, Some((total + added.len()) as u64));
    let (mut sent, mut first) = (0, None);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.len() <= limits.max_header_bytes + CHUNK);
        first.get_or_insert_with(|| data.clone());
        sent += data.len();
    }
    assert_eq!(sent, total + added.len());
    let first = first.unwrap();
    let want = head.replace("<soapenv:Header>", &format!("<soapenv:Header>{added}"));
    assert_eq!(first, want.as_bytes()[..first.len()]);
}

#[tokio::test]
async fn a_gzipped_envelope_is_inflated_rewritten_and_gzipped_again() {
    let input = partner_query();
    let (plain, _, _) = send(whole(input.as_bytes()), &SoapApi::Partner, None, &limits())
        .await
        .unwrap();
    assert_eq!(
        plain,
        input.replace("old\n", SID).replace("old", SID).as_bytes()
    );
    let zipped = gzip(input.as_bytes());
    for body in [whole(&zipped), bytewise(&zipped)] {
        let opened = open(
            body,
            &SoapApi::Partner,
            Encoding::Gzip,
            Some(zipped.len() as u64),
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(
            opened.operation.as_ref().map(|o| o.name.as_str()),
            Some("query")
        );
        let (out, len) = opened.template.body(SID, opened.rest);
        assert_eq!(len, None, "a gzipped body goes without Content-Length");
        let out = out.collect().await.unwrap().to_bytes();
        assert_eq!(gunzip(&out), plain);
    }
}

#[tokio::test]
async fn a_gzip_bomb_in_the_rest_stays_bounded_and_fails_past_max_body() {
    let mut input = partner_query().into_bytes();
    input.truncate(input.len() - "</soapenv:Body></soapenv:Envelope>".len());
    input.extend(std::iter::repeat_n(b' ', 20 * 1024 * 1024));
    let zipped = gzip(&input);
    let limits = Limits {
        max_header_bytes: 64 * 1024,
        max_body: 8 * 1024 * 1024,
    };
    let opened = open(
        whole(&zipped),
        &SoapApi::Partner,
        Encoding::Gzip,
        None,
        &limits,
    )
    .await
    .unwrap();
    let mut rest = opened.rest;
    let mut total = 0;
    let err = loop {
        match rest.frame().await {
            Some(Ok(frame)) => {
                let data = frame.into_data().unwrap();
                assert!(data.len() <= gzip::MAX_FRAME);
                total += data.len();
            }
            Some(Err(e)) => break e,
            None => panic!("a body past max_body must fail"),
        }
    };
    assert!(total as u64 <= limits.max_body);
    assert_eq!(
        err.to_string(),
        "the request body is larger than the limit of 8388608 bytes once decompressed \
         (Content-Encoding: gzip)"
    );
    // Past max_body already before the Body: open says so.
    let tiny = Limits {
        max_header_bytes: 64 * 1024,
        max_body: 100,
    };
    let err = open(
        whole(&zipped),
        &SoapApi::Partner,
        Encoding::Gzip,
        None,
        &tiny,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnvelopeError::InflatedTooLarge { limit: 100 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_gzip_is_refused() {
    let input = partner_query();
    let err = open(
        whole(input.as_bytes()),
        &SoapApi::Partner,
        Encoding::Gzip,
        None,
        &limits(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::Gzip(_)));
    assert_eq!(
        err.to_string(),
        "the request body is not valid gzip (it was sent with Content-Encoding: gzip): it does \
         not start with the gzip magic bytes (1f 8b)"
    );
}
