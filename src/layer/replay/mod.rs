//! Sends a request once more when a policy says so, from a copy it keeps; it knows nothing of
//! why (that is the policies', see [`Policy`]).
//!
//! Two policies judge every request. The layer's own ([`ResendRefused`] in the stack) judges
//! each send, with a fresh copy for each; the request's own, handed down with it by the stage
//! above (in the stack, the session layer's: an expired session), judges what the first lets
//! through, and its `Again` starts a new send. So a request the instance refused unprocessed is
//! sent once more per send, and an expired session's replay is bounded by its own policy.
//!
//! To send a request twice its body must be kept: bodies up to `replay_limit` are, larger ones
//! stream through and are sent once (the policies still see the answer). Each send carries a copy
//! of the head, without the extensions of the stages above (the first send reuses their map).
//! Most requests are bodyless and answered at once: they take no box of their own here, only the
//! fast state of [`Replaying`]; reading a body, judging an answer and sending again are boxed
//! where they run.

mod kept;

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

use crate::{
    body::{self, ProxyBody},
    context::{Answer, Policy, Verdict},
    error::{ProxyError, error_chain},
};
use kept::{Found, Kept, KeptBody};

/// Keeps bodies up to `limit` bytes; `resend` judges each send.
#[derive(Clone)]
pub(crate) struct ReplayLayer<R> {
    limit: usize,
    resend: R,
}

impl<R> ReplayLayer<R> {
    pub(crate) fn new(limit: usize, resend: R) -> Self {
        Self { limit, resend }
    }
}

impl<S, R: Clone> Layer<S> for ReplayLayer<R> {
    type Service = Replay<S, R>;
    fn layer(&self, inner: S) -> Replay<S, R> {
        Replay {
            inner,
            limit: self.limit,
            resend: self.resend.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Replay<S, R> {
    inner: S,
    limit: usize,
    resend: R,
}

/// A request and its own policy.
impl<S, R, P> Service<(Request<ProxyBody>, P)> for Replay<S, R>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    // Upstream's future is boxed: polled in place, no pin projection needed.
    S::Future: Unpin + Send,
    R: Policy + Clone + Send + 'static,
    P: Policy + Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Replaying<S, R, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    // Each state in one expression, so the kept head is moved as few times as can be (a move of
    // it is a copy of a few hundred bytes).
    fn call(&mut self, (mut request, policy): (Request<ProxyBody>, P)) -> Self::Future {
        // The head stays in `request`, to be kept; the placeholder body is zero-sized, not boxed.
        let body = std::mem::replace(request.body_mut(), body::empty());
        let resend = self.resend.clone();
        let state = match KeptBody::look(body, self.limit) {
            Found::Kept(body) => {
                let mut first = kept::first(&mut request, &body);
                resend.prepare(&mut first);
                policy.prepare(&mut first);
                State::First {
                    sending: self.inner.call(first),
                    rest: Rest {
                        // The ready service sent first; its clone sends any send after.
                        inner: self.inner.clone(),
                        fresh: resend.clone(),
                        resend,
                        policy,
                        kept: Some(Kept {
                            head: request,
                            body,
                        }),
                    },
                }
            }
            Found::Large(body) => {
                let mut only = kept::once(request, body);
                resend.prepare(&mut only);
                policy.prepare(&mut only);
                State::First {
                    sending: self.inner.call(only),
                    rest: Rest {
                        inner: self.inner.clone(),
                        fresh: resend.clone(),
                        resend,
                        policy,
                        kept: None,
                    },
                }
            }
            Found::Unread(body) => {
                let rest = Rest {
                    inner: self.inner.clone(),
                    fresh: resend.clone(),
                    resend,
                    policy,
                    kept: None,
                };
                State::Slow(Box::pin(rest.read_first(request, body, self.limit)))
            }
        };
        Replaying { state }
    }
}

/// What is left of a request after its first send: what may send it again.
struct Rest<S, R, P> {
    inner: S,
    /// The layer's policy, for the current send.
    resend: R,
    /// A fresh copy of it, for each send the request's policy asks for.
    fresh: R,
    policy: P,
    /// `None`: the body streamed, the request cannot be sent again.
    kept: Option<Kept>,
}

impl<S, R, P> Rest<S, R, P>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>,
    R: Policy + Clone,
    P: Policy,
{
    fn wants(&self, answer: &Answer) -> bool {
        self.resend.wants(answer) || self.policy.wants(answer)
    }

    fn prepare(&self, request: &mut Request<ProxyBody>) {
        self.resend.prepare(request);
        self.policy.prepare(request);
    }

    fn copy(&self, kept: &Kept) -> Request<ProxyBody> {
        let mut request = kept::copy(&kept.head, &kept.body);
        self.prepare(&mut request);
        request
    }

    fn once(&self, head: Request<ProxyBody>, body: ProxyBody) -> Request<ProxyBody> {
        let mut request = kept::once(head, body);
        self.prepare(&mut request);
        request
    }

    async fn send(&mut self, request: Request<ProxyBody>) -> Answer {
        self.inner.ready().await?.call(request).await
    }

    /// A body to read before the first send: kept if it ends within `limit`, else it streams.
    async fn read_first(
        mut self,
        head: Request<ProxyBody>,
        body: ProxyBody,
        limit: usize,
    ) -> Answer {
        let answer = match KeptBody::read(body, limit).await {
            Err(error) => return Err(ProxyError::CallerGone(error_chain(&error))),
            Ok(Ok(body)) => {
                let mut kept = Kept { head, body };
                let mut first = kept::first(&mut kept.head, &kept.body);
                self.prepare(&mut first);
                let answer = self.send(first).await;
                self.kept = Some(kept);
                answer
            }
            Ok(Err(streaming)) => self.send(self.once(head, streaming)).await,
        };
        if !self.wants(&answer) {
            return answer;
        }
        self.after(answer).await
    }

    /// An answer one of the policies wants: judged, first by the layer's, and sent again while
    /// they say so.
    async fn after(mut self, mut answer: Answer) -> Answer {
        let Some(kept) = self.kept.take() else {
            if self.resend.wants(&answer) {
                answer = self.resend.last(answer).await;
            }
            if self.policy.wants(&answer) {
                answer = self.policy.last(answer).await;
            }
            return answer;
        };
        loop {
            if self.resend.wants(&answer) {
                match self.resend.judge(answer).await {
                    Verdict::Again => {
                        answer = self.send(self.copy(&kept)).await;
                        continue;
                    }
                    Verdict::Answer(judged) => answer = judged,
                }
            }
            if !self.policy.wants(&answer) {
                return answer;
            }
            match self.policy.judge(answer).await {
                Verdict::Answer(judged) => return judged,
                Verdict::Again => {
                    self.resend = self.fresh.clone();
                    answer = self.send(self.copy(&kept)).await;
                }
            }
        }
    }
}

/// The future of [`Replay`]: the first send polled in place; the rest, if any, boxed.
pub(crate) struct Replaying<S: Service<Request<ProxyBody>>, R, P> {
    state: State<S, R, P>,
}

// The first send's state is the large one, in place: boxed, it would cost every request an
// allocation.
#[allow(clippy::large_enum_variant)]
enum State<S: Service<Request<ProxyBody>>, R, P> {
    First {
        sending: S::Future,
        rest: Rest<S, R, P>,
    },
    Slow(Pin<Box<dyn Future<Output = Answer> + Send>>),
    Done,
}

/// No field is pinned in place: the first send's future is `Unpin` and the rest is boxed.
impl<S: Service<Request<ProxyBody>>, R, P> Unpin for Replaying<S, R, P> where S::Future: Unpin {}

impl<S, R, P> Future for Replaying<S, R, P>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>
        + Send
        + 'static,
    S::Future: Unpin + Send,
    R: Policy + Clone + Send + 'static,
    P: Policy + Send + 'static,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::First { sending, rest } => {
                    let answer = ready!(Pin::new(sending).poll(cx));
                    if !rest.wants(&answer) {
                        // Dropped in place: most requests end here.
                        this.state = State::Done;
                        return Poll::Ready(answer);
                    }
                    match std::mem::replace(&mut this.state, State::Done) {
                        State::First { rest, .. } => {
                            this.state = State::Slow(Box::pin(rest.after(answer)));
                        }
                        _ => return Poll::Ready(answer),
                    }
                }
                State::Slow(rest) => {
                    let answer = ready!(rest.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(answer);
                }
                State::Done => {
                    return Poll::Ready(Err(ProxyError::Internal(
                        "a replay was polled after its answer".into(),
                    )));
                }
            }
        }
    }
}

/// Sends a request once more when the instance refused it unprocessed (HTTP/2 REFUSED_STREAM,
/// or above a GOAWAY's last stream, as when an instance restarts): nothing of it was acted on.
/// Once per send; a streamed body is gone, so such a request is answered 502.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResendRefused {
    resent: bool,
}

impl Policy for ResendRefused {
    fn wants(&self, answer: &Answer) -> bool {
        !self.resent && matches!(answer, Err(ProxyError::UpstreamRefused { .. }))
    }

    fn judge(&mut self, answer: Answer) -> impl Future<Output = Verdict> + Send {
        if let Err(ProxyError::UpstreamRefused { reason, .. }) = &answer {
            tracing::info!(
                reason,
                "the instance refused the request unprocessed; sending it again"
            );
        }
        self.resent = true;
        std::future::ready(Verdict::Again)
    }
}

#[cfg(test)]
mod tests;
