-- Requests for wrk, driven by bench/harness/wrk.py:
--   wrk -s bench/harness/wrk.lua URL -- METHOD BODY_FILE|- COOKIE_FILE|- [STAGGER_MS FIRST]
-- With a cookie file (one `Cookie` header value a line), each request signs in as a user
-- picked at random. With STAGGER_MS, the FIRST requests of the thread (one a connection) each
-- wait a random 0..STAGGER_MS before they are sent (wrk starts timing a request after its
-- delay), so that the connections do not all start together and stay in lockstep. done() prints one line, WRK_JSON {...}, with the figures wrk.py reads.

local prepared = {}
local stagger_ms = 0
local staggered_left = 0

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

function init(args)
  local method = args[1] or "GET"
  local body = nil
  if args[2] and args[2] ~= "-" then body = read_file(args[2]) end
  local cookies = (args[3] and args[3] ~= "-") and read_lines(args[3]) or { false }
  stagger_ms = tonumber(args[4] or "0")
  staggered_left = tonumber(args[5] or "0")
  if stagger_ms <= 0 then delay = nil end  -- wrk then never asks for a delay
  for index, cookie in ipairs(cookies) do
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    if cookie then headers["Cookie"] = cookie end
    prepared[index] = wrk.format(method, wrk.path, headers, body)
  end
  math.randomseed(os.time() + os.clock() * 1000000)
end

function delay()
  if staggered_left <= 0 then return 0 end
  staggered_left = staggered_left - 1
  return math.random(0, stagger_ms)
end

function request()
  return prepared[math.random(#prepared)]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %.0f, "p90_us": %.0f, '
      .. '"p99_us": %.0f, "max_us": %.0f, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
