-- smartproxy: the Lua library for smartproxy configurations and handlers (SPEC 7).
--
--   local sp = require "smartproxy"
--   return { routes = {
--       sp.http_route("example.com", "127.0.0.1:8080"),
--       sp.socket_handler_route(nil, 7000, sp.handlers.echo),
--   } }
--
-- Inside smartproxy it talks to "smartproxy.core", the C module the proxy preloads in
-- every Lua state. In plain LuaJIT (tests, tools) the route helpers and handler
-- constructors work as well; the functions that need the core (connect, pipe, sleep,
-- log, stats, update_routes) raise "smartproxy.core is only available inside smartproxy".
--
-- Every submodule is required here, at load time: the proxy records the sources a
-- configuration loads and replays exactly those in its workers.

local runtime = require "smartproxy.runtime"
local routes = require "smartproxy.routes"
local handlers = require "smartproxy.handlers"
local http = require "smartproxy.http"

local _M = {
    _VERSION = "scm",

    -- runtime (inside smartproxy; handlers run as coroutines and these yield)
    connect = runtime.connect,              -- (host, port, opts) -> sock | nil, err
    pipe = runtime.pipe,                    -- (sock_a, sock_b): the handler ends there
    sleep = runtime.sleep,                  -- (ms)
    timer = runtime.timer,                  -- (ms, fn): once, in the background
    every = runtime.every,                  -- (ms, fn): repeatedly, in the background
    shared = runtime.shared,                -- dictionary shared by all workers
    log = runtime.log,                      -- (level, ...): args joined with spaces
    stats = runtime.stats,                  -- () -> table
    update_routes = runtime.update_routes,  -- (routes) -> true | nil, err
    version = runtime.version(),            -- the proxy's version; nil outside it

    -- ready-made handlers
    handlers = handlers,

    -- submodules
    routes = routes,
    http = http,
}

-- route helpers: sp.http_route, sp.https_terminate_route, ...
for _, name in ipairs({ "http_route", "https_terminate_route", "https_passthrough_route",
                        "complete_https_server", "http_to_https_redirect",
                        "socket_handler_route", "nftables_route", "load_balancer_route" }) do
    _M[name] = routes[name]
end

return _M
