-- SMTP gateway: a protocol where the server speaks first. The proxy greets the client
-- itself (220), lets only the addresses of an allow-list written in Lua through, then
-- hands the connection to the real mail server and steps aside (sp.pipe).
--
-- Try it with any SMTP server on 127.0.0.1:2526 (`python3 -m aiosmtpd -n -l
-- 127.0.0.1:2526`, or by hand: `nc -l 127.0.0.1 2526`, then type "220 backend" into it
-- once the gateway has connected):
--   smartproxy examples/smtp-gateway.lua
--   nc -C 127.0.0.1 2525          -> 220 mail.example.test ESMTP smartproxy gateway
--   EHLO me                       (answered by the backend from here on)
--
-- The route has no domains, so the handler runs on accept: nothing waits for the client
-- to send first. The backend's own 220 greeting is read and dropped, since the client
-- already has ours.
local sp = require "smartproxy"

local HOSTNAME = "mail.example.test"
local BACKEND_HOST, BACKEND_PORT = "127.0.0.1", 2526

-- Who may relay through us: exact addresses and IPv4 CIDR blocks.
local ALLOW = { "127.0.0.1", "::1", "10.0.0.0/8", "192.168.0.0/16" }

local function ipv4_number(ip)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- Compiles ALLOW into a set of exact addresses and a list of { network, size } blocks.
local exact, blocks = {}, {}
for _, entry in ipairs(ALLOW) do
  local net, bits = entry:match("^([%d.]+)/(%d+)$")
  if net then
    local size = 2 ^ (32 - tonumber(bits))
    blocks[#blocks + 1] = { math.floor(ipv4_number(net) / size) * size, size }
  else
    exact[entry] = true
  end
end

local function allowed(ip)
  ip = ip:gsub("^::ffff:", "") -- an IPv4 client on an IPv6 socket
  if exact[ip] then
    return true
  end
  local n = ipv4_number(ip)
  if n then
    for _, b in ipairs(blocks) do
      if n >= b[1] and n < b[1] + b[2] then
        return true
      end
    end
  end
  return false
end

-- Reads the backend's greeting ("220-..." lines, then "220 ..."); true when it is one.
local function skip_greeting(up)
  up:set_timeout(10000)
  for _ = 1, 50 do
    local line = up:read("*l")
    if not line or line:sub(1, 3) ~= "220" then
      return false
    end
    if line:sub(4, 4) ~= "-" then
      return true
    end
  end
  return false
end

local function gateway(sock, ctx)
  if not allowed(ctx.client_ip) then
    sp.log("info", "smtp: refused", ctx.client_ip)
    sock:write("554 5.7.1 " .. HOSTNAME .. " no service for " .. ctx.client_ip .. "\r\n")
    return -- returning ends the connection (after what was written is flushed)
  end
  sock:write("220 " .. HOSTNAME .. " ESMTP smartproxy gateway\r\n")

  local up, err = sp.connect(BACKEND_HOST, BACKEND_PORT, { timeout = 5000 })
  if not up then
    sp.log("warn", "smtp: backend", BACKEND_HOST .. ":" .. BACKEND_PORT, err)
    sock:write("421 4.3.0 " .. HOSTNAME .. " service not available, try later\r\n")
    return
  end
  if not skip_greeting(up) then
    sp.log("warn", "smtp: backend did not greet with 220")
    sock:write("421 4.3.0 " .. HOSTNAME .. " service not available, try later\r\n")
    up:close()
    return
  end
  return sp.pipe(sock, up)
end

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9103" },
  routes = {
    sp.socket_handler_route(nil, 2525, gateway, { name = "smtp" }),
  },
}
