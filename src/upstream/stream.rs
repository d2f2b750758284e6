//! One request as an HTTP/2 stream of the h2 crate: the request body sent under the stream's
//! flow control, the answer's body read and its window given back.
//!
//! hyper's HTTP/2 client does the same behind a channel to the connection's task and a task of
//! its own per request (to await the answer and hand it back): two more hand-offs and a spawn
//! for every request. Driven from the request's own future, a stream costs neither.
//!
//! The connection's bytes from the instance pass through [`SettingsWatch`], which reads the instance's
//! `SETTINGS_MAX_HEADER_LIST_SIZE`: the h2 crate keeps the peer's value to itself.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use ::h2::{Reason, RecvStream, SendStream};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::tap::Follow;
use tokio::sync::oneshot;

use crate::body::ProxyBody;

/// Sends `body` on `send`, then ends the stream. It stops, resetting the stream, when the body
/// fails (the caller broke off: the instance must not take a truncated body as complete) or
/// when `give_up` fires (nobody waits for the answer any more); it stops quietly when the
/// instance resets the stream (it answered without needing the rest).
pub(crate) struct Pipe {
    body: ProxyBody,
    send: SendStream<Bytes>,
    /// Read but not sent yet: waiting for flow-control window.
    unsent: Bytes,
    give_up: Option<oneshot::Receiver<()>>,
}

impl Pipe {
    pub(crate) fn new(
        body: ProxyBody,
        send: SendStream<Bytes>,
        give_up: oneshot::Receiver<()>,
    ) -> Self {
        Pipe {
            body,
            send,
            unsent: Bytes::new(),
            give_up: Some(give_up),
        }
    }

    /// Sends what it can of `unsent`; `Ready(true)` once it is all sent.
    fn send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        while !self.unsent.is_empty() {
            if self.send.capacity() == 0 {
                self.send.reserve_capacity(self.unsent.len());
                match ready!(self.send.poll_capacity(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Poll::Ready(Err(())),
                }
            }
            let chunk = self
                .unsent
                .split_to(self.send.capacity().min(self.unsent.len()));
            let last = self.unsent.is_empty() && self.body.is_end_stream();
            self.send.send_data(chunk, last).map_err(|_| ())?;
            if last {
                return Poll::Ready(Ok(false));
            }
        }
        Poll::Ready(Ok(true))
    }
}

impl Future for Pipe {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(give_up) = &mut this.give_up {
            match Pin::new(give_up).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.send.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
                // The answer arrived: whoever reads it decides, by reading or leaving.
                Poll::Ready(Err(_)) => this.give_up = None,
                Poll::Pending => {}
            }
        }
        loop {
            match ready!(this.send_unsent(cx)) {
                Ok(true) => {}
                Ok(false) | Err(()) => return Poll::Ready(()),
            }
            if this.send.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => {
                    let _ = this.send.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Some(Err(_)) => {
                    this.send.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() && this.body.is_end_stream() => {
                        let _ = this.send.send_data(data, true);
                        return Poll::Ready(());
                    }
                    Ok(data) => this.unsent = data,
                    // Trailers end the body but are not sent: Salesforce's APIs read none, and
                    // a header block the instance did not measure could end the connection
                    // every caller shares, as an oversized header list would.
                    Err(frame) => {
                        if frame.is_trailers() {
                            tracing::debug!("request trailers dropped");
                            let _ = this.send.send_data(Bytes::new(), true);
                            return Poll::Ready(());
                        }
                    }
                },
            }
        }
    }
}

/// Fires the pipe's `give_up` when dropped before [`GiveUp::answered`]: the request's future
/// went away (the caller left, or the request timed out) while its body was still being sent.
pub(crate) struct GiveUp(Option<oneshot::Sender<()>>);

impl GiveUp {
    pub(crate) fn new(sender: Option<oneshot::Sender<()>>) -> Self {
        GiveUp(sender)
    }

    pub(crate) fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for GiveUp {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

/// The answer's body. Each piece read gives its size back to the stream's window; dropped before
/// its end, the stream is reset (by h2, once nothing holds it).
pub(crate) struct Answer {
    recv: RecvStream,
    data_done: bool,
    /// Still to come, from `Content-Length` (h2 holds the data to it), as hyper's own HTTP/2
    /// body reports it.
    remaining: Option<u64>,
    /// The connection's count of pieces received (its keep-alive reads it).
    received: Arc<AtomicU64>,
}

impl Answer {
    pub(crate) fn new(recv: RecvStream, headers: &HeaderMap, received: Arc<AtomicU64>) -> Self {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Answer {
            recv,
            data_done: false,
            remaining,
            received,
        }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = ::h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ::h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(remaining) = &mut self.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const SETTING: usize = 6;

/// The instance's side of an HTTP/2 connection, passed through unchanged while its frames are
/// followed (a few comparisons per frame, payloads skipped): every SETTINGS frame's
/// `SETTINGS_MAX_HEADER_LIST_SIZE` is stored in `max_header_list`, and `first_settings` fires
/// once the first SETTINGS frame (the instance's connection preface) has been read.
pub(crate) struct SettingsWatch {
    frames: Frames,
    max_header_list: Arc<AtomicU32>,
    first_settings: Option<oneshot::Sender<()>>,
}

/// Where the byte stream is in the frame sequence.
#[derive(Default)]
struct Frames {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
    /// The current frame is a SETTINGS frame (not an ACK): its payload is read, setting by setting.
    settings: bool,
    setting: [u8; SETTING],
    setting_len: usize,
}

/// What a run of bytes held.
#[derive(Default, Debug, PartialEq, Eq)]
struct Seen {
    /// The last `SETTINGS_MAX_HEADER_LIST_SIZE` value among them.
    max_header_list: Option<u32>,
    /// A SETTINGS frame ended among them.
    settings_ended: bool,
}

impl Frames {
    fn read(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::default();
        while !bytes.is_empty() {
            if self.payload == 0 && self.header_len < FRAME_HEADER {
                let take = (FRAME_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < FRAME_HEADER {
                    break;
                }
                let [l0, l1, l2, kind, flags, ..] = self.header;
                self.payload = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.settings = kind == SETTINGS && flags & ACK == 0;
                self.setting_len = 0;
                if self.payload == 0 {
                    self.end_frame(&mut seen);
                }
                continue;
            }
            let take = self.payload.min(bytes.len());
            if self.settings {
                for &byte in &bytes[..take] {
                    self.setting[self.setting_len] = byte;
                    self.setting_len += 1;
                    if self.setting_len == SETTING {
                        self.setting_len = 0;
                        let [i0, i1, v0, v1, v2, v3] = self.setting;
                        if u16::from_be_bytes([i0, i1]) == SETTINGS_MAX_HEADER_LIST_SIZE {
                            seen.max_header_list = Some(u32::from_be_bytes([v0, v1, v2, v3]));
                        }
                    }
                }
            }
            self.payload -= take;
            bytes = &bytes[take..];
            if self.payload == 0 {
                self.end_frame(&mut seen);
            }
        }
        seen
    }

    fn end_frame(&mut self, seen: &mut Seen) {
        seen.settings_ended |= self.settings;
        self.header_len = 0;
        self.settings = false;
    }
}

impl SettingsWatch {
    pub(crate) fn new(
        max_header_list: Arc<AtomicU32>,
        first_settings: oneshot::Sender<()>,
    ) -> Self {
        Self {
            frames: Frames::default(),
            max_header_list,
            first_settings: Some(first_settings),
        }
    }
}

impl Follow for SettingsWatch {
    fn follow(&mut self, bytes: &[u8]) {
        let seen = self.frames.read(bytes);
        if let Some(max) = seen.max_header_list {
            self.max_header_list.store(max, Ordering::Relaxed);
        }
        if seen.settings_ended {
            if let Some(first) = self.first_settings.take() {
                let _ = first.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
