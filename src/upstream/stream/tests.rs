use super::*;
use crate::body::BodyError;
use ::h2::server::{self, SendResponse};
use http::Request;
use http_body_util::{BodyExt, StreamBody};

/// A request stream over an in-memory connection, the server side accepting it.
async fn stream(
    body: ProxyBody,
) -> (
    ::h2::client::ResponseFuture,
    oneshot::Sender<()>,
    RecvStream,
    SendResponse<Bytes>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let accepting = tokio::spawn(server::handshake(server));
    let (send, connection) = ::h2::client::handshake(client).await.unwrap();
    tokio::spawn(connection);
    let mut server = accepting.await.unwrap().unwrap();
    let mut send = send.ready().await.unwrap();
    let post = Request::post("https://instance.example/upload")
        .body(())
        .unwrap();
    let (answer, sending) = send.send_request(post, false).unwrap();
    let (give_up, on_give_up) = oneshot::channel();
    tokio::spawn(Pipe::new(body, sending, on_give_up));
    let (request, respond) = server.accept().await.unwrap().unwrap();
    tokio::spawn(async move { while server.accept().await.is_some() {} });
    (answer, give_up, request.into_body(), respond)
}

fn chunks(bytes: &[u8], size: usize) -> ProxyBody {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> = bytes
        .chunks(size)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// Reads the stream to its end; the error's reason if it is reset.
async fn read(mut body: RecvStream) -> (Vec<u8>, Option<Reason>) {
    let mut got = Vec::new();
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                body.flow_control().release_capacity(data.len()).unwrap();
                got.extend_from_slice(&data);
            }
            Err(error) => return (got, error.reason()),
        }
    }
    (got, None)
}

#[tokio::test]
async fn a_body_beyond_the_windows_arrives_whole_and_the_answer_comes_back() {
    // 6 MB: more than the stream's and the connection's default windows (64 KB) many times.
    let sent: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (answer, _give_up, body, mut respond) = stream(chunks(&sent, 100_000)).await;
    let (got, reset) = read(body).await;
    assert_eq!(reset, None);
    assert!(
        got == sent,
        "{} bytes of {} arrived intact",
        got.len(),
        sent.len()
    );

    let created = http::Response::builder()
        .status(201)
        .header("content-length", "2")
        .body(())
        .unwrap();
    let mut sending = respond.send_response(created, false).unwrap();
    sending.send_data(Bytes::from_static(b"ok"), true).unwrap();
    let (head, recv) = answer.await.unwrap().into_parts();
    assert_eq!(head.status, 201);
    let body = Answer::new(recv, &head.headers, Arc::default());
    assert_eq!(body.size_hint().exact(), Some(2));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn a_caller_body_that_breaks_off_resets_the_stream() {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"half of it"))),
        Err(BodyError("the caller went away".into())),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let (_answer, _give_up, body, _respond) = stream(body).await;
    let (got, reset) = read(body).await;
    // The reset may overtake data still queued: whatever arrived is a prefix.
    assert!(b"half of it".starts_with(&got), "{got:?}");
    assert_eq!(reset, Some(Reason::CANCEL), "not taken as a complete body");
}

#[tokio::test]
async fn giving_up_on_the_answer_resets_a_body_still_sending() {
    let endless = StreamBody::new(futures_util::stream::pending::<
        Result<Frame<Bytes>, BodyError>,
    >())
    .boxed_unsync();
    let (_answer, give_up, body, _respond) = stream(endless).await;
    drop(GiveUp::new(Some(give_up)));
    let (got, reset) = read(body).await;
    assert!(got.is_empty());
    assert_eq!(reset, Some(Reason::CANCEL));
}

#[tokio::test]
async fn an_answered_request_keeps_sending_its_body() {
    // The body's rest arrives only after the answer: giving up must not fire then.
    let (more, rest) = tokio::sync::mpsc::unbounded_channel::<&'static [u8]>();
    let frames = futures_util::stream::unfold(rest, |mut rest| async move {
        let piece = rest.recv().await?;
        Some((Ok(Frame::data(Bytes::from_static(piece))), rest))
    });
    let body = StreamBody::new(frames).boxed_unsync();
    let (_answer, give_up, body, _respond) = stream(body).await;
    more.send(b"all ").unwrap();
    GiveUp::new(Some(give_up)).answered();
    more.send(b"of it").unwrap();
    drop(more);
    assert_eq!(read(body).await, (b"all of it".to_vec(), None));
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().to_be_bytes();
    let mut frame = vec![len[5], len[6], len[7], kind, flags, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn the_max_header_list_size_is_read_from_settings_however_the_bytes_arrive() {
    // SETTINGS: MAX_CONCURRENT_STREAMS 100, MAX_HEADER_LIST_SIZE 8192; then a DATA frame whose
    // payload looks like a setting, a SETTINGS ACK, and an empty SETTINGS.
    let mut bytes = frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100, 0, 6, 0, 0, 0x20, 0]);
    bytes.extend(frame(0x0, 0, &[0, 6, 0, 0, 0, 1]));
    bytes.extend(frame(SETTINGS, ACK, &[]));
    let whole = Frames::default().read(&bytes);
    assert_eq!(
        whole,
        Seen {
            max_header_list: Some(8192),
            settings_ended: true
        }
    );
    for size in [1, 2, 5, 7, 10] {
        let mut frames = Frames::default();
        let mut found = None;
        let mut ended = false;
        for piece in bytes.chunks(size) {
            let seen = frames.read(piece);
            found = seen.max_header_list.or(found);
            ended |= seen.settings_ended;
        }
        assert_eq!((found, ended), (Some(8192), true), "pieces of {size}");
    }
    let mut frames = Frames::default();
    let without = frames.read(&frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
    assert_eq!(without.max_header_list, None);
    assert!(without.settings_ended);
    let later = frames.read(&frame(SETTINGS, 0, &[0, 6, 0, 0, 0x40, 0]));
    assert_eq!(
        later.max_header_list,
        Some(16384),
        "a later SETTINGS is followed too"
    );
}
