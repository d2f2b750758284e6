//! Where log lines go: appended to one shared buffer, written to stderr in batches by a thread of
//! their own.
//!
//! A busy proxy writes a line per request. Handing each line to a writer thread on its own (a
//! channel send, a wake-up, a `write`) cost more than formatting it; here a line is a copy into a
//! buffer under an uncontended lock, and the writer thread writes at most once per
//! [`BATCH_WINDOW`] (sooner once [`BATCH_BYTES`] are waiting): a line after a quiet spell is
//! written at once, lines of a busy spell together.
//! Nothing is dropped: past [`MAX_PENDING`] bytes (stderr blocked), logging waits for the writer.
//! Lines keep the order in which they were logged. [`Flush`] writes what is left at exit.
//!
//! [`PlainText`] formats text lines the way tracing-subscriber's default format does without
//! colours, byte for byte, at a fraction of the cost: the default wraps every field name and
//! `=` in a styling writer and escapes strings a character at a time.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    io::{self, Write},
    mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{
    field::{Visit, VisitOutput},
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
        format::{DefaultFields, DefaultVisitor, Format, Writer},
    },
    registry::LookupSpan,
};

/// The shortest time between two writes, unless a batch fills.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// A batch this large is written at once.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Past this, logging waits for the writer instead of growing the buffer.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;
/// How long exiting waits for the last lines: stderr may be a pipe nobody reads.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
    /// Set by the writer thread once everything is written after `closed`.
    finished: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for a first line, a full batch, or the end.
    to_writer: Condvar,
    /// Loggers wait here while `MAX_PENDING` bytes are waiting; [`Flush`] for `finished`.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` given to the tracing subscriber; cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is still waiting and stops the writer thread when dropped (waiting at most
/// [`EXIT_WAIT`]): keep it alive in `main` for as long as the process logs.
pub struct Flush {
    shared: Arc<Shared>,
}

/// Starts the writer thread over `out`.
pub fn batched<W: Write + Send + 'static>(out: W) -> io::Result<(BatchedWriter, Flush)> {
    batched_every(out, BATCH_WINDOW)
}

fn batched_every<W: Write + Send + 'static>(
    mut out: W,
    window: Duration,
) -> io::Result<(BatchedWriter, Flush)> {
    let shared = Arc::new(Shared::default());
    {
        let shared = shared.clone();
        thread::Builder::new()
            .name("sfproxy-logs".into())
            .spawn(move || {
                write_batches(&shared, &mut out, window);
                shared.lock().finished = true;
                shared.drained.notify_all();
            })?;
    }
    Ok((
        BatchedWriter {
            shared: shared.clone(),
        },
        Flush { shared },
    ))
}

fn write_batches(shared: &Shared, out: &mut impl Write, window: Duration) {
    let mut spare = Vec::new();
    let mut last_write: Option<Instant> = None;
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closed {
            pending = shared
                .to_writer
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.lines.is_empty() {
            return; // closed, and everything written
        }
        let wait = last_write.map_or(Duration::ZERO, |at| window.saturating_sub(at.elapsed()));
        if !wait.is_zero() && !pending.closed && pending.lines.len() < BATCH_BYTES {
            pending = shared
                .to_writer
                .wait_timeout_while(pending, wait, |p| p.lines.len() < BATCH_BYTES && !p.closed)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let batch = mem::replace(&mut pending.lines, mem::take(&mut spare));
        drop(pending);
        shared.drained.notify_all();
        // Nowhere to report a failed write to stderr: the batch is dropped, logging goes on.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        last_write = Some(Instant::now());
        spare = batch;
        spare.clear();
        if spare.capacity() > 4 * BATCH_BYTES {
            spare = Vec::new(); // a burst is over: do not keep its buffer
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        let mut pending = self.shared.lock();
        pending.closed = true;
        self.shared.to_writer.notify_one();
        // A writer stuck on a full pipe must not keep the process from exiting.
        let _ = self
            .shared
            .drained
            .wait_timeout_while(pending, EXIT_WAIT, |p| !p.finished);
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = shared
                .drained
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        let after = pending.lines.len();
        drop(pending);
        // Wake the writer for the first line of a batch and when a batch fills; not per line.
        if before == 0 || (before < BATCH_BYTES && after >= BATCH_BYTES) {
            shared.to_writer.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The default text format without colours, faster (see the module docs). Lines it does not
/// speed up — coloured ones for a terminal, and `log` records — go to the default formatter.
#[derive(Default)]
pub struct PlainText {
    default: Format,
}

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes()
            || !writer.sanitizes_ansi_escapes()
            || meta.fields().field("log.target").is_some()
        {
            return self.default.format_event(ctx, writer, event);
        }
        with_line(|line| {
            write_timestamp(line, SystemTime::now());
            line.push_str(match *meta.level() {
                Level::TRACE => " TRACE ",
                Level::DEBUG => " DEBUG ",
                Level::INFO => "  INFO ",
                Level::WARN => "  WARN ",
                Level::ERROR => " ERROR ",
            });
            if let Some(scope) = ctx.event_scope() {
                let mut seen = false;
                for span in scope.from_root() {
                    line.push_str(span.metadata().name());
                    seen = true;
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                        if !fields.is_empty() {
                            line.push('{');
                            line.push_str(fields);
                            line.push('}');
                        }
                    }
                    line.push(':');
                }
                if seen {
                    line.push(' ');
                }
            }
            line.push_str(meta.target());
            line.push_str(": ");
            let mut fields = Fields::new(line);
            event.record(&mut fields);
            fields.result?;
            line.push('\n');
            writer.write_str(line)
        })
    }
}

/// Runs `format` on this thread's line buffer, emptied (a fresh one if a `Debug` impl logs
/// while a line is being written).
fn with_line(format: impl FnOnce(&mut String) -> fmt::Result) -> fmt::Result {
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let result = format(&mut line);
            if line.capacity() > 64 * 1024 {
                *line = String::new(); // one huge line must not stay resident
            }
            result
        }
        Err(_) => format(&mut String::new()),
    })
}

/// Span fields (`request{id="…"}`) written as [`DefaultFields`] writes them, through the same fast
/// paths as [`PlainText`]'s event fields; coloured output goes to [`DefaultFields`].
#[derive(Default)]
pub struct PlainFields {
    default: DefaultFields,
}

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        if writer.has_ansi_escapes() || !writer.sanitizes_ansi_escapes() {
            return self.default.format_fields(writer, fields);
        }
        with_line(|line| {
            let mut visitor = Fields::new(line);
            fields.record(&mut visitor);
            visitor.result?;
            writer.write_str(line)
        })
    }
}

/// Writes fields as the default format does (with ANSI sanitising, without colours): `message`
/// first as it is, then `name=value` with values in their `Debug` form, separated by spaces.
/// Straight into a `String`: the default goes through a `dyn Write` for every piece.
struct Fields<'a> {
    out: &'a mut String,
    first: bool,
    result: fmt::Result,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut String) -> Self {
        Self {
            out,
            first: true,
            result: Ok(()),
        }
    }

    fn name(&mut self, field: &Field) {
        if !mem::take(&mut self.first) {
            self.out.push(' ');
        }
        let name = field.name();
        self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('=');
    }

    /// What this writer does not speed up (errors and their sources, odd messages) is written by
    /// the default visitor.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(Writer::new(self.out), self.first);
        record(&mut visitor);
        self.first = false;
        self.result = visitor.finish();
    }

    /// A message as the default writes it: as it is, terminal control characters escaped.
    fn message(&mut self, value: &dyn fmt::Debug) {
        if !mem::take(&mut self.first) {
            self.out.push(' ');
        }
        self.result = write!(Message(self.out), "{value:?}");
    }

    fn record_integer(&mut self, field: &Field, value: impl itoa::Integer + fmt::Debug) {
        if is_log_metadata(field) {
            return;
        }
        if field.name() == "message" {
            return self.by_default(|v| v.record_debug(field, &value));
        }
        self.name(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }
}

/// `log.target`, `log.file`…: what tracing-log adds to a `log` record, written by the default
/// format as the line's target, not as fields.
fn is_log_metadata(field: &Field) -> bool {
    field.name().starts_with("log.")
}

/// Bytes that `Debug` of a string writes as they are: printable ASCII but `"` and `\`.
static AS_IS_IN_DEBUG: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    table
};

/// Writes a message's text as tracing-subscriber's escaping writer does: ESC, BEL, BS, FF, DEL
/// and C1 controls escaped; here a run without any is written at once, not a char at a time.
struct Message<'a>(&'a mut String);

impl fmt::Write for Message<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let plain = text
            .bytes()
            .all(|b| b.is_ascii() && !matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f));
        if plain {
            self.0.push_str(text);
            return Ok(());
        }
        for ch in text.chars() {
            match ch {
                '\x1b' => self.0.push_str("\\x1b"),
                '\x07' => self.0.push_str("\\x07"),
                '\x08' => self.0.push_str("\\x08"),
                '\x0c' => self.0.push_str("\\x0c"),
                '\x7f' => self.0.push_str("\\x7f"),
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.push(ch),
            }
        }
        Ok(())
    }
}

/// `value` as whole and thousandths when it is exactly the double nearest such a decimal (as
/// durations in milliseconds with microsecond precision are): then `Debug` writes that decimal,
/// shortest form, and [`write_thousandths`] can write it without float formatting.
fn thousandths(value: f64) -> Option<(u64, u64)> {
    let scaled = (value * 1000.0).round();
    // Below 1 (0.000…) `Debug` may switch to exponents; above 1e15 a double has no thousandths.
    if !(1.0..1e15).contains(&scaled) || scaled / 1000.0 != value {
        return None;
    }
    let scaled = scaled as u64;
    Some((scaled / 1000, scaled % 1000))
}

/// `12.5`, `12.0`, `0.001`: what `Debug` writes for the double nearest `whole.fraction`.
fn write_thousandths(out: &mut String, whole: u64, fraction: u64) {
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(whole));
    out.push('.');
    if fraction == 0 {
        out.push('0');
        return;
    }
    let text = digits.format(fraction);
    out.push_str(&"00"[..3 - text.len()]);
    out.push_str(text.trim_end_matches('0'));
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        if field.name() == "message" {
            return self.message(&format_args!("{value}"));
        }
        self.name(field);
        // `Debug` of a string that needs no escaping is the string in quotes.
        if value.bytes().all(|b| AS_IS_IN_DEBUG[usize::from(b)]) {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            self.result = write!(self.out, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.record_integer(field, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.record_integer(field, value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        if field.name() == "message" {
            return self.by_default(|v| v.record_f64(field, value));
        }
        self.name(field);
        match thousandths(value) {
            Some((whole, fraction)) => write_thousandths(self.out, whole, fraction),
            None => self.result = write!(self.out, "{value:?}"),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        if field.name() == "message" {
            return self.message(value);
        }
        self.name(field);
        self.result = write!(self.out, "{value:?}");
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.by_default(|v| v.record_error(field, value));
        }
    }
}

/// `2026-11-26T06:26:44.780010Z` (RFC 3339, microseconds, UTC). The date and time up to the
/// second are formatted once per second per thread.
fn write_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            *second = seconds;
            text.clear();
            let (year, month, day) = civil_date(seconds / 86_400);
            let time = seconds % 86_400;
            let _ = write!(
                text,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                time / 3600,
                time % 3600 / 60,
                time % 60
            );
        }
        let mut micros = itoa::Buffer::new();
        let micros = micros.format(since.subsec_micros());
        out.push_str(text);
        out.push('.');
        out.push_str(&"000000"[micros.len()..]);
        out.push_str(micros);
        out.push('Z');
    });
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes and `write` calls the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
        let (writer, flush) = batched(sink.clone())?;
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

    /// With a window of a second: a line after a quiet spell is written at once; a line right
    /// after it waits for the window; both reach the sink.
    #[test]
    fn a_line_after_a_quiet_spell_goes_at_once_and_a_busy_spell_waits_for_the_window()
    -> io::Result<()> {
        let window = Duration::from_secs(1);
        let sink = Sink::default();
        let (writer, _flush) = batched_every(sink.clone(), window)?;
        let bytes = || sink.0.lock().map(|s| s.0.clone()).unwrap_or_default();
        let started = Instant::now();
        writer.make_writer().write_all(b"first\n")?;
        while bytes().is_empty() {
            assert!(
                started.elapsed() < window / 2,
                "a lone line waited for the window"
            );
            thread::sleep(Duration::from_millis(1));
        }
        writer.make_writer().write_all(b"second\n")?;
        thread::sleep(window / 4);
        assert_eq!(
            bytes(),
            b"first\n",
            "the second line did not wait for the window"
        );
        while bytes() != b"first\nsecond\n" {
            assert!(
                started.elapsed() < window * 5,
                "the second line was never written"
            );
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
        let (writer, flush) = batched(Stuck)?;
        writer.make_writer().write_all(b"never read\n")?;
        let started = Instant::now();
        drop(flush);
        let waited = started.elapsed();
        assert!(
            waited >= EXIT_WAIT / 2 && waited < EXIT_WAIT * 3,
            "{waited:?}"
        );
        Ok(())
    }

    #[test]
    fn lines_from_many_threads_are_never_torn() -> io::Result<()> {
        let sink = Sink::default();
        let (writer, flush) = batched(sink.clone())?;
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
        let bytes = sink.0.lock().map(|s| s.0.clone()).unwrap_or_default();
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
}
