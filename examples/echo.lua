-- Echo server: every byte a client sends comes back, until it closes.
--
--   smartproxy examples/echo.lua
--   nc 127.0.0.1 7000                       (type lines, Ctrl-D to end)
--   printf 'hello\r\n' | nc -q1 127.0.0.1 7000
--   curl -s http://127.0.0.1:9101/stats     (the admin endpoint)
--
-- The route has no domains, so the proxy runs the handler as soon as it accepts a
-- connection, without waiting for client data.
local sp = require "smartproxy"

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9101" },
  routes = {
    sp.socket_handler_route(nil, 7000, sp.handlers.echo, { name = "echo" }),
  },
}
