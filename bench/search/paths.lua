-- wrk script: GET a random request path from a file (one path per line, made by run.py),
-- and print the latency percentiles as one JSON line when done.
-- Usage: wrk -t2 -c4 -d30s -s bench/search/paths.lua http://127.0.0.1:PORT -- PATHS_FILE

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  math.randomseed(20261123 + tid)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], { ["Accept"] = "application/fhir+json" })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": %d, "non2xx": %d, ' ..
    '"p50_ms": %.2f, "p90_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, ' ..
    '"mean_ms": %.2f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
