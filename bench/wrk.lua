-- wrk script: POST the benchmark's payloads round-robin, with the bearer token, for a
-- closed-loop cross-check of bench/loadgen's figures (wrk measures from the actual send, so
-- use it for throughput, not for latency under a fixed rate).
--
--   .venv/bin/python bench/payloads.py --bodies-out /tmp/bodies.txt
--   WRK_BODIES=/tmp/bodies.txt WRK_TOKEN=bench-token-0123456789 \
--     taskset -c 1 wrk -t1 -c64 -d20s -s bench/wrk.lua http://127.0.0.1:8080/webhook
--
-- The bodies file holds one compact JSON body per line.

local bodies = {}
local counter = 0
local statuses = {}

function init(args)
  local path = os.getenv("WRK_BODIES") or "bodies.txt"
  for line in io.lines(path) do
    if #line > 0 then
      bodies[#bodies + 1] = wrk.format("POST", nil, {
        ["Authorization"] = "Bearer " .. (os.getenv("WRK_TOKEN") or "bench-token-0123456789"),
        ["Content-Type"] = "application/json",
      }, line)
    end
  end
  if #bodies == 0 then
    error("no bodies in " .. path)
  end
  -- Threads start at different offsets so that they do not send the same sequence.
  counter = math.random(#bodies) - 1
end

function request()
  counter = counter + 1
  return bodies[(counter % #bodies) + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status or 0
  io.write(string.format("requests %d, non-2xx %d, socket errors %d/%d/%d/%d (connect/read/write/timeout)\n",
    summary.requests, non2xx, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
