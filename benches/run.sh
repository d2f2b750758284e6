#!/usr/bin/env bash
# sfproxy's load benchmark: sfproxy against nginx with a static bearer header, and against the
# direct call, on this machine, on loopback only, in one bounded run (about 7 minutes on 2 cores
# with a warm build).
#
#   bash benches/run.sh
#
# What it does (issue 5):
#  1. installs what is missing (nginx, wrk, curl, openssl, python3; apt-get) and builds sfproxy
#     --release;
#  2. makes a throwaway CA and server certificate and starts the UPSTREAM, nginx with TLS, as the
#     Salesforce instance (benches/upstream.nginx.conf);
#  3. starts `sfproxy stand-in` as the token endpoint and sfproxy `run` on benches/sfproxy.toml
#     (instance_url pinned to the upstream);
#  4. starts the PEER, nginx as a reverse proxy with a static bearer (benches/peer.nginx.conf),
#     with as many workers as sfproxy has serving threads;
#  5. drives each with wrk at 16, 64 and 256 connections: direct (https to the upstream), nginx,
#     sfproxy gateway form, sfproxy forward (absolute-form) form; in two core placements:
#       shared: nothing pinned, wrk, upstream and proxy compete for every core;
#       pinned: wrk, the upstream and the stand-in on the first half of the cores, the proxy
#               under test (sfproxy or the nginx peer) alone on the other half;
#  5b. in the shared placement, the SOAP cell: a ~2 KB Partner query envelope through sfproxy at 64
#     connections (the session written into the envelope) against the REST cell, same rounds;
#  6. prints one table and writes it to benches/results/<date>-nproc<N>.md;
#  7. measures cold start (1,000 concurrent requests on an empty cache), a 100 MB upload
#     streaming through sfproxy, and the latency of a session replay.
#
# Knobs (environment): DURATION (s per measured run, 2), ROUNDS (9: each row measures its four
# targets one after another, this many times, odd rounds in one order and even rounds in the
# reverse; a cell is the median run, its ratios the median of the rounds' ratios, so a target is
# compared with its peer measured seconds apart on a noisy machine), WARMUP (s per cell, before its first round, 3), CONNS ("16 64 256"),
# MODES ("shared pinned"), UPSTREAM_H2 (1, as shipped: the upstream offers HTTP/2 by ALPN, as
# Salesforce's instances do, and sfproxy uses it; the nginx peer speaks HTTP/1.1 to it whatever
# is offered, since nginx cannot proxy to an HTTP/2 upstream. 0: HTTP/1.1 only, for both),
# SFPROXY_LOG (RUST_LOG of sfproxy, "info" as shipped), KEEP (1:
# keep the temp dir), CARGO_TARGET_DIR, BURST (1000), UPLOAD_MB (100), PROFILE (1: also record a
# `perf` profile of sfproxy, gateway form, 64 connections, into benches/results/), SFPROXY_BIN (a
# binary to measure instead of the release build, e.g. one built with line tables for `perf`),
# RESULTS_FILE (where the report goes instead of benches/results/<date>-nproc<N>.md), QUIET_WAIT
# (seconds to wait, at most, for an idle machine before starting; 0).
set -euo pipefail

started_at=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# The code measured, read before the report (rewritten by this run) makes the tree dirty.
REV=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')
DURATION=${DURATION:-2}
ROUNDS=${ROUNDS:-9}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"16 64 256"}
MODES=${MODES:-"shared pinned"}
UPSTREAM_H2=${UPSTREAM_H2:-1}
SFPROXY_LOG=${SFPROXY_LOG:-info}
BURST=${BURST:-1000}
UPLOAD_MB=${UPLOAD_MB:-100}
NPROC=$(nproc)
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf '[%4ds] %s\n' $(($(date +%s) - started_at)) "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

# --- 0. a quiet machine ----------------------------------------------------------------------
# QUIET_WAIT=SECONDS: first wait (at most that long) until the machine has been idle (< 10 % busy)
# for 15 s, so other work does not land in the figures; the "other" column shows what did.
busy_pct() { # over the next 5 s
    local a b
    read -ra a < <(head -1 /proc/stat); sleep 5; read -ra b < <(head -1 /proc/stat)
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    echo $((100 * busy / (busy + b[4] + b[5] - a[4] - a[5] + 1)))
}
if [ "${QUIET_WAIT:-0}" -gt 0 ]; then
    quiet=0
    say "waiting up to ${QUIET_WAIT}s for an idle machine"
    while ((quiet < 3 && $(date +%s) - started_at < QUIET_WAIT)); do
        if (($(busy_pct) < 10)); then quiet=$((quiet + 1)); else quiet=0; fi
    done
    ((quiet >= 3)) || say "the machine is still busy: measuring anyway (see the other column)"
fi
waited=$(($(date +%s) - started_at))

# --- 1. tools and build ------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk) # `wrk --version` exits 1: test presence only
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "building sfproxy --release"
(cd "$ROOT" && cargo build --release --locked --quiet)
SFPROXY=${SFPROXY_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/sfproxy"}
[ -x "$SFPROXY" ] || die "no binary at $SFPROXY"

# --- processes, and their end ------------------------------------------------------------------
RUN=$(mktemp -d /tmp/sfproxy-bench.XXXXXX)
chmod 755 "$RUN" # nginx workers may run as another user: they must reach the files in here
mkdir -p "$RUN/revoked" "$RUN/standin"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
declare -A PID=() # name -> pid of every process this script started

stop() { # name: TERM, then KILL after 5 s
    local name=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    unset "PID[$name]"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local name
    for name in "${!PID[@]}"; do stop "$name"; done
    if [ "${KEEP:-0}" = 1 ]; then say "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port: until something accepts on 127.0.0.1:port (10 s)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}

# Free loopback ports, all picked at once so they differ.
read -r UPSTREAM_PORT SINK_PORT PEER_PORT SFPROXY_PORT ADMIN_PORT STANDIN_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

# --- 2. certificates (a throwaway CA, in the temp dir) ------------------------------------------
say "making a CA and the upstream's certificate in $RUN"
(
    cd "$RUN"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sfproxy bench CA" \
        -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout upstream.key -out upstream.csr 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >upstream.ext
    openssl x509 -req -in upstream.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile upstream.ext -out upstream.crt 2>/dev/null
    chmod 644 ca.crt upstream.crt
)

# The upstream's answers and the SOAP cell's call (benches/bodies.py says what each is).
LIMITS_JSON=$(python3 "$HERE/bodies.py" limits)
SOAP_ANSWER=$(python3 "$HERE/bodies.py" soap-answer)
python3 "$HERE/bodies.py" soap-query >"$RUN/soap-query.xml"

render() { # template out workers
    sed -e "s|@RUN@|$RUN|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
        -e "s|@PEER_PORT@|$PEER_PORT|g" -e "s|@SFPROXY_PORT@|$SFPROXY_PORT|g" \
        -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" -e "s|@STANDIN_PORT@|$STANDIN_PORT|g" \
        -e "s|@WORKERS@|${3:-1}|g" -e "s|@LIMITS_JSON@|$LIMITS_JSON|g" \
        -e "s|@SOAP_ANSWER@|$SOAP_ANSWER|g" \
        -e "s|@HTTP2@|$([ "$UPSTREAM_H2" = 1 ] && echo http2)|g" "$1" >"$2"
}

# --- placement of processes on cores -----------------------------------------------------------
half=$((NPROC / 2))
cpus() { if [ "$1" = "$2" ]; then echo "$1"; else echo "$1-$2"; fi; }
LOAD_CPUS=$(cpus 0 $((half - 1)))           # pinned mode: wrk, upstream, stand-in
PROXY_CPUS=$(cpus "$half" $((NPROC - 1))) # pinned mode: the proxy under test
PIN_LOAD=() PIN_PROXY=() WRK_THREADS=$NPROC UPSTREAM_WORKERS=$NPROC
place() { # mode
    if [ "$1" = pinned ]; then
        PIN_LOAD=(taskset -c "$LOAD_CPUS") PIN_PROXY=(taskset -c "$PROXY_CPUS")
        WRK_THREADS=$half UPSTREAM_WORKERS=$half
    else
        PIN_LOAD=() PIN_PROXY=() WRK_THREADS=$NPROC UPSTREAM_WORKERS=$NPROC
    fi
}

# --- 3., 4. the servers ------------------------------------------------------------------------
start_upstream() {
    render "$HERE/upstream.nginx.conf" "$RUN/upstream.conf" "$UPSTREAM_WORKERS"
    "${PIN_LOAD[@]}" nginx -c "$RUN/upstream.conf" -e "$RUN/upstream-error.log" &
    PID[upstream]=$!
    wait_port "$UPSTREAM_PORT"
}

start_standin() {
    rm -f "$RUN/standin/"*
    "${PIN_LOAD[@]}" "$SFPROXY" stand-in --listen "127.0.0.1:$STANDIN_PORT" --dir "$RUN/standin" \
        --public-url "https://127.0.0.1:$UPSTREAM_PORT" >"$RUN/standin.log" 2>&1 &
    PID[standin]=$!
    wait_port "$STANDIN_PORT"
    cat "$RUN/standin/ca.crt" "$RUN/ca.crt" >"$RUN/ca-bundle.crt"
}

start_sfproxy() { # a fresh process: empty session cache, empty pool
    stop sfproxy
    render "$HERE/sfproxy.toml" "$RUN/sfproxy.toml"
    RUST_LOG=$SFPROXY_LOG "${PIN_PROXY[@]}" "$SFPROXY" run --config "$RUN/sfproxy.toml" \
        >>"$RUN/sfproxy.log" 2>&1 &
    PID[sfproxy]=$!
    for _ in $(seq 100); do
        [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ] && return 0
        kill -0 "${PID[sfproxy]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$RUN/sfproxy.log" >&2
    die "sfproxy did not become ready"
}

# The serving threads of sfproxy (one single-threaded runtime each, named sfproxy-worker): what
# the peer's worker count must match.
serving_threads() { cat /proc/"${PID[sfproxy]}"/task/*/comm | grep -c -x 'sfproxy-worker'; }

start_peer() {
    local workers
    workers=$(serving_threads) || die "no serving threads (sfproxy-worker) found in sfproxy"
    render "$HERE/peer.nginx.conf" "$RUN/peer.conf" "$workers"
    "${PIN_PROXY[@]}" nginx -c "$RUN/peer.conf" -e "$RUN/peer-error.log" &
    PID[peer]=$!
    wait_port "$PEER_PORT"
}

start_world() { # mode
    local name
    for name in peer sfproxy standin upstream; do stop "$name"; done
    place "$1"
    start_upstream
    start_standin
    start_sfproxy
    start_peer
}

# --- measuring helpers --------------------------------------------------------------------------
URL_DIRECT="https://127.0.0.1:$UPSTREAM_PORT/services/data/v61.0/limits"
URL_PEER="http://127.0.0.1:$PEER_PORT/acme/services/data/v61.0/limits"
URL_GATEWAY="http://127.0.0.1:$SFPROXY_PORT/acme/services/data/v61.0/limits"
URL_SOAP="http://127.0.0.1:$SFPROXY_PORT/acme/services/Soap/u/61.0"
URL_FORWARD="http://acme.my.salesforce.com/services/data/v61.0/limits" # sent through sfproxy
CLK_TCK=$(getconf CLK_TCK)
TIMEFORMAT='%3R %3U %3S' # bash's `time`: wall time of the wrk run, and wrk's user and system CPU

metric() { # name: its value summed over labels, from sfproxy's /metrics
    curl -s --max-time 60 "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; } # pid VmHWM|VmRSS
pids_of() {                                                             # name: its pid and children
    echo "${PID[$1]}"
    pgrep -P "${PID[$1]}" || true
}
# Busy CPU ticks of the whole machine (user nice system irq softirq steal), from /proc/stat.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ours_ticks() { # every server this script started
    local name pids=()
    for name in "${!PID[@]}"; do mapfile -t -O "${#pids[@]}" pids < <(pids_of "$name"); done
    cpu_ticks "${pids[@]}"
}
cpu_ticks() { # pids...: user+system CPU time, in clock ticks, of every thread of these processes
    local p total=0
    for p in "$@"; do
        total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# Functional check before measuring: every target answers the upstream's 200 and its header.
check_targets() {
    local out
    out=$(curl -s --max-time 60 -D - -o /dev/null --cacert "$RUN/ca.crt" "$URL_DIRECT")
    grep -qi '^sforce-limit-info' <<<"$out" || die "direct call: $out"
    for url in "$URL_PEER" "$URL_GATEWAY"; do
        out=$(curl -s --max-time 60 -D - -o /dev/null "$url")
        grep -q '^HTTP/1.1 200' <<<"$out" && grep -qi '^sforce-limit-info' <<<"$out" ||
            die "$url: $out $(tail -3 "$RUN/sfproxy.log")"
    done
    out=$(curl -s --max-time 60 -D - -o /dev/null -x "http://127.0.0.1:$SFPROXY_PORT" "$URL_FORWARD")
    grep -q '^HTTP/1.1 200' <<<"$out" || die "forward form: $out"
}

declare -A R=() # "mode conns target[ round]" -> "rps p50_us p99_us errors cpu_us_per_req other wrk up proxy"
declare -A XN=() XP=() XD=() # "mode conns target" -> median over rounds of ×nginx req/s, ×nginx p99, ×direct req/s
declare -A HWM=() # "mode conns" -> sfproxy VmHWM (kB) after that row
declare -A POOL=() # "mode conns" -> sfproxy's connections to the upstream after that row
upstream_conns() {
    ss -tnp state established "( dport = :$UPSTREAM_PORT )" 2>/dev/null | grep -c "pid=${PID[sfproxy]}," || true
}
# One measured run of a cell (warm-up first in round 1), with the CPU time of every party alongside.
cell() { # mode conns target round
    local mode=$1 c=$2 target=$3 round=$4 url abs="" proxy=() body=""
    case $target in
    direct) url=$URL_DIRECT ;;
    nginx) url=$URL_PEER; mapfile -t proxy < <(pids_of peer) ;;
    gateway | rest) url=$URL_GATEWAY; proxy=("${PID[sfproxy]}") ;;
    soap) url=$URL_SOAP; body="$RUN/soap-query.xml"; proxy=("${PID[sfproxy]}") ;;
    post) url=$URL_GATEWAY; body="$RUN/soap-query.xml"; proxy=("${PID[sfproxy]}") ;;
    forward) url="http://127.0.0.1:$SFPROXY_PORT/"; abs=$URL_FORWARD; proxy=("${PID[sfproxy]}") ;;
    esac
    local upstream
    mapfile -t upstream < <(pids_of upstream)
    local wrk=(wrk -t"$WRK_THREADS" -c"$c" --timeout 5s -s "$HERE/wrk.lua")
    if [ "$round" = 1 ]; then
        WRK_ABSOLUTE_URL=$abs WRK_BODY_FILE=$body "${PIN_LOAD[@]}" "${wrk[@]}" -d"${WARMUP}s" "$url" >/dev/null
    fi
    local up0 px0 busy0 ours0 up1 px1 busy1 ours1 out="$RUN/wrk-$mode-$c-$target-$round.txt"
    up0=$(cpu_ticks "${upstream[@]}") px0=$(cpu_ticks "${proxy[@]}") busy0=$(busy_ticks) ours0=$(ours_ticks)
    { time WRK_ABSOLUTE_URL=$abs WRK_BODY_FILE=$body "${PIN_LOAD[@]}" "${wrk[@]}" -d"${DURATION}s" --latency "$url" >"$out"; } \
        2>"$RUN/wrk-time.txt"
    up1=$(cpu_ticks "${upstream[@]}") px1=$(cpu_ticks "${proxy[@]}") busy1=$(busy_ticks) ours1=$(ours_ticks)
    grep -q '^RESULT' "$out" || die "wrk: $(cat "$out")"
    # CPU per party in cores (wrk from bash's `time`); "other": what the machine spent on anything
    # but this benchmark (other sessions, builds) during the measured run: a cell with much of it
    # is disturbed. CPU µs/req is that of the server under test (direct: the upstream).
    R["$mode $c $target $round"]=$(awk -v hz="$CLK_TCK" -v up=$((up1 - up0)) \
        -v px=$((px1 - px0)) -v busy=$((busy1 - busy0)) -v ours=$((ours1 - ours0)) \
        -v wrk_cpu="$(tail -1 "$RUN/wrk-time.txt")" -v direct=$([ "$target" = direct ] && echo 1 || echo 0) '
        /^RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            errors = v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
            split(wrk_cpu, w, " ")  # wall, user, system seconds
            d = w[1]
            other = (busy - ours) / hz - (w[2] + w[3])
            served = direct ? up : px
            printf "%s %s %s %d %.1f %.2f %.2f %.2f %s", v["rps"], v["p50_us"], v["p99_us"], errors,
                served / hz * 1e6 / v["requests"], (other < 0 ? 0 : other) / d, (w[2] + w[3]) / d,
                up / hz / d, direct ? "-" : sprintf("%.2f", px / hz / d)
        }' "$out")
    say "  $mode c=$c $target (round $round): $(cut -d' ' -f1 <<<"${R["$mode $c $target $round"]}") req/s"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.4f", a / b; else printf "-" }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# A row's cells from its rounds: each figure the median of the rounds (errors: their sum), and
# each ratio the median of the rounds' ratios.
summarise() { # mode conns
    local mode=$1 c=$2 t r i col
    for t in direct nginx gateway forward; do
        local fields=()
        for i in 1 2 3 4 5 6 7 8 9; do
            col=$(for r in $(seq "$ROUNDS"); do cut -d' ' -f"$i" <<<"${R["$mode $c $t $r"]}"; done)
            if [ "$i" = 4 ]; then
                fields+=("$(awk '{ s += $1 } END { print s + 0 }' <<<"$col")")
            elif [ "$i" = 9 ] && [ "$t" = direct ]; then
                fields+=(-)
            else
                fields+=("$(median <<<"$col")")
            fi
        done
        R["$mode $c $t"]="${fields[*]}"
        [ "$t" = direct ] && continue
        local xn=() xp=() xd=()
        for r in $(seq "$ROUNDS"); do
            read -r rps _ p99 _ <<<"${R["$mode $c $t $r"]}"
            read -r n_rps _ n_p99 _ <<<"${R["$mode $c nginx $r"]}"
            read -r d_rps _ <<<"${R["$mode $c direct $r"]}"
            xn+=("$(ratio "$rps" "$n_rps")") xp+=("$(ratio "$p99" "$n_p99")") xd+=("$(ratio "$rps" "$d_rps")")
        done
        XN["$mode $c $t"]=$(printf '%s\n' "${xn[@]}" | median)
        XP["$mode $c $t"]=$(printf '%s\n' "${xp[@]}" | median)
        XD["$mode $c $t"]=$(printf '%s\n' "${xd[@]}" | median)
    done
}

# --- 5. throughput ----------------------------------------------------------------------------
throughput() { # mode
    local mode=$1 c t
    check_targets
    say "$mode: sfproxy has $(serving_threads) serving thread(s); the nginx peer as many workers;" \
        "wrk -t$WRK_THREADS; $ROUNDS rounds of ${DURATION}s per cell after ${WARMUP}s of warm-up"
    local r
    for c in $CONNS; do
        for r in $(seq "$ROUNDS"); do
            # Odd rounds in one order, even rounds in the reverse: a machine growing faster or
            # slower over a row favours no target.
            local order=(direct nginx gateway forward)
            [ $((r % 2)) = 0 ] && order=(forward gateway nginx direct)
            for t in "${order[@]}"; do cell "$mode" "$c" "$t" "$r"; done
        done
        summarise "$mode" "$c"
        HWM["$mode $c"]=$(status_kb "${PID[sfproxy]}" VmHWM)
        POOL["$mode $c"]=$(upstream_conns)
    done
    grep -q ' 5[0-9][0-9] ' "$RUN/peer-access.log" && say "WARNING: the nginx peer answered 5xx"
    return 0
}

# --- 5b. SOAP -----------------------------------------------------------------------------------
# The ~2 KB Partner query envelope through sfproxy (gateway form, 64 connections), its session
# written into the envelope, against the REST cell (the same GET as gateway's) in the same rounds,
# and against the same envelope POSTed to the REST path (a body, no rewrite): what the body costs
# every party (wrk, sfproxy, the upstream) apart from the rewrite.
soap_row() { # mode
    local mode=$1 r t
    local out
    out=$(curl -s --max-time 10 -H 'Content-Type: text/xml; charset=utf-8' --data-binary @"$RUN/soap-query.xml" "$URL_SOAP")
    grep -q '<queryResponse>' <<<"$out" || die "SOAP cell: $out"
    say "$mode: SOAP against REST, 64 connections, $ROUNDS rounds"
    for r in $(seq "$ROUNDS"); do
        local order=(rest post soap)
        [ $((r % 2)) = 0 ] && order=(soap post rest)
        for t in "${order[@]}"; do cell "$mode" 64 "$t" "$r"; done
    done
    local xs=() xp=()
    for t in rest post soap; do
        local fields=() i col
        for i in 1 2 3 4 5; do
            col=$(for r in $(seq "$ROUNDS"); do cut -d' ' -f"$i" <<<"${R["$mode 64 $t $r"]}"; done)
            if [ "$i" = 4 ]; then fields+=("$(awk '{ s += $1 } END { print s + 0 }' <<<"$col")")
            else fields+=("$(median <<<"$col")"); fi
        done
        R["$mode 64 $t"]="${fields[*]}"
    done
    for r in $(seq "$ROUNDS"); do
        xs+=("$(ratio "$(cut -d' ' -f1 <<<"${R["$mode 64 soap $r"]}")" "$(cut -d' ' -f1 <<<"${R["$mode 64 rest $r"]}")")")
        xp+=("$(ratio "$(cut -d' ' -f1 <<<"${R["$mode 64 soap $r"]}")" "$(cut -d' ' -f1 <<<"${R["$mode 64 post $r"]}")")")
    done
    X[soap_ratio]=$(printf '%s\n' "${xs[@]}" | median)
    X[soap_post_ratio]=$(printf '%s\n' "${xp[@]}" | median)
    X[soap_hwm]=$(status_kb "${PID[sfproxy]}" VmHWM)
    X[soap_mode]=$mode
}

# --- 7. cold start, replay, streaming ----------------------------------------------------------
declare -A X=()
extras() {
    local out
    say "cold start: $BURST concurrent forward requests on a fresh sfproxy (no session, no pool)"
    start_sfproxy
    X[cold]=$(timeout 120 python3 "$HERE/burst.py" --proxy "127.0.0.1:$SFPROXY_PORT" --url "$URL_FORWARD" -n "$BURST")
    X[cold_tokens]=$(metric sfproxy_token_requests_total)
    X[warm]=$(timeout 120 python3 "$HERE/burst.py" --proxy "127.0.0.1:$SFPROXY_PORT" --url "$URL_FORWARD" -n "$BURST")
    X[cold_hwm]=$(status_kb "${PID[sfproxy]}" VmHWM)
    X[cold_conns]=$(upstream_conns)

    say "one request: cold (fresh sfproxy) against warm; then session replays"
    start_sfproxy
    local q="http://acme.my.salesforce.com/services/data/v61.0/query?q=SELECT+Id+FROM+Account"
    timed() { curl -s --max-time 60 -o /dev/null -w '%{http_code} %{time_total}\n' -x "http://127.0.0.1:$SFPROXY_PORT" "$q"; }
    X[one_cold]=$(timed)
    local warm=() replay=() i
    for i in $(seq 21); do warm+=("$(timed)"); done
    # Expire the current session the way Salesforce does: the upstream starts answering 401
    # INVALID_SESSION_ID for the token it last saw; the request that meets it is replayed.
    for i in $(seq 5); do
        touch "$RUN/revoked/$(tail -1 "$RUN/tokens.log")"
        replay+=("$(timed)")
        timed >/dev/null # a request on the new session, so the pooled connection is warm again
    done
    X[one_warm]=$(printf '%s\n' "${warm[@]}" | sort -k2 -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
    X[replay]=$(printf '%s\n' "${replay[@]}" | sort -k2 -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
    X[replay_all]=$(printf '%s\n' "${replay[@]}" | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $2 * 1000 }')
    X[replays]=$(metric sfproxy_session_replays_total)
    X[replay_tokens]=$(metric sfproxy_token_requests_total)

    say "streaming: a ${UPLOAD_MB} MB POST through sfproxy (replay_limit 1 MiB)"
    head -c "$((UPLOAD_MB * 1024 * 1024))" /dev/urandom >"$RUN/upload.bin"
    start_sfproxy
    local up="http://acme.my.salesforce.com/services/data/v61.0/jobs/ingest/7508c00000BENCH/batches"
    timed >/dev/null
    X[rss_before]=$(status_kb "${PID[sfproxy]}" VmRSS)
    X[upload]=$(curl -s --max-time 60 -o /dev/null -w '%{http_code} %{time_total}' -x "http://127.0.0.1:$SFPROXY_PORT" \
        -X POST -H 'Content-Type: text/csv' -T "$RUN/upload.bin" "$up")
    X[rss_hwm]=$(status_kb "${PID[sfproxy]}" VmHWM)
    X[upload_direct]=$(curl -s --max-time 60 -o /dev/null -w '%{http_code} %{time_total}' --cacert "$RUN/ca.crt" \
        -X POST -H 'Content-Type: text/csv' -T "$RUN/upload.bin" "https://127.0.0.1:$UPSTREAM_PORT${up#http://acme.my.salesforce.com}")
    rm -f "$RUN/upload.bin"
}

# --- run ---------------------------------------------------------------------------------------
extras_done=0
for mode in $MODES; do
    [ "$mode" = pinned ] && ((NPROC < 2)) && { say "one core: no pinned mode"; continue; }
    say "mode $mode: starting upstream, stand-in, sfproxy, peer"
    start_world "$mode"
    throughput "$mode"
    if [ "$mode" = shared ]; then soap_row "$mode"; extras; extras_done=1; fi
done
if [ "$extras_done" = 0 ]; then start_world shared; extras; fi

DATE=$(date +%Y-%m-%d)
OUT=${RESULTS_FILE:-"$HERE/results/$DATE-nproc$NPROC.md"}
mkdir -p "$(dirname "$OUT")"

# --- optional: where sfproxy spends its time --------------------------------------------------
if [ "${PROFILE:-0}" = 1 ]; then
    if command -v perf >/dev/null; then
        say "profile: perf record of sfproxy, gateway form, 64 connections, ${DURATION}s"
        (WRK_ABSOLUTE_URL="" "${PIN_LOAD[@]}" wrk -t"$WRK_THREADS" -c64 -d"$((DURATION + 2))s" -s "$HERE/wrk.lua" \
            "$URL_GATEWAY" >"$RUN/wrk-profile.txt") &
        PID[wrk_profile]=$!
        sleep 1
        perf record -q -F 499 --call-graph dwarf,16384 -p "${PID[sfproxy]}" -o "$RUN/perf.data" \
            -- sleep "$DURATION" 2>/dev/null
        wait "${PID[wrk_profile]}" || true
        unset "PID[wrk_profile]"
        PROFILE_OUT="${OUT%.md}-profile.txt"
        {
            echo "perf profile of sfproxy ($SFPROXY), gateway form, 64 connections, $mode placement;"
            grep '^Requests/sec' "$RUN/wrk-profile.txt" || true
            echo; echo "== self time by symbol =="
            perf report -i "$RUN/perf.data" --no-children --sort dso,symbol --stdio -g none \
                --percent-limit 0.4 2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-200
            echo; echo "== inclusive time (children) by symbol =="
            perf report -i "$RUN/perf.data" --children --sort symbol --stdio -g none \
                --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-200
            echo; echo "== by feature (benches/profile_buckets.py) =="
            perf script -i "$RUN/perf.data" -F comm,tid,ip,sym,dso --inline 2>/dev/null |
                python3 "$HERE/profile_buckets.py" -
        } >"$PROFILE_OUT"
        say "profile written to ${PROFILE_OUT#"$ROOT"/}"
    else
        say "PROFILE=1: no perf on this machine (apt-get install linux-perf)"
    fi
fi

# --- 6. the report -----------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
# Prints PASS/FAIL for a condition given as an awk expression over a and b.
verdict() { awk -v a="$1" -v b="$2" "BEGIN { exit !($3) }" && echo PASS || echo FAIL; }
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))' "$1" "$2"; }

report() {
    local cpu_model mode c t
    cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
    echo "# sfproxy load benchmark, $DATE, nproc $NPROC"
    echo
    echo "\`bash benches/run.sh\` at $REV." \
        "$cpu_model; $(uname -sr); $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }');" \
        "sfproxy log level $SFPROXY_LOG (nginx peer: default access log); upstream HTTP/2: $([ "$UPSTREAM_H2" = 1 ] && echo "offered by ALPN, as Salesforce's instances do: sfproxy uses it, the nginx peer speaks HTTP/1.1 (it cannot proxy to HTTP/2)" || echo "off: HTTP/1.1 for both proxies")."
    echo "Each cell: wrk with the same threads and connections, ${WARMUP} s warm-up, then ${ROUNDS} rounds of ${DURATION} s" \
        "measured, the four targets of a row one after another in each round (odd rounds direct, nginx, gateway," \
        "forward; even rounds the reverse); a cell shows the median of its rounds (errors: their sum), and each" \
        "ratio is the median of the rounds' ratios (each against the peer measured seconds apart in its round). GET /services/data/v61.0/limits (1 KB JSON). Latencies from wrk --latency."
    echo
    echo "Placement: **shared** = nothing pinned: wrk ($NPROC threads), the upstream ($NPROC workers) and the proxy" \
        "($NPROC serving threads / $NPROC nginx workers) compete for all $NPROC cores." \
        "**pinned** = wrk ($half thread(s)), the upstream ($half worker(s)) and the stand-in on CPU $LOAD_CPUS;" \
        "the proxy under test alone on CPU $PROXY_CPUS ($((NPROC - half)) serving thread(s) / as many nginx workers)." \
        "In pinned mode *direct* is wrk and the upstream sharing CPU $LOAD_CPUS: the proxied rows add a stage on a core of its own."
    echo
    echo "CPU µs/req: CPU time (user+system) of the server under test per request (direct: the upstream;" \
        "nginx: the peer's workers; sfproxy: the whole process). Cores: CPU used during the measured run, in" \
        "cores, by wrk, the upstream, the proxy, and *other* processes that are not part of the benchmark" \
        "(other work on the machine): cells with other above ~0.1 are disturbed." \
        "Load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| placement | conns | target | req/s | p50 ms | p99 ms | errors | ×nginx req/s | ×nginx p99 | ×direct req/s | sfproxy VmHWM, upstream conns | CPU µs/req | cores wrk/upstream/proxy/other |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for mode in $MODES; do
        for c in $CONNS; do
            [ -n "${R["$mode $c direct"]:-}" ] || continue
            for t in direct nginx gateway forward; do
                read -r rps p50 p99 err cpu other wrk_c up_c px_c <<<"${R["$mode $c $t"]}"
                local xn="" xp="" xd="" hwm=""
                case $t in
                gateway | forward)
                    xn=$(printf '%.2f' "${XN["$mode $c $t"]}") xp=$(printf '%.2f' "${XP["$mode $c $t"]}")
                    hwm="$(awk -v k="${HWM["$mode $c"]}" 'BEGIN { printf "%.1f MB", k / 1024 }'), ${POOL["$mode $c"]} conns"
                    ;;
                esac
                [ "$t" = direct ] || xd=$(printf '%.2f' "${XD["$mode $c $t"]}")
                local name=$t
                [ "$t" = gateway ] && name="sfproxy gateway"
                [ "$t" = forward ] && name="sfproxy forward"
                [ "$t" = nginx ] && name="nginx peer"
                printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$c" "$name" \
                    "$rps" "$(ms "$p50")" "$(ms "$p99")" "$err" "$xn" "$xp" "$xd" "$hwm" "$cpu" "$wrk_c/$up_c/$px_c/$other"
            done
        done
    done
    echo
    echo "## Cold start, replay, streaming (shared placement, fresh sfproxy for each)"
    echo
    if [ -n "${X[soap_ratio]:-}" ]; then
        echo
        echo "SOAP ($ROUNDS rounds, ${X[soap_mode]} placement, 64 connections, gateway form): POST /services/Soap/u/61.0 with a" \
            "$(wc -c <"$RUN/soap-query.xml")-byte Partner query envelope, its session written into the envelope's SessionHeader," \
            "against the REST cell (GET /services/data/v61.0/limits) and the same envelope POSTed to that REST path" \
            "(*post*: the body, without the rewrite) in the same rounds, alternating."
        echo
        echo "| cell | req/s | p50 ms | p99 ms | errors | CPU µs/req |"
        echo "|---|---:|---:|---:|---:|---:|"
        for t in rest post soap; do
            read -r rps p50 p99 err cpu <<<"${R["${X[soap_mode]} 64 $t"]}"
            echo "| $t | $(printf '%.0f' "$rps") | $(ms "$p50") | $(ms "$p99") | $err | $cpu |"
        done
        echo
        echo "SOAP ×REST req/s (median of the rounds' ratios): $(printf '%.2f' "${X[soap_ratio]}"); ×post: $(printf '%.2f' "${X[soap_post_ratio]}"); sfproxy VmHWM after: $(awk -v k="${X[soap_hwm]}" 'BEGIN { printf "%.1f MB", k / 1024 }')."
    fi
    local cold=${X[cold]} warm=${X[warm]}
    echo "- **Cold start**: $BURST concurrent forward requests on a fresh sfproxy (no session, no upstream connection):" \
        "statuses $(jget "$cold" statuses), all answered in $(jget "$cold" all_answered_ms) ms (median $(jget "$cold" p50_ms) ms);" \
        "**token requests: ${X[cold_tokens]}**. The same burst right after, warm: all answered in $(jget "$warm" all_answered_ms) ms" \
        "(median $(jget "$warm" p50_ms) ms), statuses $(jget "$warm" statuses). sfproxy VmHWM after both: $(awk -v k="${X[cold_hwm]}" 'BEGIN { printf "%.1f MB", k / 1024 }')" \
        "($BURST caller connections at once); upstream connections after both: ${X[cold_conns]}."
    read -r s_cold t_cold <<<"${X[one_cold]}"
    read -r s_warm t_warm <<<"${X[one_warm]}"
    read -r s_rep t_rep <<<"${X[replay]}"
    echo "- **One request** (curl through the forward form, GET .../query): cold (fresh sfproxy: token request +" \
        "upstream TLS handshake) $(ms "$(awk -v s="$t_cold" 'BEGIN { print s * 1e6 }')") ms, status $s_cold;" \
        "warm (median of 21) $(ms "$(awk -v s="$t_warm" 'BEGIN { print s * 1e6 }')") ms."
    echo "- **Session replay**: the upstream answers 401 INVALID_SESSION_ID to the current token; sfproxy drops it," \
        "logs in again and replays once. Median of 5: $(ms "$(awk -v s="$t_rep" 'BEGIN { print s * 1e6 }')") ms (status $s_rep;" \
        "all: ${X[replay_all]} ms), i.e. **+$(awk -v a="$t_rep" -v b="$t_warm" 'BEGIN { printf "%.2f", (a - b) * 1000 }') ms** over a warm request" \
        "(one extra upstream round trip + one token request). sfproxy_session_replays_total ${X[replays]}, token requests ${X[replay_tokens]} (1 cold + 5)."
    read -r s_up t_up <<<"${X[upload]}"
    read -r s_dir t_dir <<<"${X[upload_direct]}"
    local growth=$(((${X[rss_hwm]} - ${X[rss_before]}) / 1024))
    echo "- **Streaming**: ${UPLOAD_MB} MB POST through sfproxy (over replay_limit): status $s_up in ${t_up} s" \
        "(direct to the upstream: status $s_dir in ${t_dir} s); sfproxy RSS $(awk -v k="${X[rss_before]}" 'BEGIN { printf "%.1f", k / 1024 }') MB before," \
        "peak $(awk -v k="${X[rss_hwm]}" 'BEGIN { printf "%.1f", k / 1024 }') MB: **growth ${growth} MB**."
    echo
    echo "## Targets (issue 5)"
    echo
    local m
    for m in $MODES; do for t in gateway forward; do
        [ -n "${R["$m 64 $t"]:-}" ] || continue
        read -r _ _ p99 _ _ <<<"${R["$m 64 $t"]}"
        read -r _ _ n_p99 _ _ <<<"${R["$m 64 nginx"]}"
        local xn=${XN["$m 64 $t"]} xp=${XP["$m 64 $t"]} xd=${XD["$m 64 $t"]}
        echo "- $t, 64 conns ($m): req/s ≥ 1.1 × nginx: $(printf '%.2f' "$xn") $(verdict "$xn" 1.1 'a >= b');" \
            "p99 ≤ nginx: $(ms "$p99") vs $(ms "$n_p99") ms (×$(printf '%.2f' "$xp")) $(verdict "$xp" 1 'a <= b');" \
            "≥ 0.9 × direct: $(printf '%.2f' "$xd") $(verdict "$xd" 0.9 'a >= b')"
    done; done
    local worst=0
    local h
    for mode in $MODES; do
        h=${HWM["$mode 256"]:-0}
        ((h > worst)) && worst=$h
    done
    ((worst > 0)) && echo "- peak RSS ≤ 30 MB at 256 connections: $(awk -v k="$worst" 'BEGIN { printf "%.1f MB", k / 1024 }') $(verdict "$worst" 0 'a <= 30 * 1024')"
    echo "- ${UPLOAD_MB} MB upload grows RSS by < 16 MB: ${growth} MB $(verdict "$((${X[rss_hwm]} - ${X[rss_before]}))" 0 'a < 16 * 1024')"
    echo "- cold start, exactly 1 token request: ${X[cold_tokens]} $(verdict "${X[cold_tokens]}" 1 'a == b')"
    [ -n "${X[soap_ratio]:-}" ] &&
        echo "- SOAP cell ≥ 0.9 × the REST cell's req/s: $(printf '%.2f' "${X[soap_ratio]}") $(verdict "${X[soap_ratio]}" 0.9 'a >= b')"
    echo
    echo "Total runtime: $(($(date +%s) - started_at)) s$( ((waited > 0)) && echo ", of which ${waited} s waiting for an idle machine")."
}

report | tee "$OUT"
say "written to ${OUT#"$ROOT"/}"
