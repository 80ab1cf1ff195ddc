-- Every route helper of the Lua library (SPEC 7) in one config that works out of the box
-- on loopback. Two small Lua HTTP servers in the same proxy stand in for backends A and B.
--
--   curl -H 'Host: app.localhost' http://127.0.0.1:8400/x       http_route: "backend A: /x"
--   curl http://127.0.0.1:8400/x (twice)                        load_balancer_route: A, then B
--   curl --cacert certs/localhost/fullchain.pem https://localhost:8443/p
--                                                               complete_https_server: A over TLS
--   curl -i http://localhost:8480/p                             ... and its redirect to https
--   curl --cacert certs/localhost/fullchain.pem https://api.localhost:8443/q
--                                                               https_terminate_route: B
--   curl -i http://api.localhost:8480/q                         http_to_https_redirect
--   curl --cacert certs/localhost/fullchain.pem https://secure.localhost:8443/z
--                                                               https_passthrough_route: TLS
--        relayed undecrypted to port 8444, where this proxy terminates it again (a stand-in
--        for a backend that holds its own certificate)
--
-- (*.localhost names resolve to 127.0.0.1 in curl and in most resolvers; else add
-- --resolve NAME:PORT:127.0.0.1.) certs/localhost holds a self-signed certificate for
-- localhost, api.localhost and secure.localhost made for this example only: its key is
-- public, never use it for anything else. kernel forwarding (sp.nftables_route) has its
-- own example, nftables.lua, because it needs root.
local sp = require "smartproxy"

-- files next to this config, wherever it is started from
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local certificate = { cert = here .. "certs/localhost/fullchain.pem",
                      key = here .. "certs/localhost/privkey.pem" }

local function backend(name)
  return sp.handlers.http_server(function(req, res)
    res.body = "backend " .. name .. ": " .. req.path .. "\n"
  end)
end

local A, B = "127.0.0.1:8401", "127.0.0.1:8402"

-- complete_https_server makes two routes: HTTPS on 8443 (terminated) to A, and a redirect
-- from HTTP on 8480 to it
local site = sp.complete_https_server("localhost", A, { ports = 8443, http_ports = 8480,
                                                        certificate = certificate, name = "site" })

return {
  workers = 1, -- one worker: the round-robin order below is the same for every client
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9106" },
  routes = {
    sp.socket_handler_route(nil, 8401, backend("A"), { name = "backend-a" }),
    sp.socket_handler_route(nil, 8402, backend("B"), { name = "backend-b" }),

    -- plain HTTP on 8400: one name to A, everything else spread over A and B
    sp.http_route("app.localhost", A, { ports = 8400, name = "app",
                                        response_headers = { ["X-Route"] = "{route_name}" } }),
    sp.load_balancer_route(nil, { A, B }, { ports = 8400, protocol = "http", name = "balanced" }),

    -- HTTPS on 8443 (terminated, SNI picks the route) and the redirects on 8480
    site[1], site[2],
    sp.https_terminate_route("api.localhost", B, { ports = 8443, certificate = certificate,
                                                   name = "api" }),
    sp.http_to_https_redirect("api.localhost", { ports = 8480, https_port = 8443,
                                                 name = "api-redirect" }),

    -- TLS for secure.localhost is not decrypted on 8443: it goes as is to 8444
    sp.https_passthrough_route("secure.localhost", "127.0.0.1:8444", { ports = 8443,
                                                                      name = "secure" }),
    sp.https_terminate_route("secure.localhost", B, { ports = 8444, certificate = certificate,
                                                      name = "secure-backend" }),
  },
}
