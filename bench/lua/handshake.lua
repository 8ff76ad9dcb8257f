-- A 2025 session's whole life per three requests: initialize, notifications/initialized, DELETE.
-- Each wrk thread holds one connection (bench/wrk.py runs -t N -c N), so the steps of one thread
-- happen in order on that connection.
local path = os.getenv("BENCH_PATH")
local init = os.getenv("BENCH_BODY")
local initialized = '{"jsonrpc":"2.0","method":"notifications/initialized"}'
local accept = "application/json, text/event-stream"
local step, session = 0, ""

function request()
  if step == 0 then
    return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Accept"] = accept}, init)
  end
  local headers = {["Mcp-Session-Id"] = session, ["MCP-Protocol-Version"] = "2025-11-25", ["Accept"] = accept}
  if step == 1 then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", path, headers, initialized)
  end
  return wrk.format("DELETE", path, headers, nil)
end

function response(status, headers, body)
  if step == 0 then
    session = headers["mcp-session-id"] or headers["Mcp-Session-Id"] or ""
  end
  step = (step + 1) % 3
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
