-- Route helpers (SPEC 4 and 7): shapes, defaults, options, argument errors, no mutation.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local fake = require "support.fake"

local sp = fake.load_smartproxy(false) -- helpers need no core

-- The keys SPEC 4 defines (half_open: README, accepted by the core).
local ROUTE_KEYS = { name = true, priority = true, match = true, action = true,
                     security = true }
local MATCH_KEYS = { ports = true, domains = true, path = true, client_ip = true,
                     tls_version = true, headers = true }
local ACTION_KEYS = { type = true, protocol = true, target = true, targets = true, tls = true,
                      send_proxy_protocol = true, websocket = true, headers = true,
                      rewrite_path = true, handler = true, redirect = true,
                      forwarding_engine = true, nftables = true, half_open = true }
local TLS_KEYS = { mode = true, certificate = true, min_version = true,
                   upstream_verify = true, upstream_sni = true, upstream_ca_file = true }

local function assert_spec_keys(route)
    for k in pairs(route) do
        assert.is_true(ROUTE_KEYS[k], "route key " .. tostring(k))
    end
    for k in pairs(route.match) do
        assert.is_true(MATCH_KEYS[k], "match key " .. tostring(k))
    end
    for k in pairs(route.action) do
        assert.is_true(ACTION_KEYS[k], "action key " .. tostring(k))
    end
    for k in pairs(route.action.tls or {}) do
        assert.is_true(TLS_KEYS[k], "tls key " .. tostring(k))
    end
    if route.action.target then
        for k in pairs(route.action.target) do
            assert.is_true(k == "host" or k == "port", "target key " .. tostring(k))
        end
    end
    if route.action.redirect then
        for k in pairs(route.action.redirect) do
            assert.is_true(k == "to" or k == "status", "redirect key " .. tostring(k))
        end
    end
end

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

local function noop() end

describe("route helpers", function()
    it("are exported by smartproxy and smartproxy.routes", function()
        for _, name in ipairs({ "http_route", "https_terminate_route", "https_passthrough_route",
                                "complete_https_server", "http_to_https_redirect",
                                "socket_handler_route", "nftables_route",
                                "load_balancer_route" }) do
            assert.is_function(sp[name], name)
            assert.equal(sp.routes[name], sp[name])
        end
    end)

    it("emit only the keys the SPEC defines", function()
        local all = {
            sp.http_route("a.com", "h:1", { path = "/x", headers = { ["x-env"] = "prod" },
                request_headers = { ["X-Real-IP"] = "{client_ip}" },
                response_headers = { ["X-Frame-Options"] = "DENY" },
                rewrite_path = "/v2{path}", websocket = true, send_proxy_protocol = "v2",
                client_ip = "10.0.0.0/8", name = "n", priority = 3,
                security = { ip_allow_list = { "10.0.0.0/8" } } }),
            sp.https_terminate_route("a.com", "h:1", { reencrypt = true,
                tls = { min_version = "TLSv1.3", upstream_verify = true,
                        upstream_sni = "internal", upstream_ca_file = "ca.pem" },
                tls_version = "TLSv1.3" }),
            sp.https_passthrough_route("a.com", "h:1"),
            sp.http_to_https_redirect("a.com"),
            sp.socket_handler_route(nil, 7000, noop),
            sp.nftables_route(nil, "h:1", { preserve_source_ip = true, protocol = "tcp",
                                            max_rate = "10mbps" }),
            sp.load_balancer_route("a.com", { "a:1", "b:2" }, { certificate = "auto" }),
        }
        for _, r in ipairs(sp.complete_https_server("a.com", "h:1")) do
            all[#all + 1] = r
        end
        for _, r in ipairs(all) do
            assert_spec_keys(r)
        end
    end)

    describe("http_route", function()
        it("builds an HTTP forward on port 80", function()
            assert.same({
                match = { ports = 80, domains = "example.com" },
                action = { type = "forward", protocol = "http",
                           target = { host = "10.0.0.5", port = 8080 } },
            }, sp.http_route("example.com", "10.0.0.5:8080"))
        end)

        it("takes name, priority, ports, client_ip, path, headers and HTTP options", function()
            local r = sp.http_route({ "a.com", "*.a.com" }, { host = "h", port = 81 }, {
                name = "api", priority = 10, ports = { 8080, { from = 9000, to = 9010 } },
                client_ip = { "10.0.0.0/8", "::1" }, path = "/users/:id/*",
                headers = { ["user-agent"] = "/curl/" },
                request_headers = { ["X-Forwarded-Proto"] = "{proto}" },
                response_headers = { ["Strict-Transport-Security"] = "max-age=1" },
                rewrite_path = "/v2{path}", websocket = { enabled = false },
                send_proxy_protocol = true,
            })
            assert.same({
                name = "api", priority = 10,
                match = { ports = { 8080, { from = 9000, to = 9010 } },
                          domains = { "a.com", "*.a.com" },
                          client_ip = { "10.0.0.0/8", "::1" }, path = "/users/:id/*",
                          headers = { ["user-agent"] = "/curl/" } },
                action = { type = "forward", protocol = "http",
                           target = { host = "h", port = 81 },
                           headers = { request = { ["X-Forwarded-Proto"] = "{proto}" },
                                       response = { ["Strict-Transport-Security"] = "max-age=1" } },
                           rewrite_path = "/v2{path}", websocket = { enabled = false },
                           send_proxy_protocol = true },
            }, r)
        end)

        it("turns websocket = true into { enabled = true }", function()
            local r = sp.http_route("a.com", "h:1", { websocket = true })
            assert.same({ enabled = true }, r.action.websocket)
        end)

        it("merges opts.match and opts.action (SPEC fields only)", function()
            local r = sp.http_route("a.com", "h:1", { match = { tls_version = { "TLSv1.3" } },
                                                      action = { half_open = true } })
            assert.same({ "TLSv1.3" }, r.match.tls_version)
            assert.is_true(r.action.half_open)
            assert.matches("opts.action: unknown key string \"bogus\"",
                           errmsg(sp.http_route, "a.com", "h:1", { action = { bogus = 1 } }),
                           nil, true)
        end)

        it("rejects bad arguments naming them", function()
            assert.matches("http_route: bad argument #1 (domains): expected a domain or a "
                           .. "non-empty list of domains", errmsg(sp.http_route, nil, "h:1"),
                           nil, true)
            assert.matches("bad argument #1 (domains)", errmsg(sp.http_route, {}, "h:1"), nil, true)
            assert.matches("bad argument #1 (domains)", errmsg(sp.http_route, { "a.com", 5 }, "h:1"),
                           nil, true)
            assert.matches("bad argument #1 (domains)", errmsg(sp.http_route, "a.com:80", "h:1"),
                           nil, true)
            assert.matches("http_route: bad argument #2 (target): expected \"host:port\"",
                           errmsg(sp.http_route, "a.com", 5), nil, true)
            assert.matches("http_route: bad argument #2 (target): no port",
                           errmsg(sp.http_route, "a.com", "host"), nil, true)
            assert.matches("expected a port number or \"preserve\", got string \"99999\"",
                           errmsg(sp.http_route, "a.com", "host:99999"), nil, true)
            assert.matches("http_route: opts.ports: expected a port, a range or a list, got "
                           .. "string \"abc\"",
                           errmsg(sp.http_route, "a.com", "h:1", { ports = "abc" }), nil, true)
            assert.matches("opts.ports", errmsg(sp.http_route, "a.com", "h:1",
                                                { ports = { from = 9, to = 8 } }), nil, true)
            assert.matches("opts.ports", errmsg(sp.http_route, "a.com", "h:1", { ports = {} }),
                           nil, true)
            assert.matches("opts.ports", errmsg(sp.http_route, "a.com", "h:1", { ports = 0 }),
                           nil, true)
            assert.matches("http_route: opts: unknown key string \"prot\"",
                           errmsg(sp.http_route, "a.com", "h:1", { prot = 1 }), nil, true)
            assert.matches("opts.name: expected a non-empty string",
                           errmsg(sp.http_route, "a.com", "h:1", { name = "" }), nil, true)
            assert.matches("opts.priority: expected an integer",
                           errmsg(sp.http_route, "a.com", "h:1", { priority = "high" }), nil, true)
            assert.matches("opts.send_proxy_protocol",
                           errmsg(sp.http_route, "a.com", "h:1", { send_proxy_protocol = "v3" }),
                           nil, true)
            assert.matches("opts.request_headers[X-A]: unknown template variable {nope}",
                           errmsg(sp.http_route, "a.com", "h:1",
                                  { request_headers = { ["X-A"] = "{nope}" } }), nil, true)
            assert.matches("opts.rewrite_path: unknown template variable {x}",
                           errmsg(sp.http_route, "a.com", "h:1", { rewrite_path = "/{x}" }),
                           nil, true)
            assert.matches("opts.headers[x]: expected a string without CR or LF",
                           errmsg(sp.http_route, "a.com", "h:1", { headers = { x = "a\r\nb" } }),
                           nil, true)
            assert.matches("opts.security: unknown key",
                           errmsg(sp.http_route, "a.com", "h:1", { security = { nope = 1 } }),
                           nil, true)
            assert.matches("opts: unknown key string \"certificate\"",
                           errmsg(sp.http_route, "a.com", "h:1", { certificate = "auto" }),
                           nil, true)
        end)

        it("reports the caller's line", function()
            local ok, err = pcall(function()
                sp.http_route("a.com", "h:1", { ports = "abc" })
            end)
            assert.is_false(ok)
            assert.matches("routes_spec.lua:%d+: http_route: opts.ports", err)
        end)

        it("does not mutate or share its inputs", function()
            local domains = { "a.com" }
            local target = { host = { "h1", "h2" }, port = 80 }
            local opts = { ports = { 80, 81 }, client_ip = { "10.0.0.0/8" },
                           request_headers = { ["X-A"] = "1" }, security = { ip_block_list = { "1.2.3.4" } } }
            local r = sp.http_route(domains, target, opts)
            assert.same({ "a.com" }, domains)
            assert.same({ host = { "h1", "h2" }, port = 80 }, target)
            assert.same({ ports = { 80, 81 }, client_ip = { "10.0.0.0/8" },
                          request_headers = { ["X-A"] = "1" },
                          security = { ip_block_list = { "1.2.3.4" } } }, opts)
            assert.are_not.equal(domains, r.match.domains)
            assert.are_not.equal(target.host, r.action.target.host)
            assert.are_not.equal(opts.ports, r.match.ports)
            assert.are_not.equal(opts.security, r.security)
            assert.are_not.equal(opts.request_headers, r.action.headers.request)
            r.match.domains[1] = "changed"
            assert.same({ "a.com" }, domains)
            -- two calls give two tables
            assert.are_not.equal(sp.http_route("a.com", "h:1"), sp.http_route("a.com", "h:1"))
        end)
    end)

    describe("targets", function()
        local function target(t, opts)
            return sp.http_route("a.com", t, opts).action.target
        end

        it("parses host:port, [v6]:port and host:preserve", function()
            assert.same({ host = "backend.local", port = 8080 }, target("backend.local:8080"))
            assert.same({ host = "::1", port = 8080 }, target("[::1]:8080"))
            assert.same({ host = "h", port = "preserve" }, target("h:preserve"))
        end)

        it("takes the port from opts.port, which wins over the target's", function()
            assert.same({ host = "h", port = 81 }, target("h", { port = 81 }))
            assert.same({ host = "::1", port = 81 }, target("::1", { port = 81 }))
            assert.same({ host = "::1", port = 81 }, target("[::1]", { port = 81 }))
            assert.same({ host = "h", port = 82 }, target("h:81", { port = 82 }))
            assert.same({ host = "h", port = 82 }, target({ host = "h", port = 81 }, { port = 82 }))
            assert.same({ host = "h", port = "preserve" }, target("h", { port = "preserve" }))
        end)

        it("takes a list of hosts with opts.port", function()
            assert.same({ host = { "10.0.0.5", "10.0.0.6" }, port = 80 },
                        target({ "10.0.0.5", "10.0.0.6" }, { port = 80 }))
            assert.matches("no port", errmsg(sp.http_route, "a.com", { "a", "b" }), nil, true)
            assert.matches("a list of hosts takes its port from opts.port",
                           errmsg(sp.http_route, "a.com", { "a:1", "b:2" }), nil, true)
        end)

        it("keeps host and port functions", function()
            local h = function() return "x" end
            local p = function() return 1 end
            local t = target({ host = h, port = p })
            assert.equal(h, t.host)
            assert.equal(p, t.port)
        end)

        it("rejects unknown target keys and bad ports", function()
            assert.matches("bad argument #2 (target): unknown key string \"tls\"",
                           errmsg(sp.http_route, "a.com", { host = "h", port = 1, tls = true }),
                           nil, true)
            assert.matches("bad argument #2 (target).port",
                           errmsg(sp.http_route, "a.com", { host = "h", port = 1.5 }), nil, true)
            assert.matches("opts.port", errmsg(sp.http_route, "a.com", "h", { port = "80" }),
                           nil, true)
        end)
    end)

    describe("https_terminate_route", function()
        it("terminates TLS on 443 with certificate \"auto\" and forwards HTTP", function()
            assert.same({
                match = { ports = 443, domains = "a.com" },
                action = { type = "forward", protocol = "http",
                           target = { host = "h", port = 80 },
                           tls = { mode = "terminate", certificate = "auto" } },
            }, sp.https_terminate_route("a.com", "h:80"))
        end)

        it("takes a certificate, TLS options, re-encryption and protocol tcp", function()
            local r = sp.https_terminate_route("a.com", "h:443", {
                certificate = { cert = "/c.pem", key = "/k.pem" }, reencrypt = true,
                tls = { min_version = "TLSv1.3", upstream_verify = true },
                protocol = "tcp",
            })
            assert.same({ mode = "terminate-and-reencrypt", min_version = "TLSv1.3",
                          upstream_verify = true,
                          certificate = { cert = "/c.pem", key = "/k.pem" } }, r.action.tls)
            assert.equal("tcp", r.action.protocol)
            r = sp.https_terminate_route("a.com", "h:443",
                                         { tls = { mode = "terminate-and-reencrypt",
                                                   certificate = { cert = "c", key = "k" } } })
            assert.equal("terminate-and-reencrypt", r.action.tls.mode)
            assert.same({ cert = "c", key = "k" }, r.action.tls.certificate)
        end)

        it("rejects bad TLS options", function()
            assert.matches("opts.certificate: expected \"auto\" or { cert",
                           errmsg(sp.https_terminate_route, "a.com", "h:1", { certificate = "x" }),
                           nil, true)
            assert.matches("opts.certificate", errmsg(sp.https_terminate_route, "a.com", "h:1",
                                                      { certificate = { cert = "c" } }), nil, true)
            assert.matches("opts.tls.mode", errmsg(sp.https_terminate_route, "a.com", "h:1",
                                                   { tls = { mode = "passthrough" } }), nil, true)
            assert.matches("opts.tls.min_version", errmsg(sp.https_terminate_route, "a.com", "h:1",
                                                          { tls = { min_version = "SSLv3" } }),
                           nil, true)
            assert.matches("opts.tls.upstream_sni: only with mode \"terminate-and-reencrypt\"",
                           errmsg(sp.https_terminate_route, "a.com", "h:1",
                                  { tls = { upstream_sni = "x" } }), nil, true)
            assert.matches("opts.tls: unknown key", errmsg(sp.https_terminate_route, "a.com",
                                                           "h:1", { tls = { ciphers = "x" } }),
                           nil, true)
            assert.matches("opts.protocol: \"tcp\" cannot be used with HTTP options",
                           errmsg(sp.https_terminate_route, "a.com", "h:1",
                                  { protocol = "tcp", path = "/x" }), nil, true)
            assert.matches("opts.protocol", errmsg(sp.https_terminate_route, "a.com", "h:1",
                                                   { protocol = "udp" }), nil, true)
            assert.matches("opts.tls_version", errmsg(sp.https_terminate_route, "a.com", "h:1",
                                                      { tls_version = "TLSv9" }), nil, true)
        end)

        it("does not mutate opts.tls", function()
            local tls = { min_version = "TLSv1.2" }
            local r = sp.https_terminate_route("a.com", "h:1", { tls = tls })
            assert.same({ min_version = "TLSv1.2" }, tls)
            assert.are_not.equal(tls, r.action.tls)
        end)
    end)

    describe("https_passthrough_route", function()
        it("relays TLS on 443", function()
            assert.same({
                match = { ports = 443, domains = { "a.com", "b.com" },
                          tls_version = { "TLSv1.3" } },
                action = { type = "forward", target = { host = "h", port = 8443 },
                           tls = { mode = "passthrough" }, send_proxy_protocol = "v2" },
            }, sp.https_passthrough_route({ "a.com", "b.com" }, "h:8443",
                                          { tls_version = { "TLSv1.3" },
                                            send_proxy_protocol = "v2" }))
        end)

        it("refuses HTTP and termination options", function()
            assert.matches("https_passthrough_route: opts: unknown key string \"path\"",
                           errmsg(sp.https_passthrough_route, "a.com", "h:1", { path = "/" }),
                           nil, true)
            assert.matches("unknown key string \"certificate\"",
                           errmsg(sp.https_passthrough_route, "a.com", "h:1",
                                  { certificate = "auto" }), nil, true)
        end)
    end)

    describe("http_to_https_redirect", function()
        it("redirects port 80 to https://{domain}{url} with 301", function()
            assert.same({
                match = { ports = 80, domains = "a.com" },
                action = { type = "redirect", protocol = "http",
                           redirect = { to = "https://{domain}{url}", status = 301 } },
            }, sp.http_to_https_redirect("a.com"))
        end)

        it("takes status, https_port, to, ports, path", function()
            local r = sp.http_to_https_redirect("a.com", { status = 308, https_port = 8443,
                                                           ports = 8080, path = "/x/*" })
            assert.same({ to = "https://{domain}:8443{url}", status = 308 }, r.action.redirect)
            assert.equal(8080, r.match.ports)
            assert.equal("/x/*", r.match.path)
            r = sp.http_to_https_redirect("a.com", { to = "https://www.a.com{path}" })
            assert.equal("https://www.a.com{path}", r.action.redirect.to)
        end)

        it("rejects bad status, templates and targets", function()
            assert.matches("opts.status: expected 301, 302, 303, 307 or 308, got number 200",
                           errmsg(sp.http_to_https_redirect, "a.com", { status = 200 }), nil, true)
            assert.matches("opts.to: unknown template variable {hostname}",
                           errmsg(sp.http_to_https_redirect, "a.com",
                                  { to = "https://{hostname}/" }), nil, true)
            assert.matches("opts.https_port", errmsg(sp.http_to_https_redirect, "a.com",
                                                     { https_port = "443" }), nil, true)
            assert.matches("bad argument #1 (domains)",
                           errmsg(sp.http_to_https_redirect, nil), nil, true)
        end)
    end)

    describe("complete_https_server", function()
        it("returns the HTTPS route and the redirect", function()
            local list = sp.complete_https_server("a.com", "h:80", { name = "web",
                                                                      priority = 5 })
            assert.equal(2, #list)
            assert.same(sp.https_terminate_route("a.com", "h:80", { name = "web", priority = 5 }),
                        list[1])
            assert.same({
                name = "web-redirect", priority = 5,
                match = { ports = 80, domains = "a.com" },
                action = { type = "redirect", protocol = "http",
                           redirect = { to = "https://{domain}{url}", status = 301 } },
            }, list[2])
        end)

        it("redirects to a non-default HTTPS port and takes http_ports and status", function()
            local list = sp.complete_https_server("a.com", "h:80", { ports = 8443,
                                                                      http_ports = 8080,
                                                                      status = 302 })
            assert.equal(8443, list[1].match.ports)
            assert.equal(8080, list[2].match.ports)
            assert.same({ to = "https://{domain}:8443{url}", status = 302 },
                        list[2].action.redirect)
            assert.is_nil(list[1].name)
            assert.is_nil(list[2].name)
        end)

        it("does not share tables between the two routes", function()
            local list = sp.complete_https_server({ "a.com" }, "h:80", { client_ip = { "10.0.0.0/8" } })
            assert.are_not.equal(list[1].match.domains, list[2].match.domains)
            assert.are_not.equal(list[1].match.client_ip, list[2].match.client_ip)
        end)

        it("reports errors under its own name", function()
            assert.matches("complete_https_server: opts.http_ports",
                           errmsg(sp.complete_https_server, "a.com", "h:1", { http_ports = "x" }),
                           nil, true)
            assert.matches("complete_https_server: bad argument #2 (target)",
                           errmsg(sp.complete_https_server, "a.com", 5), nil, true)
            assert.matches("complete_https_server: opts.status",
                           errmsg(sp.complete_https_server, "a.com", "h:1", { status = 200 }),
                           nil, true)
        end)
    end)

    describe("socket_handler_route", function()
        it("builds a socket-handler route for any domain", function()
            local r = sp.socket_handler_route(nil, 7000, noop)
            assert.same({ match = { ports = 7000 },
                          action = { type = "socket-handler", handler = noop } }, r)
            assert.is_nil(r.match.domains)
        end)

        it("takes domains, ranges and common options", function()
            local r = sp.socket_handler_route("a.com", { from = 7000, to = 7010 }, noop,
                                              { name = "h", client_ip = "127.0.0.1" })
            assert.same({ name = "h",
                          match = { ports = { from = 7000, to = 7010 }, domains = "a.com",
                                    client_ip = "127.0.0.1" },
                          action = { type = "socket-handler", handler = noop } }, r)
        end)

        it("rejects a missing handler or port", function()
            assert.matches("socket_handler_route: bad argument #3 (handler): expected a "
                           .. "function(sock, ctx), got nil",
                           errmsg(sp.socket_handler_route, nil, 7000), nil, true)
            assert.matches("socket_handler_route: bad argument #2 (port)",
                           errmsg(sp.socket_handler_route, nil, nil, noop), nil, true)
            assert.matches("opts.ports: the ports are argument #2",
                           errmsg(sp.socket_handler_route, nil, 1, noop, { ports = 2 }), nil, true)
            assert.matches("unknown key string \"path\"",
                           errmsg(sp.socket_handler_route, nil, 1, noop, { path = "/" }), nil, true)
        end)
    end)

    describe("nftables_route", function()
        it("forwards in the kernel", function()
            assert.same({
                match = { ports = 5432 },
                action = { type = "forward", target = { host = "10.0.0.5", port = 5432 },
                           forwarding_engine = "nftables",
                           nftables = { preserve_source_ip = true, protocol = "tcp",
                                        max_rate = "10mbps" } },
            }, sp.nftables_route(nil, "10.0.0.5:5432", { ports = 5432, preserve_source_ip = true,
                                                        protocol = "tcp", max_rate = "10mbps" }))
            local r = sp.nftables_route("*", "h:1")
            assert.equal(80, r.match.ports)
            assert.equal("*", r.match.domains)
            assert.is_nil(r.action.nftables)
        end)

        it("refuses names: the kernel cannot match them", function()
            assert.matches("bad argument #1 (domains): expected nil or \"*\"",
                           errmsg(sp.nftables_route, "a.com", "h:1"), nil, true)
            assert.matches("bad argument #1 (domains)",
                           errmsg(sp.nftables_route, { "a.com" }, "h:1"), nil, true)
        end)

        it("rejects bad nftables options", function()
            assert.matches("opts.protocol: expected \"tcp\", \"udp\" or \"all\"",
                           errmsg(sp.nftables_route, nil, "h:1", { protocol = "icmp" }), nil, true)
            assert.matches("opts.max_rate", errmsg(sp.nftables_route, nil, "h:1",
                                                   { max_rate = 10 }), nil, true)
            assert.matches("opts.preserve_source_ip", errmsg(sp.nftables_route, nil, "h:1",
                                                             { preserve_source_ip = "yes" }),
                           nil, true)
        end)
    end)

    describe("load_balancer_route", function()
        it("spreads over targets", function()
            assert.same({
                match = { ports = 80, domains = "a.com" },
                action = { type = "forward",
                           targets = { { host = "a", port = 1 }, { host = "b", port = 2 },
                                       { host = "::1", port = 3 } } },
            }, sp.load_balancer_route("a.com", { "a:1", { host = "b", port = 2 }, "[::1]:3" }))
        end)

        it("applies opts.port to every target, HTTP and TLS options", function()
            local r = sp.load_balancer_route(nil, { "a", "b" }, { port = 8080, path = "/api/*" })
            assert.same({ { host = "a", port = 8080 }, { host = "b", port = 8080 } },
                        r.action.targets)
            assert.equal("http", r.action.protocol)
            assert.equal(80, r.match.ports)
            r = sp.load_balancer_route("a.com", { "a:1" }, { certificate = "auto" })
            assert.equal(443, r.match.ports)
            assert.same({ mode = "terminate", certificate = "auto" }, r.action.tls)
            r = sp.load_balancer_route("a.com", { "a:1" }, { protocol = "http" })
            assert.equal("http", r.action.protocol)
        end)

        it("rejects an empty or bad list", function()
            assert.matches("load_balancer_route: bad argument #2 (targets): expected a "
                           .. "non-empty list of targets",
                           errmsg(sp.load_balancer_route, "a.com", {}), nil, true)
            assert.matches("bad argument #2 (targets[2]): no port",
                           errmsg(sp.load_balancer_route, "a.com", { "a:1", "b" }), nil, true)
            assert.matches("opts.protocol: \"tcp\" cannot be used with HTTP options",
                           errmsg(sp.load_balancer_route, "a.com", { "a:1" },
                                  { protocol = "tcp", websocket = true }), nil, true)
        end)
    end)
end)
