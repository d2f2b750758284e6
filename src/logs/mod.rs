//! Where log lines go: to stderr through tracing-appender's non-blocking writer, lossless (past
//! [`MAX_PENDING_LINES`] waiting lines, logging waits for the writer instead of dropping), in the
//! order they were logged; the [`Flush`] guard writes what is left at exit.
//!
//! Two things of our own stay, for what `cargo bench --bench logs` measured per request (the
//! `request` span and its line; release build, 2 shared cores):
//! - [`text`] (and [`clock`]): text lines as tracing-subscriber's default format writes them
//!   without colours, byte for byte, in 6.5k instructions instead of 21.3k (14.8k, a fifth of
//!   what the proxy spends on a request; 0.7 instead of 1.8 µs of CPU back to back);
//! - [`Batches`]: tracing-appender's thread writes each line with a `write` of its own (1.0 system
//!   call per line; 0.005 here), and when it has a core to itself it sleeps after each one, so
//!   that at the pace of a busy proxy (a line every 20 µs) every line also pays a wake-up: on an
//!   otherwise idle machine, 5.7 µs in the logging call and 5.2 µs on the writer thread per line,
//!   against 1.3 and 0.4 with the hand-made writer this replaces. With a pause after each write,
//!   0.001 wake-ups per line, for 0.5k instructions a line more than that hand-made writer (the
//!   copy into tracing-appender's queue).

mod clock;
mod text;

#[cfg(test)]
mod tests;

use std::{
    io::{self, BufWriter, Write},
    thread,
    time::Duration,
};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

pub use text::{PlainFields, PlainText};

/// The writer thread's pause after each write: the lines of a busy spell are written together,
/// a line after a quiet spell at once.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Lines gathered before a write, unless the writer thread has no more waiting.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Past this many lines waiting, logging waits for the writer thread. Its queue's slots are
/// allocated up front, 32 bytes a line: 16,384 take 512 KiB (tracing-appender's default, 128,000,
/// 4 MB).
pub const MAX_PENDING_LINES: usize = 16_384;

/// Writes what is still waiting and stops the writer thread when dropped: keep it alive in `main`
/// for as long as the process logs. It waits at most about 1.1 s (tracing-appender's bound: 0.1 s
/// to queue the end, 1 s for the writer to reach it), as stderr may be a pipe nobody reads.
pub type Flush = WorkerGuard;

/// The `MakeWriter` for the subscriber, writing to `out` from a thread of its own.
pub fn writer<W: Write + Send + 'static>(out: W) -> (NonBlocking, Flush) {
    writer_every(out, BATCH_WINDOW)
}

fn writer_every<W: Write + Send + 'static>(out: W, window: Duration) -> (NonBlocking, Flush) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(MAX_PENDING_LINES)
        .thread_name("sfproxy-logs")
        .finish(Batches {
            out: BufWriter::with_capacity(BATCH_BYTES, out),
            window,
            written: false,
        })
}

/// The writer thread's output. tracing-appender writes each line as it takes it from its queue,
/// and flushes once the queue is empty: here lines are gathered until that flush, which writes
/// them and then pauses, so that lines logged meanwhile wait in the queue without waking the
/// thread, and go in the next write.
struct Batches<W: Write> {
    out: BufWriter<W>,
    window: Duration,
    /// Whether a line came since the last flush (a full buffer may have been written already).
    written: bool,
}

impl<W: Write> Write for Batches<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.written = true;
        self.out.write(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.written) {
            return self.out.flush();
        }
        let flushed = self.out.flush();
        thread::sleep(self.window);
        flushed
    }
}
