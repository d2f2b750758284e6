use super::*;

/// The log a watch writes for `stream`, fed in pieces of `step` bytes.
fn heads(stream: &[u8], step: usize) -> Vec<bool> {
    let log = Arc::new(FramingLog::default());
    let mut watch = FramingWatch::new(log.clone(), 64 * 1024);
    for piece in stream.chunks(step) {
        watch.feed(piece);
    }
    let seen = log.pending();
    drop(watch);
    seen
}

#[test]
fn the_watch_follows_bodies_and_notes_heads_with_both_framings() {
    // A body that looks like a smuggling head is a body: skipped by its length.
    let decoy = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n\
         POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{decoy}\
         POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{decoy}\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
         POST /d HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n\
         0\r\n\r\n\
         GET /e HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        decoy.len(),
        decoy.len(),
    );
    for step in [1, 2, 7, 64, stream.len()] {
        assert_eq!(
            heads(stream.as_bytes(), step),
            [false, false, false, true, false],
            "step {step}"
        );
    }
    // After a CONNECT the bytes are a tunnel's, and what is unreadable stops the watch.
    let tunnel = format!("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n{decoy}");
    assert_eq!(heads(tunnel.as_bytes(), 5), [false]);
    let broken = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{decoy}");
    assert_eq!(heads(broken.as_bytes(), 5), [false]);
    // Chunk sizes with leading zeros, as hyper reads them.
    let zeros = format!(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000003\r\n\
         abc\r\n0000000000000000000000\r\n\r\n{decoy}\r\n"
    );
    assert_eq!(heads(zeros.as_bytes(), 3), [false, true]);
}

#[test]
fn once_the_watch_is_lost_every_later_request_is_in_doubt() {
    let log = Arc::new(FramingLog::default());
    let mut watch = FramingWatch::new(log.clone(), 64 * 1024);
    watch.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    assert_eq!(log.next(), None);
    assert_eq!(log.next(), None, "the head it could not follow is noted");
    assert_eq!(log.next(), Some(FramingDoubt::Lost));
    assert_eq!(log.next(), Some(FramingDoubt::Lost));
    assert!(watch.pending.is_empty(), "nothing kept once lost");
}

/// What httparse, as [`FramingWatch::head`] runs it, makes of `bytes`: `None` while
/// incomplete, `Some(Err)` if refused, else the head's length and whether it is a CONNECT or
/// has `Transfer-Encoding` or `Content-Length`.
fn parsed(bytes: &[u8]) -> Option<Result<(usize, bool), ()>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => {
            let framed = request.method == Some("CONNECT")
                || request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        || h.name.eq_ignore_ascii_case("content-length")
                });
            Some(Ok((used, framed)))
        }
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Err(())),
    }
}

/// What the scan may say of `bytes`: nothing (httparse decides), or the length httparse
/// finds for a head it takes that names no framing. A head httparse refuses, hyper does too.
fn scan_agrees(bytes: &[u8]) -> Result<(), String> {
    match (plain_head(bytes), parsed(bytes)) {
        (None, _) | (Some(_), Some(Err(()))) => Ok(()),
        (Some(n), Some(Ok((used, false)))) if n == used => Ok(()),
        (scan, parse) => Err(format!(
            "{:?}: scan {scan:?}, httparse {parse:?}",
            String::from_utf8_lossy(bytes)
        )),
    }
}

#[test]
fn the_scan_leaves_every_head_naming_a_framing_to_httparse() {
    let must_parse = [
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // Any case, first or last header, bare LF line ends.
        "POST / HTTP/1.1\r\ncOnTeNt-LeNgTh: 5\r\nHost: h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\ntRANSFER-eNCODING: chunked\r\n\r\n",
        "POST / HTTP/1.1\nHost: h\nTRANSFER-ENCODING: chunked\n\n",
        "POST / HTTP/1.1\nCONTENT-LENGTH: 0\n\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:5\r\n\n",
        // Folded into the line above, in a value, in the target, in a name.
        "POST / HTTP/1.1\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nX-A: a\r\n\tcontent-length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Note: transfer-encoding\r\n\r\n",
        "GET /content-length HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Transfer-Encoding-Was: gzip\r\n\r\n",
        // Tunnels, leading empty lines, lines httparse refuses, heads that go on.
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        "\nGET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\n\rX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r",
        "GET / HTTP/1.1\r\nHost: h\r\n",
        "GET / HTTP/1.1\r\nHost: h\n",
        "GET / HTTP/1.1\r\nX-",
        "GET / HTTP/1.1\r\nContent-",
        "GET / HTTP/1.1\r\ntransfer-e",
        "",
    ];
    for head in must_parse {
        assert_eq!(plain_head(head.as_bytes()), None, "{head:?}");
    }
    // Wherever the name falls in the scan's 8-byte words, and after 1 to 99 headers.
    for name in ["Content-Length", "transfer-Encoding"] {
        for pad in 0..24 {
            let head = format!("POST /{} HTTP/1.1\r\n{name}: 1\r\n\r\n", "a".repeat(pad));
            assert_eq!(plain_head(head.as_bytes()), None, "{head:?}");
            let head = format!(
                "POST / HTTP/1.1\r\nX-{}: 1\r\n{name}: 1\r\n\r\n",
                "a".repeat(pad)
            );
            assert_eq!(plain_head(head.as_bytes()), None, "{head:?}");
        }
        for before in [1, 50, 98] {
            let head = format!(
                "POST / HTTP/1.1\r\n{}{name}: 1\r\n\r\n",
                "X-A: b\r\n".repeat(before)
            );
            assert_eq!(plain_head(head.as_bytes()), None, "{before} before");
        }
    }
    // From 100 header fields on, the head is httparse's to judge (it takes 100, as hyper).
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(100));
    assert_eq!(plain_head(many.as_bytes()), None);
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(99));
    assert_eq!(plain_head(many.as_bytes()), Some(many.len()));
}

#[test]
fn the_scan_finds_where_plain_heads_end() {
    for (stream, head) in [
        (
            "GET /acme/services/data/v61.0/limits HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            0,
        ),
        ("GET / HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n", 18),
        ("GET / HTTP/1.1\nHost: h\n\nContent-Length: 5\r\n\r\n", 24),
        (
            "GET / HTTP/1.1\r\nHost: h\n\r\nTransfer-Encoding: chunked\r\n\r\n",
            26,
        ),
        (
            "M-SEARCH * HTTP/1.1\r\nUser-Agent: x-y\r\nAccept-Encoding: gzip\r\n\
             Content-Type: a/b\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            0,
        ),
    ] {
        let want = if head == 0 { stream.len() } else { head };
        assert_eq!(plain_head(stream.as_bytes()), Some(want), "{stream:?}");
        assert_eq!(scan_agrees(stream.as_bytes()), Ok(()));
    }
}

proptest::proptest! {
    /// Heads (and broken ones) built from the pieces that matter to framing: the scan
    /// never says more than httparse would.
    #[test]
    fn the_scan_never_says_more_than_httparse(
        pieces in proptest::collection::vec(
            proptest::sample::select(&[
                "GET", "POST", "CONNECT", "M-SEARCH", " ", "/", "/content-length",
                " HTTP/1.1", " HTTP/1.0", "\r\n", "\n", "\r", "\r\n\r\n", "\n\n",
                "Host: h", "X-A: b", "Content-Length", "cONTENT-lENGTH", "Transfer-Encoding",
                "TRANSFER-ENCODING", "transfer-encodin", "-", ": ", ":", "5", "chunked", "\t",
                "a", "\u{e9}", "\0",
            ][..]),
            0..24,
        ),
        request in proptest::sample::select(&["GET / HTTP/1.1\r\n", "POST /a HTTP/1.1\n", ""][..]),
    ) {
        let bytes = format!("{request}{}", pieces.concat());
        proptest::prop_assert_eq!(scan_agrees(bytes.as_bytes()), Ok(()));
        // Whatever follows a head httparse takes does not change what the scan says of it.
        if let (Some(n), Some(Ok(_))) = (plain_head(bytes.as_bytes()), parsed(bytes.as_bytes())) {
            proptest::prop_assert_eq!(plain_head(&bytes.as_bytes()[..n]), Some(n));
        }
    }

    /// Heads as callers send them, framing headers among others in any case and place.
    #[test]
    fn the_scan_never_says_more_than_httparse_of_whole_heads(
        request in proptest::sample::select(&[
            "GET / HTTP/1.1", "POST /a HTTP/1.1", "PUT /a?b=c HTTP/1.0", "CONNECT h:443 HTTP/1.1",
            "M-SEARCH * HTTP/1.1", "GET http://h/content-length HTTP/1.1",
        ][..]),
        fields in proptest::collection::vec((
            proptest::sample::select(&[
                "Host", "X-A", "User-Agent", "Accept-Encoding", "Content-Type", "Content-Length",
                "content-length", "CONTENT-LENGTH", "cOnTeNt-lEnGtH", "Transfer-Encoding",
                "transfer-encoding", "TRANSFER-ENCODING", "Transfer-encoding", " Transfer-Encoding",
                "\tContent-Length", "Content-Lengthy", "X-Content-Length", "Content-Length ",
            ][..]),
            proptest::sample::select(&[": ", ":", ":\t"][..]),
            proptest::sample::select(&["h", "5", "0", "chunked", "a-b", "transfer-encoding", ""][..]),
            proptest::sample::select(&["\r\n", "\n"][..]),
        ), 0..12),
        end in proptest::sample::select(&["\r\n", "\n", "", "\r"][..]),
        after in proptest::sample::select(&["", "GET / HTTP/1.1\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"][..]),
    ) {
        let fields: String = fields
            .iter()
            .map(|(name, colon, value, eol)| format!("{name}{colon}{value}{eol}"))
            .collect();
        let bytes = format!("{request}\r\n{fields}{end}{after}");
        proptest::prop_assert_eq!(scan_agrees(bytes.as_bytes()), Ok(()));
    }
}
