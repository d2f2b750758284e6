//! What the per-request logging costs: the `request` span and its `info!` line (the fields of
//! `RequestLine::write` in `src/layer/trace.rs`) formatted and written to /dev/null, through
//! combinations of formatter (`sfproxy::logs::PlainText`, or tracing-subscriber's default without
//! colours) and writer (the hand-made batched one that was in `src/logs.rs`, kept in `old.rs`;
//! tracing-appender's lossless non-blocking writer as it comes; `sfproxy::logs::writer`, the same
//! writing in batches with a pause after each).
//!
//! Run all of it: `cargo bench --bench logs` (the release profile, ~30 s once built; adds
//! instruction counts when `valgrind` is on PATH). One variant alone:
//! `cargo bench --bench logs -- --variant 0 --lines 200000 [--pace-us 20]` (see [`VARIANTS`]).
//!
//! Figures per request, each the median of [`ROUNDS`] runs, each in a process of its own, with
//! mimalloc as in the proxy:
//! - back to back: [`LINES`] requests in a loop; wall time, and CPU time of the logging thread
//!   and of the writer thread (from `/proc/self/task/*/schedstat`) until the last line is written;
//! - paced: one request every [`PACE_US`] µs, as a busy proxy logs; the time spent inside the
//!   logging calls (where a wake-up of the writer thread is paid), the writer thread's CPU time
//!   and how often it was woken;
//! - instructions (callgrind, each thread counted apart, back to back): the difference between
//!   runs of [`CALLGRIND_LINES`] and of a tenth of that, divided by the difference in lines.
//!
//! Times depend on what else the machine runs (the load average is printed): when the writer
//! thread shares its core, it spins on its queue longer before it sleeps, and is woken less often.

mod old;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    fs::{self, File},
    io::{self, Write},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

const LINES: u64 = 200_000;
const PACE_US: u64 = 20;
const PACED_LINES: u64 = 50_000;
const CALLGRIND_LINES: u64 = 20_000;
const ROUNDS: usize = 5;
/// The name both writers' threads get.
const WRITER_THREAD: &str = "sfproxy-logs";

#[derive(Clone, Copy)]
enum Formatter {
    /// `sfproxy::logs::PlainText` (the hand-made one, unchanged by tracing-appender).
    Shipped,
    /// tracing-subscriber's default, without colours.
    Default,
}

#[derive(Clone, Copy)]
enum Writer {
    /// `old::batched`.
    Old,
    /// `tracing_appender::non_blocking`, lossless, as it comes.
    Appender,
    /// `sfproxy::logs::writer`: the same, writing in batches with a pause after each.
    Shipped,
}

const VARIANTS: [(&str, Formatter, Writer); 5] = [
    ("0 before: old writer", Formatter::Shipped, Writer::Old),
    (
        "1 crates as they come",
        Formatter::Default,
        Writer::Appender,
    ),
    (
        "2 appender as it comes",
        Formatter::Shipped,
        Writer::Appender,
    ),
    ("3 src/logs (shipped)", Formatter::Shipped, Writer::Shipped),
    ("4 default format", Formatter::Default, Writer::Shipped),
];

/// /dev/null, counting the lines that reached it.
struct Sink {
    out: File,
    lines: Arc<AtomicU64>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        self.lines.fetch_add(lines as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One request's logging, as `sfproxy::layer::trace` does it.
#[inline(never)]
fn request(i: u64) {
    let span = tracing::info_span!("request", id = "72997097-9397-4dd1-8cd5-f21f53cd301f");
    let _entered = span.enter();
    let route = "demo-forward";
    let org = "demo";
    let user = "integration@demo.example";
    tracing::info!(
        client = "local",
        route,
        org,
        user,
        method = %http::Method::GET,
        path = "/services/data/v61.0/limits",
        status = 200u16,
        duration_ms = (500 + i % 100_000) as f64 / 1000.0,
        session = "cache",
        "request"
    );
}

/// Installs the global subscriber the way `main` does, with `--log-format text`.
fn install<W>(formatter: Formatter, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(writer);
    let installed = match formatter {
        Formatter::Shipped => tracing::subscriber::set_global_default(
            builder
                .event_format(sfproxy::logs::PlainText::default())
                .fmt_fields(sfproxy::logs::PlainFields::default())
                .finish(),
        ),
        Formatter::Default => tracing::subscriber::set_global_default(builder.finish()),
    };
    if let Err(error) = installed {
        panic!("cannot install the subscriber: {error}");
    }
}

/// CPU time of the thread `task` (`thread-self`, or `self/task/<tid>`), in nanoseconds.
fn cpu_ns(task: &str) -> u64 {
    fs::read_to_string(format!("/proc/{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The writer thread's CPU time (ns) and how many times it went to sleep (each sleep on the
/// queue ends in a wake-up by a logging thread).
fn writer_thread() -> (u64, u64) {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let writer = tasks.flatten().find(|t| {
        fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == WRITER_THREAD)
    });
    let Some(writer) = writer else {
        return (0, 0);
    };
    let cpu = cpu_ns(&format!(
        "self/task/{}",
        writer.file_name().to_string_lossy()
    ));
    let sleeps = fs::read_to_string(writer.path().join("status"))
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?;
            line.trim().parse().ok()
        })
        .unwrap_or(0);
    (cpu, sleeps)
}

/// Runs one variant in this process and prints its figures as `key=value` words.
fn child(variant: usize, lines: u64, pace: Option<Duration>) -> io::Result<()> {
    let (_, formatter, writer) = VARIANTS[variant];
    let written = Arc::new(AtomicU64::new(0));
    let sink = Sink {
        out: File::create("/dev/null")?,
        lines: written.clone(),
    };
    let guard: Box<dyn std::any::Any> = match writer {
        Writer::Old => {
            let (writer, flush) = old::batched(sink)?;
            install(formatter, writer);
            Box::new(flush)
        }
        Writer::Appender => {
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name(WRITER_THREAD)
                .finish(sink);
            install(formatter, writer);
            Box::new(guard)
        }
        Writer::Shipped => {
            let (writer, guard) = sfproxy::logs::writer(sink);
            install(formatter, writer);
            Box::new(guard)
        }
    };
    let started = Instant::now();
    let caller_before = cpu_ns("thread-self");
    let mut in_calls = Duration::ZERO;
    for i in 0..lines {
        match pace {
            None => request(i),
            Some(pace) => {
                let due = started + pace * i as u32;
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
                let at = Instant::now();
                request(i);
                in_calls += at.elapsed();
            }
        }
    }
    let caller = cpu_ns("thread-self") - caller_before;
    while written.load(Ordering::Relaxed) < lines {
        assert!(started.elapsed() < Duration::from_secs(120), "lines lost");
        thread::sleep(Duration::from_micros(200));
    }
    let wall = started.elapsed();
    let (writer_cpu, sleeps) = writer_thread();
    drop(guard);
    let per = |ns: u128| ns as f64 / lines.max(1) as f64;
    println!(
        "wall={:.0} caller={:.0} writer={:.0} in_calls={:.0} sleeps={:.4}",
        per(wall.as_nanos()),
        per(u128::from(caller)),
        per(u128::from(writer_cpu)),
        per(in_calls.as_nanos()),
        per(u128::from(sleeps)),
    );
    Ok(())
}

/// Runs this binary on one variant (under `wrapper` if given) and parses what it printed.
fn run(wrapper: &[&str], variant: usize, lines: u64, pace: u64) -> io::Result<Vec<(String, f64)>> {
    let exe = std::env::current_exe()?;
    let args = [
        "--variant".to_owned(),
        variant.to_string(),
        "--lines".to_owned(),
        lines.to_string(),
        "--pace-us".to_owned(),
        pace.to_string(),
    ];
    let output = match wrapper.split_first() {
        Some((program, rest)) => Command::new(program)
            .args(rest)
            .arg(&exe)
            .args(&args)
            .output()?,
        None => Command::new(&exe).args(&args).output()?,
    };
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The median of the rounds' figures.
fn median_of(rounds: &[Vec<(String, f64)>], key: &str) -> f64 {
    let mut values: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Instructions of the logging thread and of the other threads (the writer's), from callgrind's
/// per-thread output files `<out>-01`, `<out>-02`…
fn instructions(variant: usize, lines: u64, dir: &std::path::Path) -> io::Result<(u64, u64)> {
    let out = dir.join(format!("cg.{variant}.{lines}"));
    let out_arg = format!("--callgrind-out-file={}", out.display());
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        &out_arg,
    ];
    run(&wrapper, variant, lines, 0)?;
    let (mut caller, mut others) = (0, 0);
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(thread) = name.strip_prefix(&format!("cg.{variant}.{lines}-")) else {
            continue;
        };
        let text = fs::read_to_string(entry.path())?;
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if thread == "01" {
            caller += total;
        } else {
            others += total;
        }
    }
    Ok((caller, others))
}

/// System calls per line of a paced run under `strace -f -c`: all, and the ones logging costs.
fn syscalls(variant: usize, dir: &std::path::Path) -> io::Result<String> {
    let out = dir.join(format!("strace.{variant}"));
    let out_arg = out.display().to_string();
    run(
        &["strace", "-f", "-c", "-o", &out_arg],
        variant,
        PACED_LINES,
        PACE_US,
    )?;
    let text = fs::read_to_string(&out)?;
    // `% time  seconds  usecs/call  calls  [errors]  syscall`
    let calls = |name: &str| -> f64 {
        let count = text.lines().find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.last() == Some(&name)).then(|| words.get(3)?.parse::<f64>().ok())?
        });
        count.unwrap_or(0.0) / PACED_LINES as f64
    };
    Ok(format!(
        "{:.3} ({:.3} write, {:.3} futex, {:.3} sched_yield)",
        calls("total"),
        calls("write"),
        calls("futex"),
        calls("sched_yield")
    ))
}

fn parent() -> io::Result<()> {
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let (valgrind, strace) = (has("valgrind"), has("strace"));
    let dir = std::env::temp_dir().join(format!("sfproxy-logs-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!(
        "Per request (span + line), median of {ROUNDS} runs; load average {}\n\
         A: back to back: wall ns, CPU ns of the logging thread + the writer thread\n\
         B: paced, one every {PACE_US} µs: ns in the logging call, writer CPU ns, writer wake-ups\n\
         C: instructions, logging thread + writer thread (callgrind)\n\
         D: system calls, paced (strace -f -c)",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    for (variant, (name, _, _)) in VARIANTS.iter().enumerate() {
        let tight = (0..ROUNDS)
            .map(|_| run(&[], variant, LINES, 0))
            .collect::<io::Result<Vec<_>>>()?;
        let paced = (0..ROUNDS)
            .map(|_| run(&[], variant, PACED_LINES, PACE_US))
            .collect::<io::Result<Vec<_>>>()?;
        let counted = if valgrind {
            let small = instructions(variant, CALLGRIND_LINES / 10, &dir)?;
            let large = instructions(variant, CALLGRIND_LINES, &dir)?;
            let lines = (CALLGRIND_LINES - CALLGRIND_LINES / 10) as f64;
            let caller = large.0.saturating_sub(small.0) as f64 / lines;
            let writer = large.1.saturating_sub(small.1) as f64 / lines;
            format!("{caller:.0} + {writer:.0} = {:.0}", caller + writer)
        } else {
            "(no valgrind)".to_owned()
        };
        let calls = if strace {
            syscalls(variant, &dir)?
        } else {
            "(no strace)".to_owned()
        };
        println!(
            "{name:<24} A {:>5.0}, {:>4.0} + {:>4.0} | B {:>5.0}, {:>4.0}, {:.3} | C {counted} | D {calls}",
            median_of(&tight, "wall"),
            median_of(&tight, "caller"),
            median_of(&tight, "writer"),
            median_of(&paced, "in_calls"),
            median_of(&paced, "writer"),
            median_of(&paced, "sleeps"),
        );
    }
    fs::remove_dir_all(&dir)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match value("--variant") {
        Some(variant) => child(
            variant as usize % VARIANTS.len(),
            value("--lines").unwrap_or(LINES),
            value("--pace-us")
                .filter(|&us| us > 0)
                .map(Duration::from_micros),
        ),
        None => parent(),
    }
}
