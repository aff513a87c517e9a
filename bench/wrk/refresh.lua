-- Refreshes a pool of sessions, each presented exactly once per rotation: a request takes the oldest
-- refresh token from the pool, and its answer puts the new one back. Run with one wrk thread
-- (-t1), so no two requests ever share a token. Usage: wrk ... -s refresh.lua <url> -- <token file>
local pool, head, tail = {}, 1, 0

function init(args)
  for line in io.lines(args[1]) do
    tail = tail + 1
    pool[tail] = line
  end
end

function request()
  local token = pool[head]
  pool[head] = nil
  head = head + 1
  return wrk.format("POST", "/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    tail = tail + 1
    pool[tail] = token
  end
end
