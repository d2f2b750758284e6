//! The hand-made batched writer of `src/logs.rs` as it was before tracing-appender (commit
//! a49e68a), kept only for the benchmark to compare against: lines appended to one buffer under a
//! lock, written by a thread of its own at most every `BATCH_WINDOW`. (Its text formatter is
//! still in `src/logs/text.rs`, the same code.)

use std::{
    io::{self, Write},
    mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use tracing_subscriber::fmt::MakeWriter;

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
