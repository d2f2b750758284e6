//! Serving threads: one single-threaded tokio runtime per core, each serving the caller
//! connections handed to it, as nginx's worker processes do.
//!
//! On tokio's work-stealing runtime a request crossed threads several times (the caller's
//! connection task, the upstream connection's task, hyper's task per upstream request), and
//! each crossing was a wake-up of another thread: with wrk and the upstream on the same two
//! cores that cost about a fifth of the throughput (docs/performance.md: 0.99 → 1.27 × nginx).
//! Here a connection is served to its end on the thread it was given, and its requests go out on
//! that thread's own upstream connection (`upstream::h2`), so a request stays on one thread.
//!
//! The price: a connection cannot move, so a few very busy keep-alive connections can load the
//! threads unevenly; each new connection goes to the thread serving the fewest.

use std::{
    cell::Cell,
    future::Future,
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use tokio::sync::mpsc;

/// How long a stopping thread lets its remaining tasks' blocking work run on.
const STOP_WAIT: Duration = Duration::from_millis(500);

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving thread this code runs on (0, 1, …), `None` elsewhere.
pub(crate) fn current() -> Option<usize> {
    INDEX.get()
}

/// The serving threads; dropping this stops them (the tasks they still have are dropped).
pub(crate) struct Workers {
    threads: Vec<Worker>,
}

/// Builds a connection's task on the thread that runs it.
type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections handed to this thread and not yet finished.
    open: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `count` threads (at least one), named `sfproxy-worker`.
    pub(crate) fn start(count: usize) -> io::Result<Workers> {
        let threads = (0..count.max(1))
            .map(start_worker)
            .collect::<io::Result<_>>()?;
        Ok(Workers { threads })
    }

    /// Runs the future `connection()` makes to its end on the thread serving the fewest
    /// connections (a connection that becomes a tunnel counts until the tunnel ends). It is made there, not here: its memory comes from that thread's heap and
    /// returns to it (the allocator reuses memory freed by the thread that allocated it at
    /// once, memory from other threads only later), and its sockets belong to that thread.
    pub(crate) fn serve<F>(&self, connection: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self
            .threads
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        let open = Busy::on(&worker.open);
        let _ = worker.jobs.send(Box::new(move || {
            tokio::spawn(async move {
                let _open = open;
                connection().await;
            });
        }));
    }
}

/// Counts as one connection of its thread while held (also when its thread stops first).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn on(open: &Arc<AtomicUsize>) -> Busy {
        open.fetch_add(1, Ordering::Relaxed);
        Busy(open.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn start_worker(index: usize) -> io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (jobs, mut next) = mpsc::unbounded_channel::<Job>();
    let open = Arc::<AtomicUsize>::default();
    // The thread names itself once it runs: waiting for that, the threads are all there (and
    // named) when `start` returns, before the proxy says it is ready.
    let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
    thread::Builder::new()
        .name("sfproxy-worker".into())
        .spawn(move || {
            INDEX.set(Some(index));
            let _ = started.send(());
            // Until the `Workers` is gone.
            runtime.block_on(async {
                while let Some(job) = next.recv().await {
                    job();
                }
            });
            runtime.shutdown_timeout(STOP_WAIT);
        })?;
    running
        .recv()
        .map_err(|_| io::Error::other("a serving thread stopped as it started"))?;
    Ok(Worker { jobs, open })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_thread_and_run_there() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.threads.len(), 2);
        let (held, hold) = tokio::sync::watch::channel(());
        let (ran, mut on) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let (mut hold, ran) = (hold.clone(), ran.clone());
            workers.serve(move || async move {
                let _ = ran.send(current());
                let _ = hold.changed().await;
            });
        }
        let mut threads = Vec::new();
        for _ in 0..4 {
            threads.push(on.recv().await.unwrap());
        }
        threads.sort();
        assert_eq!(threads, [Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(current(), None, "the test's own thread serves nothing");
        drop(held);
        // Finished connections no longer count: the next two are spread again.
        while workers
            .threads
            .iter()
            .any(|w| w.open.load(Ordering::Relaxed) > 0)
        {
            tokio::task::yield_now().await;
        }
        for _ in 0..2 {
            let ran = ran.clone();
            workers.serve(move || async move {
                let _ = ran.send(current());
                std::future::pending::<()>().await;
            });
        }
        let (a, b) = (on.recv().await.unwrap(), on.recv().await.unwrap());
        assert_ne!(a, b);
    }
}
