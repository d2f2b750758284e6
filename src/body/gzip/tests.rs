use std::io::{Read, Write};

use http_body_util::StreamBody;

use super::*;

fn frames(parts: Vec<Bytes>) -> ProxyBody {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> =
        parts.into_iter().map(|p| Ok(Frame::data(p))).collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// `data` cut into frames of `size` bytes.
fn split(data: &[u8], size: usize) -> ProxyBody {
    frames(data.chunks(size).map(Bytes::copy_from_slice).collect())
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every frame of `body`, or the error it stopped with.
async fn drain(mut body: ProxyBody) -> (Vec<Bytes>, Option<BodyError>) {
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => got.extend(frame.into_data().ok()),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

fn sample() -> Vec<u8> {
    records(20_000)
}

/// Few enough records to go through in 1-byte frames.
fn small() -> Vec<u8> {
    records(300)
}

fn records(n: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..n {
        s.extend_from_slice(format!("<record n=\"{i}\">value {}</record>\n", i * 7).as_bytes());
    }
    s
}

#[tokio::test]
async fn decodes_what_flate2_encodes_in_any_framing() {
    for (data, sizes) in [(small(), &[1, 7][..]), (sample(), &[4096, usize::MAX][..])] {
        let zipped = gzip(&data, 6);
        for &size in sizes {
            let size = size.min(zipped.len());
            let (got, err) = drain(decode(split(&zipped, size), u64::MAX)).await;
            assert!(err.is_none(), "frames of {size}: {err:?}");
            assert!(got.iter().all(|f| f.len() <= MAX_FRAME));
            assert_eq!(got.concat(), data, "frames of {size}");
        }
    }
}

#[tokio::test]
async fn decodes_header_fields_and_concatenated_members() {
    let mut e = flate2::GzBuilder::new()
        .filename("envelope.xml")
        .comment("a comment")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), Compression::default());
    e.write_all(b"first ").unwrap();
    let mut both = e.finish().unwrap();
    both.extend(gzip(b"second", 1));
    for size in [1, 3, both.len()] {
        let (got, err) = drain(decode(split(&both, size), 1 << 20)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.concat(), b"first second");
    }
}

#[tokio::test]
async fn encodes_a_stream_that_gunzips_to_the_input() {
    for (data, sizes) in [(small(), &[1][..]), (sample(), &[1000, usize::MAX][..])] {
        for &size in sizes {
            let size = size.min(data.len());
            let (got, err) = drain(encode(split(&data, size))).await;
            assert!(err.is_none());
            assert_eq!(gunzip(&got.concat()), data, "frames of {size}");
        }
    }
    // An empty body is one empty member.
    let (got, _) = drain(encode(frames(vec![]))).await;
    assert_eq!(gunzip(&got.concat()), b"");
}

#[tokio::test]
async fn encode_flushes_each_frame_so_it_streams() {
    let data = sample();
    let (got, _) = drain(encode(split(&data, 64 * 1024))).await;
    // One frame out per frame in, and the finishing frame.
    assert_eq!(got.len(), data.len().div_ceil(64 * 1024) + 1);
    // Every frame but the last ends on a byte boundary of complete deflate blocks: the prefix
    // up to it inflates to a prefix of the input without waiting for more.
    let first = &got[0][10..];
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflate
        .decompress_vec(first, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, data[..64 * 1024]);
}

#[tokio::test]
async fn round_trip_decode_then_encode() {
    let data = sample();
    let body = encode(decode(split(&gzip(&data, 9), 333), u64::MAX));
    let (got, err) = drain(body).await;
    assert!(err.is_none());
    assert_eq!(gunzip(&got.concat()), data);
}

#[tokio::test]
async fn a_gzip_bomb_stays_bounded_and_stops_at_the_limit() {
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024], 9);
    assert!(bomb.len() < 100 * 1024, "{} bytes", bomb.len());
    let limit = 5 * 1024 * 1024;
    // The whole bomb in one frame: still never more than MAX_FRAME out at once.
    let (got, err) = drain(decode(split(&bomb, bomb.len()), limit)).await;
    assert!(got.iter().all(|f| f.len() <= MAX_FRAME));
    let total: usize = got.iter().map(Bytes::len).sum();
    assert!(total as u64 <= limit);
    let err = err.expect("past the limit the body fails");
    assert_eq!(
        err.to_string(),
        "the request body is larger than the limit of 5242880 bytes once decompressed \
         (Content-Encoding: gzip)"
    );
    assert!(matches!(
        err.0.downcast_ref::<GzipError>(),
        Some(GzipError::TooLarge { limit: 5_242_880 })
    ));
}

#[tokio::test]
async fn exactly_the_limit_passes() {
    let data = vec![b'a'; 100_000];
    let (got, err) = drain(decode(split(&gzip(&data, 6), 100), 100_000)).await;
    assert!(err.is_none());
    assert_eq!(got.concat().len(), 100_000);
    let (_, err) = drain(decode(split(&gzip(&data, 6), 100), 99_999)).await;
    assert!(err.is_some());
}

#[tokio::test]
async fn refuses_what_is_not_gzip() {
    let zipped = gzip(&small(), 6);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"<soapenv:Envelope/>".to_vec(), "magic"),
        (zipped[..zipped.len() / 2].to_vec(), "ends early"),
        (zipped[..5].to_vec(), "ends early"),
        (
            {
                let mut z = zipped.clone();
                let n = z.len();
                z[n - 6] ^= 1;
                z
            },
            "CRC-32",
        ),
        (
            {
                let mut z = zipped.clone();
                z.extend_from_slice(b"junk");
                z
            },
            "data follows",
        ),
        (
            {
                let mut z = zipped.clone();
                z[3] = 0x80;
                z
            },
            "reserved",
        ),
        (vec![0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 0, 1], "not deflate"),
    ];
    for (input, want) in cases {
        let (_, err) = drain(decode(split(&input, 4), u64::MAX)).await;
        let err = err.expect("refused");
        assert!(err.to_string().contains(want), "{err} (wanted {want})");
    }
    // An empty body is not a gzip stream either.
    let (_, err) = drain(decode(frames(vec![]), u64::MAX)).await;
    assert!(err.is_some());
}

#[tokio::test]
async fn trailers_pass_through_both_ways() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-t", http::HeaderValue::from_static("1"));
    let zipped = Bytes::from(gzip(b"abc", 6));
    let stream = futures_util::stream::iter(vec![
        Ok::<_, BodyError>(Frame::data(zipped)),
        Ok(Frame::trailers(trailers.clone())),
    ]);
    let collected = encode(decode(StreamBody::new(stream).boxed_unsync(), 100))
        .collect()
        .await
        .unwrap();
    assert_eq!(collected.trailers(), Some(&trailers));
    assert_eq!(gunzip(&collected.to_bytes()), b"abc");
}

#[tokio::test]
async fn frames_grow_from_the_input_size_to_max_frame() {
    // Zeros inflate about a thousandfold: one byte of input fills many times the first guess
    // for it, and the whole input in one frame fills MAX_FRAME frames.
    let data = vec![0u8; 2 * 1024 * 1024 + 17];
    let zipped = gzip(&data, 9);
    for size in [1, 3, zipped.len()] {
        let (got, err) = drain(decode(split(&zipped, size), u64::MAX)).await;
        assert!(err.is_none(), "frames of {size}: {err:?}");
        assert!(got.iter().all(|f| f.len() <= MAX_FRAME), "frames of {size}");
        assert_eq!(got.concat(), data, "frames of {size}");
        if size == zipped.len() {
            let (last, full) = got.split_last().unwrap();
            assert!(full.iter().all(|f| f.len() == MAX_FRAME));
            assert_eq!(last.len(), data.len() % MAX_FRAME);
        }
    }
    // The limit still caps the frame that crosses it.
    let (got, err) = drain(decode(split(&zipped, zipped.len()), 100_000)).await;
    assert!(err.is_some());
    assert!(got.iter().map(Bytes::len).sum::<usize>() <= 100_000);
}
