use super::*;
use crate::body;

fn watched(body: ProxyBody, limit: u64) -> (Watched, Arc<OnceLock<BodyFault>>) {
    let fault = Arc::new(OnceLock::new());
    let watched = Watched {
        inner: body,
        seen: 0,
        limit,
        fault: fault.clone(),
    };
    (watched, fault)
}

#[test]
fn the_header_section_counts_the_target_as_it_travelled() {
    for target in [
        "/services/data/v61.0/limits",
        "/services/data/v61.0/query?q=SELECT+Id+FROM+Account",
        "http://acme.my.salesforce.com/services/data?x=1",
        "https://acme.my.salesforce.com:8443/",
        "acme.my.salesforce.com:443",
        "*",
    ] {
        let request = Request::builder()
            .uri(target)
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let expected = "GET".len() + request.uri().to_string().len() + 12 + "accept".len() + 3 + 4;
        assert_eq!(Head::read(&request).bytes, expected, "{target}");
    }
}

#[test]
fn the_declared_length_is_the_first_content_length() {
    let request = Request::builder()
        .uri("/services/data")
        .header("content-type", "text/plain")
        .header("content-length", "5")
        .header("host", "a.example")
        .header("content-length", "7")
        .body(())
        .unwrap();
    let head = Head::read(&request);
    assert_eq!(head.content_length, request.headers().get("content-length"));
    assert_eq!(head.host, request.headers().get("host"));
    assert!(!head.two_hosts && !head.two_credentials);
}

#[test]
fn only_the_apis_methods_are_forwarded() {
    let head = |method: &str, uri: &str| {
        let request = Request::builder().method(method).uri(uri).body(()).unwrap();
        check_head(&request).map(drop).map_err(|e| e.code())
    };
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert_eq!(head(method, "/services/data"), Ok(()), "{method}");
    }
    // An authority asks for a tunnel; the route layer judges its form and port.
    assert_eq!(head("CONNECT", "acme.my.salesforce.com:443"), Ok(()));
    assert_eq!(head("CONNECT", "http://acme.my.salesforce.com/"), Ok(()));
    for (method, uri) in [
        ("TRACE", "/services/data"),
        ("TRACE", "http://acme.my.salesforce.com/"),
        ("CONNECT", "/services/data"),
        ("PROPFIND", "/"),
        ("get", "/"),
    ] {
        assert_eq!(
            head(method, uri),
            Err("PROXY_METHOD_NOT_ALLOWED"),
            "{method} {uri}"
        );
    }
}

#[test]
fn hosts_and_credentials_must_be_single_and_well_formed() {
    let head = |headers: &[(&str, &str)]| {
        let mut builder = Request::builder().uri("/services/data");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        check_head(&builder.body(()).unwrap())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    for good in [
        "acme.my.salesforce.com",
        "acme.my.salesforce.com:8080",
        "127.0.0.1:65535",
        "[::1]",
        "[::1]:3128",
    ] {
        assert_eq!(head(&[("host", good)]), Ok(()), "{good}");
    }
    for (bad, says) in [
        ("acme.my.salesforce.com:", "port"),
        ("acme.my.salesforce.com:http", "port"),
        ("acme.my.salesforce.com:65536", "port"),
        ("acme.my.salesforce.com:123456", "port"),
        ("[::1]:", "port"),
        ("acme.my.salesforce.com.", "dot"),
        ("acme.my.salesforce.com.:443", "dot"),
    ] {
        let err = head(&[("host", bad)]).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
    let err = head(&[("host", "a.example"), ("host", "a.example")]).unwrap_err();
    assert!(err.contains("two Host headers"), "{err}");
    let err = head(&[
        ("proxy-authorization", "Basic ZXJwOnM="),
        ("proxy-authorization", "Basic d21zOnM="),
    ])
    .unwrap_err();
    assert!(err.contains("two Proxy-Authorization"), "{err}");
}

/// `check_host` as it read before it went 8 bytes at a time: the reference.
fn check_host_bytewise(value: &[u8]) -> Result<(), &'static str> {
    let name_end = match value.iter().rposition(|&b| b == b':' || b == b']') {
        Some(at) if value[at] == b':' => {
            let port = &value[at + 1..];
            let number = port.iter().try_fold(0u32, |n, &b| {
                (b.is_ascii_digit() && n <= 6553).then(|| n * 10 + u32::from(b - b'0'))
            });
            if port.is_empty() || number.is_none_or(|n| n > 65535) {
                return Err("the port must be a number from 0 to 65535");
            }
            at
        }
        _ => value.len(),
    };
    if value[..name_end].ends_with(b".") {
        return Err("the host name ends with a dot; send it without");
    }
    Ok(())
}

#[test]
fn hosts_read_8_bytes_at_a_time_read_as_byte_by_byte() {
    // Every value of up to 6 bytes from the bytes that matter, where the words fall.
    let alphabet = b"09:].a/\xff";
    let mut values = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..6 {
        last = last
            .iter()
            .flat_map(|v: &Vec<u8>| alphabet.iter().map(move |&b| [&v[..], &[b]].concat()))
            .collect();
        values.extend(last.iter().cloned());
    }
    for value in &values {
        for before in ["", "h", "a.example.", "[::1]", "acme.my.salesforce.com"] {
            let value = [before.as_bytes(), value].concat();
            assert_eq!(
                check_host(&value),
                check_host_bytewise(&value),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }
    // Every port, with leading zeros, around the limit and past 8 digits.
    for port in (0..=70_000u64).chain([99_999_999, 100_000_000, 4_294_967_296]) {
        for zeros in ["", "0", "000000"] {
            for host in [
                "h",
                "127.0.0.1",
                "a.",
                "[::1]",
                "acme.my.salesforce.com",
                "",
            ] {
                let value = format!("{host}:{zeros}{port}");
                assert_eq!(
                    check_host(value.as_bytes()),
                    check_host_bytewise(value.as_bytes()),
                    "{value}"
                );
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn any_host_reads_as_byte_by_byte(value in proptest::collection::vec(
        proptest::sample::select(&b"0123456789:]. [a/+-\0"[..]), 0..40,
    )) {
        proptest::prop_assert_eq!(check_host(&value), check_host_bytewise(&value));
    }
}

#[tokio::test]
async fn a_body_past_the_limit_fails_and_says_so() {
    let (body, fault) = watched(body::full("0123456789"), 4);
    assert!(body.collect().await.is_err());
    assert!(matches!(fault.get(), Some(BodyFault::TooLarge)));

    let (body, fault) = watched(body::full("0123"), 4);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "0123");
    assert!(fault.get().is_none());
}

#[tokio::test]
async fn a_broken_body_is_recorded() {
    let broken = http_body_util::StreamBody::new(futures_util::stream::iter(vec![
        Ok(Frame::data(Bytes::from_static(b"ab"))),
        Err(BodyError("connection reset".into())),
    ]))
    .boxed_unsync();
    let (body, fault) = watched(broken, 100);
    assert!(body.collect().await.is_err());
    assert!(matches!(fault.get(), Some(BodyFault::Broken(why)) if why.contains("reset")));
}
