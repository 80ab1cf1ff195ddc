-- /etc/smartproxy/proxy.lua: the configuration of the smartproxy service.
--
-- Out of the box it listens on loopback only: port 8080 answers that the proxy runs, and
-- the admin endpoint is on 127.0.0.1:9100 (curl http://127.0.0.1:9100/stats).
-- Edit, then check and reload:
--
--   smartproxy --check /etc/smartproxy/proxy.lua && systemctl reload smartproxy
--
-- Reference: man smartproxy.lua (5), man smartproxy (1).
-- Certificates (certificates.store) belong in /var/lib/smartproxy, which the service may
-- write; access logs in /var/log/smartproxy.
local sp = require "smartproxy"

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9100" },
  routes = {
    sp.socket_handler_route(nil, 8080, sp.handlers.http_response{
      status = 200,
      headers = { ["Content-Type"] = "text/plain" },
      body = "smartproxy is running: edit /etc/smartproxy/proxy.lua\n",
    }, { name = "welcome" }),
  },
}
