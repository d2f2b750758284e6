//! Text lines as tracing-subscriber's default format writes them without colours, byte for byte
//! (a test holds it to that), for a third of the instructions (figures in [`super`]): the default
//! wraps every field name and `=` in a styling writer, escapes strings a character at a time and
//! formats the clock, integers and floats through `core::fmt`. Coloured lines (a terminal) and
//! `log` records go to the default formatter.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    mem,
    time::SystemTime,
};

use tracing::{Event, Level, Subscriber, field::Field};

use super::clock::write_timestamp;
use tracing_subscriber::{
    field::{RecordFields, Visit, VisitOutput},
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{DefaultFields, DefaultVisitor, Format, Writer},
    },
    registry::LookupSpan,
};

/// The event format of `--log-format text`.
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
                            line.extend(["{", fields.as_str(), "}"]);
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

/// Span fields (`request{id="…"}`) as [`DefaultFields`] writes them (which writes coloured ones).
#[derive(Default)]
pub struct PlainFields {
    default: DefaultFields,
}

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
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

/// Runs `format` on this thread's line buffer, emptied (a fresh one if a `Debug` impl logs while
/// a line is being written).
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

/// Fields as the default writes them without colours: `message` first as it is (terminal controls
/// escaped), then `name=value` with values in their `Debug` form, separated by spaces; straight
/// into a `String`, where the default goes through a `dyn Write` for every piece.
struct Fields<'a> {
    out: &'a mut String,
    first: bool,
    result: fmt::Result,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut String) -> Self {
        let (first, result) = (true, Ok(()));
        Self { out, first, result }
    }

    /// Whether to skip `field`: after an error, and `log.*` (written as the line's target).
    fn skip(&self, field: &Field) -> bool {
        self.result.is_err() || field.name().starts_with("log.")
    }

    fn name(&mut self, field: &Field) {
        if !mem::take(&mut self.first) {
            self.out.push(' ');
        }
        let name = field.name();
        self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('=');
    }

    /// What is not sped up here (errors and their sources, odd messages) goes to the default.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(Writer::new(self.out), self.first);
        record(&mut visitor);
        self.first = false;
        self.result = visitor.finish();
    }

    fn message(&mut self, value: &dyn fmt::Debug) {
        if !mem::take(&mut self.first) {
            self.out.push(' ');
        }
        self.result = write!(Message(self.out), "{value:?}");
    }

    fn record_integer(&mut self, field: &Field, value: impl itoa::Integer + fmt::Debug) {
        if self.skip(field) {
        } else if field.name() == "message" {
            self.by_default(|v| v.record_debug(field, &value));
        } else {
            self.name(field);
            self.out.push_str(itoa::Buffer::new().format(value));
        }
    }
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

/// A message's text as the default's escaping writer writes it: ESC, BEL, BS, FF, DEL and C1
/// controls escaped; a run without any at once, not a char at a time.
struct Message<'a>(&'a mut String);

impl fmt::Write for Message<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text
            .bytes()
            .all(|b| b.is_ascii() && !b"\x1b\x07\x08\x0c\x7f".contains(&b))
        {
            self.0.push_str(text);
            return Ok(());
        }
        for ch in text.chars() {
            match ch {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", ch as u32)?;
                }
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.push(ch),
            }
        }
        Ok(())
    }
}

/// `value` as whole and thousandths when it is exactly the double nearest such a decimal (as
/// durations in milliseconds to the microsecond are): then `Debug` writes that decimal, which
/// [`write_thousandths`] writes without float formatting.
pub(super) fn thousandths(value: f64) -> Option<(u64, u64)> {
    let scaled = (value * 1000.0).round();
    // Below 1 (0.000…) `Debug` may switch to exponents; above 1e15 a double has no thousandths.
    if !(1.0..1e15).contains(&scaled) || scaled / 1000.0 != value {
        return None;
    }
    let scaled = scaled as u64;
    Some((scaled / 1000, scaled % 1000))
}

/// `12.5`, `12.0`, `0.001`: what `Debug` writes for the double nearest `whole.fraction`.
pub(super) fn write_thousandths(out: &mut String, whole: u64, fraction: u64) {
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(whole));
    out.push('.');
    let text = digits.format(fraction);
    if fraction == 0 {
        out.push('0');
    } else {
        out.push_str(&"00"[..3 - text.len()]);
        out.push_str(text.trim_end_matches('0'));
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.skip(field) {
        } else if field.name() == "message" {
            self.message(&format_args!("{value}"));
        } else if value.bytes().all(|b| AS_IS_IN_DEBUG[usize::from(b)]) {
            // `Debug` of a string that needs no escaping: the string in quotes.
            self.name(field);
            self.out.extend(["\"", value, "\""]);
        } else {
            self.name(field);
            self.result = write!(self.out, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_integer(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_integer(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.skip(field) {
        } else if field.name() == "message" {
            self.by_default(|v| v.record_f64(field, value));
        } else {
            self.name(field);
            match thousandths(value) {
                Some((whole, fraction)) => write_thousandths(self.out, whole, fraction),
                None => self.result = write!(self.out, "{value:?}"),
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.skip(field) {
        } else if field.name() == "message" {
            self.message(value);
        } else {
            self.name(field);
            self.result = write!(self.out, "{value:?}");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.by_default(|v| v.record_error(field, value));
        }
    }
}
