//! One request as an HTTP/2 stream of the h2 crate: the request body sent under the stream's
//! flow control, the answer's body read and its window given back.
//!
//! hyper's HTTP/2 client does the same behind a channel to the connection's task and a task of
//! its own per request (to await the answer and hand it back): two more hand-offs and a spawn
//! for every request. Driven from the request's own future, a stream costs neither.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use ::h2::{Reason, RecvStream, SendStream};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::body::ProxyBody;

/// Sends `body` on `send`, then ends the stream. It stops, resetting the stream, when the body
/// fails (the caller broke off: the instance must not take a truncated body as complete) or
/// when `give_up` fires (nobody waits for the answer any more); it stops quietly when the
/// instance resets the stream (it answered without needing the rest).
pub struct Pipe {
    body: ProxyBody,
    send: SendStream<Bytes>,
    /// Read but not sent yet: waiting for flow-control window.
    unsent: Bytes,
    give_up: Option<oneshot::Receiver<()>>,
}

impl Pipe {
    pub fn new(body: ProxyBody, send: SendStream<Bytes>, give_up: oneshot::Receiver<()>) -> Self {
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
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = this.send.send_trailers(trailers);
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
pub struct GiveUp(Option<oneshot::Sender<()>>);

impl GiveUp {
    pub fn new(sender: Option<oneshot::Sender<()>>) -> Self {
        GiveUp(sender)
    }

    pub fn answered(mut self) {
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
pub struct Answer {
    recv: RecvStream,
    data_done: bool,
    /// Still to come, from `Content-Length` (h2 holds the data to it), as hyper's own HTTP/2
    /// body reports it.
    remaining: Option<u64>,
}

impl Answer {
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Answer {
            recv,
            data_done: false,
            remaining,
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
