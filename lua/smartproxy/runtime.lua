-- smartproxy.runtime: the bridge to "smartproxy.core", the C module that the proxy
-- preloads in every Lua state it creates (SPEC 7).
--
-- The core is looked up lazily and optionally, so that the route helpers and the pure
-- functions of this library also work in plain LuaJIT (busted, tools). Functions that need
-- the core raise "smartproxy.core is only available inside smartproxy" when it is absent.

local pcall = pcall
local require = require
local select = select
local tostring = tostring
local type = type
local concat = table.concat
local error = error
local setmetatable = setmetatable

local _M = {}

local NO_CORE = "smartproxy.core is only available inside smartproxy"

local core -- the module once found; never unset

local function find_core()
    if core then
        return core
    end
    local ok, mod = pcall(require, "smartproxy.core")
    if ok and type(mod) == "table" then
        core = mod
        return mod
    end
    return nil
end

-- Returns the core module, or nil when running outside smartproxy.
_M.core = find_core

-- The core's function `name`; raises (at the caller of the sp.* function) outside
-- smartproxy, or when this build of the core lacks it.
local function need_core(name)
    local c = core or find_core()
    if not c then
        error("sp." .. name .. ": " .. NO_CORE, 3)
    end
    local fn = c[name]
    if type(fn) ~= "function" then
        error("sp." .. name .. ": not supported by this version of smartproxy ("
              .. tostring(c.version) .. ") yet", 3)
    end
    return fn
end

_M.NO_CORE = NO_CORE

-- Version string of the running proxy; nil outside smartproxy.
function _M.version()
    local c = core or find_core()
    return c and c.version or nil
end

-- sock, err = connect(host, port, opts): yields until connected (SPEC 7).
function _M.connect(host, port, opts)
    return need_core("connect")(host, port, opts)
end

-- pipe(a, b): forwards both ways in C until either side closes; the handler ends there.
function _M.pipe(a, b)
    return need_core("pipe")(a, b)
end

-- shared: the dictionary all workers see (SPEC 7 / issue 6): shared:get(k),
-- shared:set(k, v, ttl_seconds), shared:incr(k, by, init, ttl_seconds), shared:delete(k).
-- Values are strings, numbers or booleans. A proxy table, so the library loads outside
-- smartproxy too; using it there raises.
_M.shared = setmetatable({}, {
    __index = function(_, method)
        local c = core or find_core()
        if not c then
            error("sp.shared: " .. NO_CORE, 2)
        end
        local dict = c.shared
        if type(dict) ~= "table" then
            error("sp.shared: not supported by this version of smartproxy yet", 2)
        end
        return dict[method]
    end,
})

-- timer(ms, fn): runs fn once, ms milliseconds from now, as a background task of each
-- worker (a coroutine: it may connect, sleep, log). Called while the config loads, it
-- starts when the worker serves that configuration and stops with it on reload.
function _M.timer(ms, fn)
    if type(ms) ~= "number" or ms < 0 then
        error("sp.timer: ms: expected milliseconds >= 0, got " .. tostring(ms), 2)
    end
    if type(fn) ~= "function" then
        error("sp.timer: fn: expected a function, got " .. type(fn), 2)
    end
    local spawn, sleep = need_core("spawn"), need_core("sleep")
    spawn(function()
        sleep(ms)
        fn()
    end)
end

-- every(ms, fn): runs fn every ms milliseconds (after each run ends) in each worker, until
-- the configuration is reloaded or the proxy stops. An error in one run is logged and the
-- next run happens anyway.
function _M.every(ms, fn)
    if type(ms) ~= "number" or ms < 1 then
        error("sp.every: ms: expected milliseconds >= 1, got " .. tostring(ms), 2)
    end
    if type(fn) ~= "function" then
        error("sp.every: fn: expected a function, got " .. type(fn), 2)
    end
    local spawn, sleep, log = need_core("spawn"), need_core("sleep"), need_core("log")
    spawn(function()
        while true do
            sleep(ms)
            local ok, err = pcall(fn)
            if not ok then
                log("error", "sp.every: " .. tostring(err))
            end
        end
    end)
end

-- sleep(ms): yields for ms milliseconds.
function _M.sleep(ms)
    return need_core("sleep")(ms)
end

local LEVELS = { error = true, warn = true, info = true, debug = true }

-- log(level, ...): the arguments are converted with tostring, as print does, and joined
-- with spaces, as the core's own log does.
function _M.log(level, ...)
    if not LEVELS[level] then
        error("bad argument #1 to 'log': level must be \"error\", \"warn\", \"info\""
              .. " or \"debug\", got " .. tostring(level), 2)
    end
    local log = need_core("log")
    local n = select("#", ...)
    local msg
    if n == 1 then
        msg = tostring((...))
    else
        local parts = { ... }
        for i = 1, n do
            parts[i] = tostring(parts[i])
        end
        msg = concat(parts, " ", 1, n)
    end
    return log(level, msg)
end

-- stats() -> table: the connection counters of GET /stats, nested the same way
-- (by_state, terminations, refused, tls, proxy_protocol, http, bytes_*), plus
-- tls_handshakes and worker (the id of the worker that answers).
function _M.stats()
    return need_core("stats")()
end

-- update_routes(routes) -> true | nil, err: replaces the routes of the running
-- configuration (validated like a reload).
function _M.update_routes(routes)
    if type(routes) ~= "table" then
        error("bad argument #1 to 'update_routes': expected a list of routes, got "
              .. type(routes), 2)
    end
    return need_core("update_routes")(routes)
end

return _M
