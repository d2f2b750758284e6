//! The writer's promises (order, no line lost or torn, batches, a bounded exit) and the text
//! format's sameness with the default.

use std::{
    fmt,
    io::{self, Write},
    sync::{Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant, UNIX_EPOCH},
};

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

use super::{
    clock::{civil_date, write_timestamp},
    text::{thousandths, write_thousandths},
    *,
};

/// A `Write` whose bytes and `write` calls the test can read; the first write can be held back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<(Vec<u8>, usize)>>, Option<Duration>);

impl Sink {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|s| s.0.clone()).unwrap_or_default()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(stall) = self.1.take() {
            thread::sleep(stall);
        }
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sink.0.extend_from_slice(buf);
        sink.1 += 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_arrive_in_order_in_few_writes_and_all_are_flushed_at_the_end() -> io::Result<()> {
    let sink = Sink::default();
    let (writer, flush) = super::writer(sink.clone());
    let mut expected = Vec::new();
    for i in 0..5000 {
        let line = format!("line {i}\n");
        writer.make_writer().write_all(line.as_bytes())?;
        expected.extend_from_slice(line.as_bytes());
    }
    drop(flush);
    let (bytes, writes) = sink.0.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(bytes, expected);
    assert!(writes < 50, "{writes} writes for 5000 lines");
    Ok(())
}

/// While the writer is stuck, past `MAX_PENDING_LINES` logging waits: nothing is dropped.
#[test]
fn no_line_is_dropped_while_the_writer_is_slow() -> io::Result<()> {
    let sink = Sink(Arc::default(), Some(Duration::from_millis(300)));
    let (writer, flush) = writer_every(sink.clone(), Duration::ZERO);
    let lines = 3 * MAX_PENDING_LINES;
    let started = Instant::now();
    for i in 0..lines {
        writer
            .make_writer()
            .write_all(format!("{i}\n").as_bytes())?;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "logging never waited"
    );
    drop(flush);
    let bytes = sink.bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.lines().map(str::parse::<usize>).eq((0..lines).map(Ok)));
    Ok(())
}

/// With a window of a second: a line after a quiet spell is written at once; a line right after
/// it waits for the window; both reach the sink.
#[test]
fn a_line_after_a_quiet_spell_goes_at_once_and_a_busy_spell_waits_for_the_window() -> io::Result<()>
{
    let window = Duration::from_secs(1);
    let sink = Sink::default();
    let (writer, _flush) = writer_every(sink.clone(), window);
    let started = Instant::now();
    writer.make_writer().write_all(b"first\n")?;
    while sink.bytes().is_empty() {
        let lone = "a lone line waited for the window";
        assert!(started.elapsed() < window / 2, "{lone}");
        thread::sleep(Duration::from_millis(1));
    }
    writer.make_writer().write_all(b"second\n")?;
    thread::sleep(window / 4);
    let early = "the second line did not wait for the window";
    assert_eq!(sink.bytes(), b"first\n", "{early}");
    while sink.bytes() != b"first\nsecond\n" {
        let never = "the second line was never written";
        assert!(started.elapsed() < window * 5, "{never}");
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A `Write` that never returns, as stderr does when it is a pipe nobody reads.
struct Stuck;

impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        loop {
            thread::park();
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn exiting_does_not_wait_for_ever_on_a_stuck_stderr() -> io::Result<()> {
    let (writer, flush) = super::writer(Stuck);
    writer.make_writer().write_all(b"never read\n")?;
    let started = Instant::now();
    drop(flush);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    Ok(())
}

#[test]
fn lines_from_many_threads_are_never_torn() -> io::Result<()> {
    let sink = Sink::default();
    let (writer, flush) = super::writer(sink.clone());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = writer.clone();
            thread::spawn(move || {
                for i in 0..1000 {
                    let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 300));
                    let _ = writer.make_writer().write_all(line.as_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    drop(flush);
    let bytes = sink.bytes();
    let text = String::from_utf8_lossy(&bytes);
    let mut next = [0usize; 4];
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let (t, i): (usize, usize) = (
            words[1].parse().map_err(io::Error::other)?,
            words[3].parse().map_err(io::Error::other)?,
        );
        assert_eq!(i, next[t], "thread {t} out of order");
        assert_eq!(words.get(4).map_or(0, |x| x.len()), i % 300);
        next[t] += 1;
    }
    assert_eq!(next, [1000; 4]);
    Ok(())
}

/// Formats the same events with `PlainText` and with the default formatter.
fn both(events: impl Fn()) -> (String, String) {
    let run = |plain: bool| {
        let sink = Sink::default();
        let make = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(make);
        if plain {
            let subscriber = builder
                .event_format(PlainText::default())
                .fmt_fields(PlainFields::default())
                .finish();
            tracing::subscriber::with_default(subscriber, &events);
        } else {
            tracing::subscriber::with_default(builder.finish(), &events);
        }
        let bytes = sink.0.lock().map(|s| s.0.clone()).unwrap_or_default();
        // Timestamps differ by when they were taken: compare their shape, then the rest.
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| {
                let (time, rest) = line.split_at(27);
                assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
                format!("{rest}\n")
            })
            .collect::<String>()
    };
    (run(true), run(false))
}

#[derive(Debug)]
struct Outer(std::io::Error);
impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outer failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn plain_text_writes_what_the_default_format_writes() {
    let (plain, default) = both(|| {
        let span = tracing::info_span!("request", id = "abc-1");
        let _entered = span.enter();
        let inner = tracing::debug_span!("login", org = "acme", n = 3);
        let _inner = inner.enter();
        tracing::info!(
            client = "erp",
            route = "acme-gateway",
            method = %http::Method::GET,
            path = "/services/data/v61.0/limits",
            status = 200u16,
            duration_ms = 1.25f64,
            whole = 2.0f64,
            thousandth = 0.001f64,
            measured = 57.805f64,
            tenths = 1234.5f64,
            fine = 57.805403f64,
            tiny = 0.0005f64,
            huge = 1e20f64,
            nan = f64::NAN,
            negative = -3.25f64,
            big = u64::MAX,
            small = i64::MIN,
            neg = -7i64,
            ok = true,
            r#type = "kind",
            quoted = "say \"hi\"\tnow \\ é \u{1b}[31m",
            debug = ?vec!["a", "b"],
            "request"
        );
        tracing::warn!("formatted {} message with \u{1b}[2J escapes", 42);
        tracing::info!("plain message");
        tracing::info!(first = 1u8, "message after a field");
        tracing::info!("é non-ASCII message");
        tracing::info!(
            "C1 \u{85} and DEL \u{7f} and BEL \u{7} in a message: {}",
            "\u{9b}2J"
        );
        tracing::info!(message = "a message \u{1b}[1m given as a field", extra = 1);
        tracing::error!(
            error = &Outer(std::io::Error::other("inner")) as &dyn std::error::Error,
            "failed"
        );
        tracing::trace!(only = "fields");
    });
    tracing::trace!("nothing");
    assert_eq!(plain, default);
    assert_eq!(plain.lines().count(), 9, "{plain}");
}

proptest::proptest! {
    /// Durations in milliseconds with microsecond precision are written as `Debug` writes
    /// them.
    #[test]
    fn thousandths_are_written_as_debug_writes_them(micros in 0u64..10_000_000_000_000) {
        let value = micros as f64 / 1000.0;
        let mut text = String::new();
        match thousandths(value) {
            Some((whole, fraction)) => {
                write_thousandths(&mut text, whole, fraction);
                proptest::prop_assert!(micros > 0);
            }
            None => {
                proptest::prop_assert_eq!(micros, 0);
                text = format!("{value:?}");
            }
        }
        proptest::prop_assert_eq!(text, format!("{value:?}"));
    }
}

#[test]
fn timestamps_are_utc_dates() {
    assert_eq!(civil_date(0), (1970, 1, 1));
    assert_eq!(civil_date(11_016), (2000, 2, 29));
    assert_eq!(civil_date(20_783), (2026, 11, 26));
    assert_eq!(civil_date(47_541), (2100, 3, 1));
    let mut text = String::new();
    let at = UNIX_EPOCH + Duration::new(1_795_668_404, 780_010_999);
    write_timestamp(&mut text, at);
    assert_eq!(text, "2026-11-26T04:46:44.780010Z");
}
