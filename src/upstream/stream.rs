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
mod tests;
