-- wrk script shared by every cell of benches/run.sh.
--
-- Forward (absolute-form) requests: wrk builds its request line as
-- "METHOD <wrk.path> HTTP/1.1", and wrk.path may be any string, so setting it to a full
-- http:// URL makes wrk send exactly what a client with HTTP_PROXY set sends:
--   GET http://acme.my.salesforce.com/services/data/v61.0/limits HTTP/1.1
--   Host: acme.my.salesforce.com
-- while the TCP connection goes to the URL given on wrk's command line (the proxy).
-- The request is built once, at init (no per-request Lua `request()` function, which would cost
-- wrk CPU on every request and skew the comparison).
local absolute = os.getenv("WRK_ABSOLUTE_URL")
if absolute and absolute ~= "" then
   wrk.path = absolute
   wrk.headers["Host"] = absolute:match("^https?://([^/]+)")
end

-- The SOAP cell: POST the envelope in WRK_BODY_FILE, as a SOAP toolkit does.
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
   local f = assert(io.open(body_file, "rb"))
   wrk.method = "POST"
   wrk.body = f:read("*a")
   f:close()
   wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
   wrk.headers["SOAPAction"] = '""'
end

-- One machine-readable line at the end: latencies in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
