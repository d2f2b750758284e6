#!/usr/bin/env bash
# Instructions per request of sfproxy binaries, side by side: an A/B harness a noisy machine does
# not disturb (callgrind counts instructions executed, not seconds).
#
#   bash benches/callgrind.sh BIN_A [BIN_B ...]     # e.g. target/release/sfproxy of two trees
#   SOAP=1 bash benches/callgrind.sh BIN            # the SOAP call instead of the REST one
#   SOAP=post bash benches/callgrind.sh BIN         # its envelope POSTed to the REST path (no rewrite)
#
# run.sh's world on loopback: nginx with TLS offering HTTP/2 as the instance (upstream.nginx.conf),
# `BIN stand-in` as the token endpoint, `BIN run` on sfproxy.toml under callgrind
# (--instr-atstart=no). Per binary, REPEAT times, a fresh sfproxy: WARMUP requests uninstrumented
# (the first logs in, the serving threads connect upstream); `callgrind_control -i on`; exactly
# REQUESTS requests in gateway form over CONNS connections (wrk, a connection per thread, each
# stopping after its share: none in flight at the end); `callgrind_control -d`, a dump of that
# phase only (/metrics is read outside it). REST: GET /acme/services/data/v61.0/limits (1 KB JSON
# back); SOAP=1: POST run.sh's ~2 KB Partner query envelope to /acme/services/Soap/u/61.0 (sfproxy
# writes the session into its SessionHeader; a binary without SOAP just forwards it).
#
# Reading it: one line per binary, the Ir/request of each repetition (Ir of all sfproxy's threads
# in the measured phase / requests served there, by sfproxy_requests_total, all 200), their spread
# (a few tenths of a percent), requests per repetition, and the mean's ratio to the first binary's
# (0.980: 2 % fewer instructions). Compare binaries measured side by side in one run: another
# machine, libc or valgrind counts differently. Knobs (environment): REQUESTS (20000), CONNS (8),
# WARMUP (800), REPEAT (2), SOAP (0), SFPROXY_LOG (sfproxy's RUST_LOG, info as in run.sh), KEEP (1:
# keep the temp dir: dumps for callgrind_annotate, logs), SHARED (1: a redis-server of the run's and
# a [shared] table on it, for binaries that have one: the hot path must not touch it).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REQUESTS=${REQUESTS:-20000} CONNS=${CONNS:-8} WARMUP=${WARMUP:-800} REPEAT=${REPEAT:-2}
SOAP=${SOAP:-0} SFPROXY_LOG=${SFPROXY_LOG:-info} SHARED=${SHARED:-0}
export PATH="$PATH:/usr/sbin:/sbin"
say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
(($# >= 1)) || die "usage: bash benches/callgrind.sh BIN_A [BIN_B ...]"
BINS=()
for b in "$@"; do
    [ -x "$b" ] || die "not an executable: $b"
    BINS+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")")
done
PER_CONN=$((REQUESTS / CONNS)) WARM_PER_CONN=$(((WARMUP + CONNS - 1) / CONNS))
((PER_CONN > 0)) || die "REQUESTS ($REQUESTS) below CONNS ($CONNS)"
missing=$(for t in valgrind callgrind_control:valgrind nginx wrk curl openssl python3; do
    command -v "${t%%:*}" >/dev/null || echo "${t#*:}"; done | sort -u)
if [ -n "$missing" ]; then # as run.sh does
    say "installing" $missing
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
RUN=$(mktemp -d /tmp/sfproxy-callgrind.XXXXXX)
chmod 755 "$RUN" # nginx workers may run as another user
mkdir -p "$RUN/standin"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
declare -A PID=() # name -> pid of every process this script started
stop() { # name: TERM, then KILL after 10 s
    local name=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    unset "PID[$name]" && kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
cleanup() {
    local name; for name in "${!PID[@]}"; do stop "$name"; done
    if [ "${KEEP:-0}" = 1 ]; then say "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    die "nothing listens on 127.0.0.1:$1"
}
read -r UPSTREAM_PORT SINK_PORT SFPROXY_PORT ADMIN_PORT STANDIN_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

# --- run.sh's world: a throwaway CA; the upstream's answers and the SOAP envelope (benches/bodies.py)
(
    cd "$RUN" && umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sfproxy callgrind CA" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout upstream.key -out upstream.csr 2>/dev/null
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
render() { # template out
    sed -e "s|@RUN@|$RUN|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
        -e "s|@SFPROXY_PORT@|$SFPROXY_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
        -e "s|@STANDIN_PORT@|$STANDIN_PORT|g" -e "s|@WORKERS@|1|g" -e "s|@LIMITS_JSON@|$LIMITS_JSON|g" \
        -e "s|@SOAP_ANSWER@|$SOAP_ANSWER|g" -e "s|@HTTP2@|http2|g" "$1" >"$2"
}

# --- the fixed-count driver: wrk, one connection per thread; a thread stops after its share and
# says so in CG_DONE; wrk's main thread sleeps out -d whatever its threads do, so SIGINT ends it.
cat >"$RUN/count.lua" <<'LUA'
local limit, seen, body = tonumber(os.getenv("CG_PER_CONN")), 0, os.getenv("CG_BODY_FILE")
if body ~= "" then
   local f = assert(io.open(body, "rb"))
   wrk.method, wrk.body = "POST", f:read("*a")
   f:close()
   wrk.headers["Content-Type"], wrk.headers["SOAPAction"] = "text/xml; charset=utf-8", '""'
end
function response(status)
   seen = seen + 1
   if seen == limit then
      wrk.thread:stop()
      local f = assert(io.open(os.getenv("CG_DONE"), "a")); f:write("done\n"); f:close()
   end
end
function done(summary)
   local e = summary.errors
   io.write(string.format("RESULT requests=%d errors=%d\n", summary.requests,
      e.connect + e.read + e.write + e.status + e.timeout))
end
LUA
if [ "$SOAP" = 1 ]; then
    URL="http://127.0.0.1:$SFPROXY_PORT/acme/services/Soap/u/61.0" BODY="$RUN/soap-query.xml"
elif [ "$SOAP" = post ]; then # the same envelope POSTed to the REST path: the body, no rewrite
    URL="http://127.0.0.1:$SFPROXY_PORT/acme/services/data/v61.0/limits" BODY="$RUN/soap-query.xml"
else
    URL="http://127.0.0.1:$SFPROXY_PORT/acme/services/data/v61.0/limits" BODY=""
fi
drive() { # requests per connection, output file
    local done="$2.done" w; : >"$done"
    CG_PER_CONN=$1 CG_BODY_FILE=$BODY CG_DONE=$done wrk -t"$CONNS" -c"$CONNS" -d3600s --timeout 60s \
        -s "$RUN/count.lua" "$URL" >"$2" 2>&1 &
    w=$! PID[wrk]=$!
    while (($(wc -l <"$done") < CONNS)) && kill -0 "$w" 2>/dev/null; do sleep 0.2; done
    kill -INT "$w" 2>/dev/null || true; wait "$w" || true
    unset "PID[wrk]"
    grep -q "^RESULT requests=$(($1 * CONNS)) errors=0$" "$2" || die "wrk: $(cat "$2")"
}
served() { # sfproxy_requests_total over every label, and those with status 200
    curl -s --max-time 60 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 ~ /^sfproxy_requests_total(\{|$)/ {
        s += $2; if ($1 ~ /status="200"/) ok += $2 } END { printf "%.0f %.0f\n", s, ok }'
}

measure() { # bin tag: a fresh sfproxy under callgrind; sets IR and SERVED
    local bin=$1 tag=$2 out="$RUN/callgrind.$2.out" pid ready=0 s0 ok0 s1 ok1
    RUST_LOG=$SFPROXY_LOG valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
        --callgrind-out-file="$out" --log-file="$RUN/valgrind.$tag.log" \
        "$bin" run --config "$RUN/sfproxy.toml" >>"$RUN/sfproxy.$tag.log" 2>&1 &
    pid=$! PID[sfproxy]=$!
    for _ in $(seq 300); do # 60 s
        [ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ] && ready=1 && break
        kill -0 "$pid" 2>/dev/null && sleep 0.2 || break
    done
    ((ready)) || die "sfproxy not ready: $(tail -5 "$RUN/sfproxy.$tag.log")"
    drive "$WARM_PER_CONN" "$RUN/wrk.$tag.warmup.txt"
    read -r s0 ok0 < <(served)
    ((ok0 > 0 && ok0 == s0)) || die "warm-up: $ok0 of $s0 requests answered 200 ($(tail -3 "$RUN/sfproxy.$tag.log"))"
    callgrind_control -i on "$pid" >>"$RUN/callgrind_control.log" 2>&1 || die "callgrind_control -i on $pid"
    drive "$PER_CONN" "$RUN/wrk.$tag.txt"
    callgrind_control -d "$pid" >>"$RUN/callgrind_control.log" 2>&1 || die "callgrind_control -d $pid"
    callgrind_control -i off "$pid" >>"$RUN/callgrind_control.log" 2>&1 || true
    read -r s1 ok1 < <(served)
    ((ok1 - ok0 == s1 - s0)) || die "$((s1 - s0 - ok1 + ok0)) measured requests not answered 200"
    stop sfproxy
    IR=$(cat "$out".[0-9]* | awk '$1 == "summary:" { s += $2 } END { printf "%.0f", s }')
    ((IR > 0)) || die "no instructions in $out.*"
    SERVED=$((s1 - s0))
}

render "$HERE/upstream.nginx.conf" "$RUN/upstream.conf"
render "$HERE/sfproxy.toml" "$RUN/sfproxy.toml"
if [ "$SHARED" = 1 ]; then
    command -v redis-server >/dev/null || die "SHARED=1 needs redis-server (Debian's redis-server)"
    REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN" \
        >"$RUN/redis.log" 2>&1 &
    PID[redis]=$!
    wait_port "$REDIS_PORT"
    head -c 32 /dev/urandom | base64 >"$RUN/shared.key" && chmod 600 "$RUN/shared.key"
    printf '\n[shared]\nredis_url = "redis://127.0.0.1:%s/0"\nkey_file = "%s"\n' \
        "$REDIS_PORT" "$RUN/shared.key" >>"$RUN/sfproxy.toml"
fi
nginx -c "$RUN/upstream.conf" -e "$RUN/upstream-error.log" &
PID[upstream]=$!
wait_port "$UPSTREAM_PORT"
say "$(case $SOAP in 1) echo SOAP ;; post) echo "REST POST" ;; *) echo REST ;; esac) call, gateway form: $((PER_CONN * CONNS)) requests over $CONNS" \
    "connections after $((WARM_PER_CONN * CONNS)) uninstrumented, $REPEAT repetition(s) per binary, in $RUN"
declare -A FIG=() N=() # "binary rep" -> Ir/request; binary -> requests
for i in "${!BINS[@]}"; do
    stop standin
    rm -f "$RUN/standin/"*
    "${BINS[$i]}" stand-in --listen "127.0.0.1:$STANDIN_PORT" --dir "$RUN/standin" \
        --public-url "https://127.0.0.1:$UPSTREAM_PORT" >"$RUN/standin.$i.log" 2>&1 &
    PID[standin]=$!
    wait_port "$STANDIN_PORT"
    cat "$RUN/standin/ca.crt" "$RUN/ca.crt" >"$RUN/ca-bundle.crt"
    for r in $(seq "$REPEAT"); do
        measure "${BINS[$i]}" "$i.$r"
        FIG["$i $r"]=$(awk -v a="$IR" -v b="$SERVED" 'BEGIN { printf "%.0f", a / b }') N[$i]=$SERVED
        say "${BINS[$i]}, repetition $r: $IR Ir / $SERVED requests = ${FIG["$i $r"]} Ir/request"
    done
done

printf '%-48s %-22s %7s %8s %s\n' binary "Ir/request, each rep" spread requests ×first
for i in "${!BINS[@]}"; do
    figs=$(for r in $(seq "$REPEAT"); do echo "${FIG["$i $r"]}"; done)
    read -r mean spread < <(awk '{ s += $1; lo = (NR == 1 || $1 < lo) ? $1 : lo; hi = (NR == 1 || $1 > hi) ? $1 : hi }
        END { printf "%.2f %.2f\n", s / NR, 100 * (hi - lo) / lo }' <<<"$figs")
    ((i == 0)) && first=$mean
    printf '%-48s %-22s %6s%% %8s %s\n' "${BINS[$i]}" "$(echo $figs)" "$spread" "${N[$i]}" \
        "$(awk -v a="$mean" -v b="$first" 'BEGIN { printf "%.3f", a / b }')"
done
