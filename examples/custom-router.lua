-- A router written in Lua: the first line the client sends picks the backend.
--
--   "SSH-..."                            -> 127.0.0.1:22    (an SSH client's banner)
--   "GET /...", "POST /...", ... (HTTP)  -> 127.0.0.1:8000
--   anything else                        -> 127.0.0.1:7000  (examples/echo.lua)
--
-- The bytes read to decide are written to the backend first, exactly as they came, and
-- then the two sockets are piped.
--
-- Try it:
--   python3 -m http.server 8000 --bind 127.0.0.1 &
--   smartproxy examples/echo.lua &                (the default backend, port 7000)
--   smartproxy examples/custom-router.lua
--   curl http://127.0.0.1:7100/                   (the directory listing, via port 8000)
--   printf 'hello\n' | nc -q1 127.0.0.1 7100      (echoed by the echo example)
--   ssh -p 7100 localhost                         (your sshd)
local sp = require "smartproxy"

local MAX_LINE = 4096       -- bytes read at most before choosing
local FIRST_LINE_MS = 10000 -- how long a client may take to send them

local HTTP_METHODS = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true,
                       PATCH = true, OPTIONS = true, CONNECT = true, TRACE = true }

local DEFAULT = { "127.0.0.1", 7000 }

local function choose(first)
  if first:sub(1, 4) == "SSH-" then
    return "127.0.0.1", 22
  end
  local method = first:match("^(%u+) ")
  if method and HTTP_METHODS[method] then
    return "127.0.0.1", 8000
  end
  return DEFAULT[1], DEFAULT[2]
end

-- Reads up to the first LF (included), byte by byte so that nothing beyond it is
-- consumed: the rest stays for the pipe. Returns the bytes (maybe without a LF when the
-- client stopped or sent a long line), or nil when nothing came.
local function read_first_line(sock)
  local buf, n = {}, 0
  while n < MAX_LINE do
    local c = sock:read(1)
    if not c then
      break
    end
    n = n + 1
    buf[n] = c
    if c == "\n" then
      break
    end
  end
  if n == 0 then
    return nil
  end
  return table.concat(buf, "", 1, n)
end

local function route(sock, ctx)
  sock:set_timeout(FIRST_LINE_MS)
  local first = read_first_line(sock)
  if not first then
    return -- nothing came: returning ends the connection
  end
  local host, port = choose(first)
  local up, err = sp.connect(host, port, { timeout = 5000 })
  if not up then
    sp.log("warn", "router:", ctx.client_ip, "->", host .. ":" .. port, "failed:", err)
    return
  end
  local ok, werr = up:write(first)
  if not ok then
    sp.log("warn", "router: write to", host .. ":" .. port, "failed:", werr)
    up:close()
    return
  end
  return sp.pipe(sock, up)
end

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9104" },
  routes = {
    sp.socket_handler_route(nil, 7100, route, { name = "custom-router" }),
  },
}
