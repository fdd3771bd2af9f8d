-- submit.lua: wrk script for the submit benchmark (test/bench/collector.py).
-- Every request POSTs the same real gzip Go CPU profile to /v1/submit with a
-- bearer key. Environment: BENCH_PROFILE (path), BENCH_KEY (submit key).
-- At the end it prints one machine-readable line:
--   BENCH requests=N errors=N status=N p50_us=N p90_us=N p99_us=N max_us=N duration_us=N
-- errors counts socket errors and timeouts, status the answers wrk counts as
-- failed (status above 399); collector.py also checks that every answer
-- left a stored file. No per-response callback: wrk would then hand every
-- answer to Lua.
local f = assert(io.open(os.getenv("BENCH_PROFILE"), "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/v1/submit"
wrk.body = body
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["Content-Type"] = "application/octet-stream"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d errors=%d status=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d duration_us=%d\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.duration))
end
