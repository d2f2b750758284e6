use super::*;
use ::h2::server::{self, SendResponse};
use tokio::sync::mpsc;

type Accepted = (Request<::h2::RecvStream>, SendResponse<Bytes>);

/// A client connection to an in-memory instance that takes one stream at a time; the
/// instance's streams come out of the channel, and a reason on `goaway` makes it go away:
/// gracefully for `NO_ERROR`, at once with that error for any other.
async fn instance() -> (
    SendRequest<Bytes>,
    mpsc::UnboundedReceiver<Accepted>,
    oneshot::Sender<Reason>,
) {
    let (client, io) = tokio::io::duplex(64 * 1024);
    let (streams, accepted) = mpsc::unbounded_channel();
    let (goaway, mut going) = oneshot::channel::<Reason>();
    tokio::spawn(async move {
        let mut server = server::Builder::new()
            .max_concurrent_streams(1)
            .handshake::<_, Bytes>(io)
            .await
            .unwrap();
        let mut asked = false;
        loop {
            tokio::select! {
                accepted = server.accept() => match accepted {
                    Some(Ok(stream)) => { let _ = streams.send(stream); }
                    _ => break,
                },
                told = &mut going, if !asked => {
                    asked = true;
                    match told {
                        Ok(Reason::NO_ERROR) => server.graceful_shutdown(),
                        Ok(reason) => server.abrupt_shutdown(reason),
                        Err(_) => {}
                    }
                }
            }
        }
    });
    let (send, connection) = ::h2::client::handshake(client).await.unwrap();
    tokio::spawn(connection);
    (send, accepted, goaway)
}

fn get(path: &str) -> Request<ProxyBody> {
    let mut request = Request::new(body::empty());
    *request.uri_mut() = format!("https://instance.example{path}").parse().unwrap();
    request
}

async fn request(to: &SendRequest<Bytes>, path: &str) -> Result<Response<ProxyBody>, Failure> {
    let ready = to.clone().ready().await.unwrap();
    send_on(ready, get(path), &Arc::default(), DEFAULT_MAX_HEADER_LIST).await
}

fn refused(sent: Result<Response<ProxyBody>, Failure>) -> bool {
    matches!(sent, Err(Failure::Refused(_)))
}

#[tokio::test]
async fn a_refused_stream_is_reported_as_refused_not_as_failed() {
    let (send, mut accepted, _goaway) = instance().await;
    let sending = tokio::spawn(async move { refused(request(&send, "/refused").await) });
    let (_request, mut respond) = accepted.recv().await.unwrap();
    respond.send_reset(Reason::REFUSED_STREAM);
    assert!(sending.await.unwrap(), "not reported as refused");
}

#[tokio::test]
async fn a_request_queued_behind_the_stream_limit_is_refused_when_the_instance_goes_away() {
    let (send, mut accepted, goaway) = instance().await;
    let first = tokio::spawn({
        let send = send.clone();
        async move { request(&send, "/first").await.is_ok() }
    });
    let (_request, mut respond) = accepted.recv().await.unwrap();
    // The instance takes one stream at a time: this one waits inside h2 for a free slot.
    let queued = tokio::spawn(async move { refused(request(&send, "/queued").await) });
    tokio::task::yield_now().await;
    goaway.send(Reason::NO_ERROR).unwrap();
    assert!(
        queued.await.unwrap(),
        "the queued request not reported as refused"
    );
    // The stream it had taken before going away is still answered.
    let ok = http::Response::builder().status(200).body(()).unwrap();
    respond.send_response(ok, true).unwrap();
    assert!(first.await.unwrap(), "the first request answered");
}

#[tokio::test]
async fn a_goaway_for_an_error_refuses_the_streams_it_did_not_take_and_fails_the_others_plainly() {
    let (send, mut accepted, goaway) = instance().await;
    let first = tokio::spawn({
        let send = send.clone();
        async move { request(&send, "/first").await }
    });
    let (_request, _respond) = accepted.recv().await.unwrap();
    let queued = tokio::spawn(async move { refused(request(&send, "/queued").await) });
    tokio::task::yield_now().await;
    // As an instance does when one stream's header block overwhelms it.
    goaway.send(Reason::ENHANCE_YOUR_CALM).unwrap();
    assert!(
        queued.await.unwrap(),
        "the stream above the GOAWAY's last one: resent"
    );
    match first.await.unwrap() {
        Err(Failure::NoAnswer(why)) => {
            assert_eq!(
                why.reason, "the instance closed the connection",
                "{}",
                why.detail
            );
        }
        _ => panic!("the stream the instance had taken fails with no answer"),
    }
}

#[tokio::test]
async fn headers_over_the_instances_limit_are_not_sent() {
    let (send, mut accepted, _goaway) = instance().await;
    let mut big = get("/big");
    big.headers_mut()
        .insert("x-big", HeaderValue::from_str(&"x".repeat(1000)).unwrap());
    // :method GET, :scheme https, :authority instance.example, :path /big, x-big: 1000 x.
    let size = (7 + 3) + (7 + 5) + (10 + 16) + (5 + 4) + (5 + 1000) + 5 * 32;
    let ready = send.clone().ready().await.unwrap();
    let sent = send_on(ready, big, &Arc::default(), size as u32 - 1).await;
    assert!(
        matches!(sent, Err(Failure::HeadersTooLarge { size: s, limit }) if s == size && limit as usize == size - 1)
    );
    let ready = send.clone().ready().await.unwrap();
    let mut big = get("/big");
    big.headers_mut()
        .insert("x-big", HeaderValue::from_str(&"x".repeat(1000)).unwrap());
    let sending = tokio::spawn(async move {
        let _ = send_on(ready, big, &Arc::default(), size as u32).await;
    });
    let (request, _respond) = accepted.recv().await.unwrap();
    assert_eq!(request.uri().path(), "/big", "at the limit: sent");
    assert!(accepted.try_recv().is_err(), "the one over it never was");
    sending.abort();
}

/// An in-memory connection whose instance end is never polled: pings go unanswered.
/// (The handle keeps the connection open: h2 closes one nothing refers to.)
async fn silent_connection() -> (PingPong, SendRequest<Bytes>, tokio::io::DuplexStream) {
    let (client, silent) = tokio::io::duplex(64 * 1024);
    let (send, mut connection) = ::h2::client::handshake(client).await.unwrap();
    let pings = connection.ping_pong().unwrap();
    tokio::spawn(connection);
    (pings, send, silent)
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_answers_nothing_is_given_up_within_two_intervals_and_a_timeout() {
    let (pings, _send, _silent) = silent_connection().await;
    let started = tokio::time::Instant::now();
    let why = keep_alive(Some(pings), &AtomicU64::new(0)).await;
    assert!(why.contains("no answer to a ping"), "{why}");
    let took = started.elapsed();
    assert!(
        took >= KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT
            && took <= 2 * KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT,
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn answer_data_arriving_keeps_a_connection_whose_pong_is_late() {
    let (pings, _send, _silent) = silent_connection().await;
    let received = Arc::new(AtomicU64::new(0));
    let arriving = received.clone();
    // Nothing for the first interval, so the ping goes out; then data, but never the pong.
    tokio::spawn(async move {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL + Duration::from_secs(5)).await;
        loop {
            arriving.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let kept = tokio::time::timeout(Duration::from_secs(300), keep_alive(Some(pings), &received));
    assert!(kept.await.is_err(), "closed while data kept arriving");
}

#[test]
fn only_unprocessed_streams_count_as_refused() {
    let refused = ::h2::Error::from(Reason::REFUSED_STREAM);
    assert!(refused_unprocessed(&refused));
    assert!(!refused_unprocessed(&::h2::Error::from(
        Reason::INTERNAL_ERROR
    )));
    assert!(!refused_unprocessed(&::h2::Error::from(Reason::CANCEL)));
}
