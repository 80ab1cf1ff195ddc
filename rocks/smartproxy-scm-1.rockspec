-- The Lua library of smartproxy: `require "smartproxy"` in configurations and socket
-- handlers, plus the route helpers, the ready-made handlers and a small HTTP/1.1 server.
--
--   luarocks --lua-version 5.1 make rocks/smartproxy-scm-1.rockspec --tree /some/tree
--
-- Pure Lua (LuaJIT 2.1 / Lua 5.1 semantics). "smartproxy.core" is not part of the rock:
-- the proxy preloads it in its Lua states; outside the proxy the helpers still work.
rockspec_format = "3.0"
package = "smartproxy"
version = "scm-1"

-- `luarocks make` builds from the checkout it runs in and does not fetch source.url; the
-- URL is for `luarocks install`/`luarocks pack`. A release rock is a copy of this file named
-- smartproxy-<X.Y.Z>-1.rockspec with version = "<X.Y.Z>-1" and, instead of the branch,
-- tag = "v<X.Y.Z>" (the release's git tag). Before publishing, replace
-- example.invalid/smartproxy with the project's public repository (owner/name): until then
-- the reserved name makes `luarocks install` fail instead of fetching a stranger's code.
source = {
   url = "git+https://example.invalid/smartproxy/smartproxy.git",
   branch = "main",
}

description = {
   summary = "Lua library for smartproxy, the programmable reverse proxy",
   detailed = [[
Route helpers (http_route, https_terminate_route, https_passthrough_route,
complete_https_server, http_to_https_redirect, socket_handler_route, nftables_route,
load_balancer_route), ready-made socket handlers (echo, proxy, line_protocol,
http_response, http_redirect, block, http_block, http_server) and the bridge to the
proxy's C core (connect, pipe, sleep, log, stats, update_routes) for smartproxy
configurations written in Lua.
]],
   license = "MIT",
   labels = { "proxy", "networking", "http", "luajit" },
}

dependencies = {
   "lua >= 5.1",
}

build = {
   type = "builtin",
   modules = {
      ["smartproxy"] = "lua/smartproxy/init.lua",
      ["smartproxy.runtime"] = "lua/smartproxy/runtime.lua",
      ["smartproxy.routes"] = "lua/smartproxy/routes.lua",
      ["smartproxy.handlers"] = "lua/smartproxy/handlers.lua",
      ["smartproxy.http"] = "lua/smartproxy/http.lua",
      ["smartproxy.template"] = "lua/smartproxy/template.lua",
      ["smartproxy.errors"] = "lua/smartproxy/errors.lua",
   },
}

test_dependencies = {
   "busted",
}

test = {
   type = "busted",
   flags = { "--lpath=./lua/?.lua;./lua/?/init.lua", "tests/lua" },
}
