#!/usr/bin/env python3
"""Where sfproxy spends its CPU per request, by feature, from a `perf script --inline` dump.

    perf record --call-graph dwarf -p $(pidof sfproxy) -- sleep 10
    perf script -F comm,tid,ip,sym,dso --inline | python3 benches/profile_buckets.py -

Each sample goes to the innermost frame (leaf first) that names a feature below, so the malloc
inside a header clone counts for the clone. Kernel samples are split by the system call they
are under and the feature that made it. Needs a binary with at least line tables
(CARGO_PROFILE_<P>_DEBUG=line-tables-only) for inlined frames to be named. Run by
`PROFILE=1 bash benches/run.sh`.
"""

import collections
import re
import sys

# (bucket, regex on a frame's symbol), most specific first.
FEATURES = [
    ("log line (tracing fmt + stderr write)", r"tracing_subscriber::fmt|Event::dispatch|tracing_core::event|Stderr|format_event|DefaultVisitor"),
    ("tracing span (new/enter/exit per poll)", r"tracing::span|Instrumented|sharded_slab|tracing_subscriber::registry|span::Span"),
    ("metrics (label strings, registry lookups, histograms)", r"metrics::|metrics_exporter_prometheus|metrics_util"),
    ("session cache (moka, Key strings)", r"moka::|SessionCache|cache::Key"),
    ("request id (uuid v4, getrandom)", r"uuid::|request_id|getrandom"),
    ("limits layer (uri.to_string, Capped body)", r"header_bytes|layer::limits"),
    ("strip_hop_by_hop (str header names re-parsed)", r"strip_hop_by_hop"),
    ("with_session (clone of headers, extensions)", r"with_session"),
    ("buffer_up_to / body boxing", r"buffer_up_to|body::full|body::boxed"),
    ("route layer", r"layer::route"),
    ("identify layer", r"layer::identify"),
    ("trace layer (other)", r"layer::trace"),
    ("upstream call (uri, Host header, timeout)", r"sfproxy::upstream"),
    ("session layer (other)", r"layer::session"),
    ("rustls / aws-lc (TLS records to the upstream)", r"rustls|aws_lc|_aesni|aes_hw|gcm"),
    ("hyper client connection (h1 encode/parse)", r"hyper::proto::h1::role::Client|hyper::client|UpgradeableConnection"),
    ("hyper-util client (pool, send_request)", r"hyper_util::client"),
    ("hyper server (h1 parse/encode, dispatch, stack glue)", r"hyper::proto|hyper::server|hyper_util::server|auto::Connection"),
    ("sfproxy accept loop", r"sfproxy::server"),
    ("tokio runtime / io driver", r"tokio::"),
]
FEAT = [(name, re.compile(rx)) for name, rx in FEATURES]
SYSCALL = re.compile(r"writev|libc_write|recv|libc_read|epoll_wait|futex|getrandom|sendmsg|accept4|close|shutdown|syscall")
ALLOC = re.compile(r"malloc|free|_int_|unlink_chunk|consolidate|realloc|tcache|memmove|memcpy")
FRAME = re.compile(r"\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")

total = 0
buckets = collections.Counter()
kernel = collections.Counter()
alloc = collections.Counter()


def feature_of(frames):
    for sym, _ in frames:
        for name, rx in FEAT:
            if rx.search(sym):
                return name
    return None


def flush(frames):
    global total
    if not frames:
        return
    total += 1
    feature = feature_of(frames)
    leaf_sym, leaf_dso = frames[0]
    if "kernel" in leaf_dso:
        call = next((s for s, d in frames if "kernel" not in d and SYSCALL.search(s)), "other")
        kernel[f"{re.sub(r'[( ].*', '', call)[:28]:28s} under {feature or '?'}"] += 1
        buckets["kernel (system calls; loopback TCP of both ends; wake-ups)"] += 1
        return
    if ALLOC.search(leaf_sym) and ("libc" in leaf_dso or leaf_dso == "inlined"):
        alloc[feature or "?"] += 1
    buckets[feature or "other: " + leaf_sym[:50]] += 1


frames = []
source = sys.stdin if len(sys.argv) < 2 or sys.argv[1] == "-" else open(sys.argv[1])
for line in source:
    if not line.startswith(("\t", " ")):
        flush(frames)
        frames = []
        continue
    match = FRAME.match(line)
    if match:
        frames.append((match.group(1), match.group(2)))
flush(frames)

if not total:
    sys.exit("no samples")
print(f"{total} samples; share of sfproxy's CPU time")
for name, n in buckets.most_common(30):
    print(f"{100 * n / total:6.1f}%  {name}")
print(f"\nof which libc malloc/free/memcpy at the leaf: {100 * sum(alloc.values()) / total:.1f}%")
for name, n in alloc.most_common(8):
    print(f"{100 * n / total:6.1f}%    under {name}")
print("\nkernel, by system call and the feature that made it:")
for name, n in kernel.most_common(10):
    print(f"{100 * n / total:6.1f}%  {name}")
