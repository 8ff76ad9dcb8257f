-- One fixed request, repeated: method, body and headers come from the environment (bench/wrk.py sets them).
wrk.method = os.getenv("BENCH_METHOD") or "POST"
wrk.body = os.getenv("BENCH_BODY")
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

-- With BENCH_UNIQUE_ID, every request gets an id of its own ("__ID__" in the body): a 2025 session
-- refuses a request whose id is already in flight, as real clients never send one.
local template = wrk.body
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

if os.getenv("BENCH_UNIQUE_ID") then
  -- Built once per thread and cycled: ids are unique among the requests in flight (far fewer than
  -- 256), and wrk spends no time formatting a request, which would slow this row's load alone.
  local prepared = {}

  function init(args)
    for i = 1, 256 do
      prepared[i] = wrk.format(nil, nil, nil, (string.gsub(template, "__ID__", tid .. "-" .. i)))
    end
  end

  function request()
    counter = counter % 256 + 1
    return prepared[counter]
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
