-- A tiny key-value store speaking a line protocol (like a very small Redis), kept in
-- sp.shared: the dictionary every worker sees, so all clients share one store.
--
--   SET key value    -> OK            (the value is the rest of the line)
--   GET key          -> VALUE value | NIL
--   DEL key          -> 1 | 0         (how many keys were removed)
--   INCR key         -> the new integer value (a missing key counts as 0)
--   QUIT             -> BYE, then the connection closes
--   anything else    -> ERR ...
--
-- Try it:
--   smartproxy examples/line-protocol.lua
--   nc -C 127.0.0.1 7001
--   SET greeting hello world
--   GET greeting
--   INCR visits
--
-- sp.shared lives as long as the process: a reload keeps the data.
local sp = require "smartproxy"

local MAX_VALUE = 4096

local commands = {}

function commands.SET(key, value)
  if not key or value == "" then
    return "ERR usage: SET key value"
  end
  if #value > MAX_VALUE then
    return "ERR value too long"
  end
  local ok, err = sp.shared:set(key, value)
  return ok and "OK" or ("ERR " .. err)
end

function commands.GET(key)
  if not key then
    return "ERR usage: GET key"
  end
  local v = sp.shared:get(key)
  return v ~= nil and ("VALUE " .. tostring(v)) or "NIL"
end

function commands.DEL(key)
  if not key then
    return "ERR usage: DEL key"
  end
  if sp.shared:get(key) == nil then
    return "0"
  end
  sp.shared:delete(key)
  return "1"
end

function commands.INCR(key)
  if not key then
    return "ERR usage: INCR key"
  end
  local n, err = sp.shared:incr(key, 1, 0)
  if not n then
    return "ERR " .. (err == "not a number" and "value is not an integer" or err)
  end
  return string.format("%d", n)
end

function commands.QUIT()
  return "BYE", sp.handlers.CLOSE
end

local function kv(line)
  local cmd, key, value = line:match("^%s*(%S+)%s*(%S*)%s?(.-)%s*$")
  if not cmd then
    return nil -- an empty line: no reply
  end
  local fn = commands[cmd:upper()]
  if not fn then
    return "ERR unknown command " .. cmd
  end
  return fn(key ~= "" and key or nil, value)
end

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9102" },
  routes = {
    sp.socket_handler_route(nil, 7001, sp.handlers.line_protocol(kv), { name = "kv" }),
  },
}
