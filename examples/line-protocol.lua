-- A tiny key-value store speaking a line protocol (like a very small Redis):
--
--   SET key value    -> OK            (the value is the rest of the line)
--   GET key          -> VALUE value | NIL
--   DEL key          -> 1 | 0         (how many keys were removed)
--   INCR key         -> the new integer value (a missing key counts as 0)
--   QUIT             -> BYE, then the connection closes
--   anything else    -> ERR ...
--
-- Try it:
--   smartproxy -w 1 examples/line-protocol.lua
--   nc -C 127.0.0.1 7001
--   SET greeting hello world
--   GET greeting
--   INCR visits
--
-- The store is a plain Lua table, so it lives in ONE worker's Lua state: with several
-- workers each has its own store, and a reload (a new configuration generation) starts
-- empty. A store shared by all workers (sp.shared) is not available yet; run with -w 1
-- to see a single store.
local sp = require "smartproxy"

local MAX_KEYS = 10000
local MAX_VALUE = 4096

local store, count = {}, 0

local function set(key, value)
  if store[key] == nil then
    if count >= MAX_KEYS then
      return nil
    end
    count = count + 1
  end
  store[key] = value
  return true
end

local commands = {}

function commands.SET(key, value)
  if not key or value == "" then
    return "ERR usage: SET key value"
  end
  if #value > MAX_VALUE then
    return "ERR value too long"
  end
  return set(key, value) and "OK" or "ERR store full"
end

function commands.GET(key)
  if not key then
    return "ERR usage: GET key"
  end
  local v = store[key]
  return v and ("VALUE " .. v) or "NIL"
end

function commands.DEL(key)
  if not key then
    return "ERR usage: DEL key"
  end
  if store[key] == nil then
    return "0"
  end
  store[key] = nil
  count = count - 1
  return "1"
end

function commands.INCR(key)
  if not key then
    return "ERR usage: INCR key"
  end
  local current = store[key] or "0"
  if not current:match("^%-?%d+$") or #current > 15 then
    return "ERR value is not an integer"
  end
  local n = tonumber(current) + 1
  if not set(key, tostring(n)) then
    return "ERR store full"
  end
  return tostring(n)
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
