-- smartproxy.routes: helpers that build route tables (SPEC 4 and 7).
--
-- Every helper returns a NEW table (inputs are copied, never mutated or shared) and
-- emits only keys the SPEC defines, so that the core's validator accepts what it gets.
-- A bad argument is a programming mistake: the helper raises an error naming the helper
-- and the argument, e.g.
--   http_route: opts.ports: expected a port, a range or a list, got string "abc"
--
-- `target` is "host:port" ("[::1]:8080" for IPv6), { host = ..., port = ... } (host a
-- string, a list or function(ctx); port a number, "preserve" or function(ctx)), or a list
-- of hosts (round-robin) whose port comes from opts.port. opts.port, when given, is the
-- port of the target whatever the target says.
--
-- Options (which ones a helper takes is listed with it; an unknown option is an error):
--   name, priority, ports, client_ip, security      every helper
--   match, action          extra SPEC fields merged into route.match / route.action
--   port, send_proxy_protocol                       forwarding helpers
--   path, headers          HTTP match conditions (headers: name -> value or "/re/")
--   request_headers, response_headers, rewrite_path, websocket    HTTP forwarding
--   tls_version            match on the client's highest TLS version offer
--   certificate, tls, reencrypt                     TLS termination (tls: SPEC action.tls)
--   protocol               "http" | "tcp" where a helper allows both

local errors = require "smartproxy.errors"
local template = require "smartproxy.template"

local describe = errors.describe
local raise = errors.raise

local error = error
local pcall = pcall
local ipairs = ipairs
local next = next
local pairs = pairs
local tonumber = tonumber
local tostring = tostring
local type = type
local floor = math.floor
local str_format = string.format
local str_find = string.find
local str_match = string.match

local _M = {}

-- Keys the SPEC defines (section 4; half_open from the README, which the core accepts).
local MATCH_KEYS = { ports = true, domains = true, path = true, client_ip = true,
                     tls_version = true, headers = true }
local ACTION_KEYS = { type = true, protocol = true, target = true, targets = true,
                      tls = true, send_proxy_protocol = true, websocket = true,
                      headers = true, rewrite_path = true, handler = true, redirect = true,
                      forwarding_engine = true, nftables = true, half_open = true }
local TLS_KEYS = { mode = true, certificate = true, min_version = true,
                   upstream_verify = true, upstream_sni = true, upstream_ca_file = true }
local SECURITY_KEYS = { ip_allow_list = true, ip_block_list = true, max_connections = true,
                        max_connections_per_ip = true, basic_auth = true, rate_limit = true }
local TLS_VERSIONS = { TLSv1 = true, ["TLSv1.1"] = true, ["TLSv1.2"] = true,
                       ["TLSv1.3"] = true }
local MIN_VERSIONS = { ["TLSv1.2"] = true, ["TLSv1.3"] = true }
local REDIRECT_STATUS = { [301] = true, [302] = true, [303] = true, [307] = true,
                          [308] = true }
local NFT_PROTOCOLS = { tcp = true, udp = true, all = true }

---------------------------------------------------------------------------------------
-- small tools

-- Internal errors carry no position (errors.raise); the exported helpers re-raise them
-- at the caller's line (see `export` below).
local function fail(fname, what, expected, got)
    raise("%s: %s: expected %s, got %s", fname, what, expected, describe(got))
end

-- Deep copy; functions and other values are kept by reference.
local function copy(v, seen)
    if type(v) ~= "table" then
        return v
    end
    seen = seen or {}
    if seen[v] then
        return seen[v]
    end
    local out = {}
    seen[v] = out
    for k, x in pairs(v) do
        out[copy(k, seen)] = copy(x, seen)
    end
    return out
end
_M.copy = copy

local function is_list(t)
    if type(t) ~= "table" then
        return false
    end
    local n = #t
    if n == 0 then
        return false
    end
    local count = 0
    for _ in pairs(t) do
        count = count + 1
    end
    return count == n
end

local function is_port_number(v)
    return type(v) == "number" and v == floor(v) and v >= 1 and v <= 65535
end

-- Raises when `t` has a key outside `allowed` (a set, or a list of sets).
local function check_keys(fname, what, t, allowed)
    for k in pairs(t) do
        local ok = false
        if type(k) == "string" then
            if allowed[1] then
                for _, set in ipairs(allowed) do
                    if set[k] then
                        ok = true
                        break
                    end
                end
            else
                ok = allowed[k] == true
            end
        end
        if not ok then
            raise("%s: %s: unknown key %s", fname, what, describe(k))
        end
    end
end

---------------------------------------------------------------------------------------
-- argument checks; each returns a fresh value for the route

local function check_port_item(v)
    if is_port_number(v) then
        return true
    end
    if type(v) == "table" and next(v) ~= nil and is_port_number(v.from)
       and is_port_number(v.to) and v.from <= v.to then
        for k in pairs(v) do
            if k ~= "from" and k ~= "to" then
                return false
            end
        end
        return true
    end
    return false
end

local function check_ports(fname, what, v)
    if check_port_item(v) then
        return copy(v)
    end
    if is_list(v) then
        for _, item in ipairs(v) do
            if not check_port_item(item) then
                fail(fname, what, "a port, a range or a list", v)
            end
        end
        return copy(v)
    end
    fail(fname, what, "a port, a range or a list", v)
end

local function check_string_list(fname, what, v, expected, valid)
    local function ok(s)
        return type(s) == "string" and s ~= "" and (not valid or valid[s])
    end
    if ok(v) then
        return v
    end
    if is_list(v) then
        for _, s in ipairs(v) do
            if not ok(s) then
                fail(fname, what, expected, v)
            end
        end
        return copy(v)
    end
    fail(fname, what, expected, v)
end

local function check_domains(fname, v, optional)
    if v == nil and optional then
        return nil
    end
    local function ok(s)
        return type(s) == "string" and s ~= "" and not str_find(s, "[%s/:]")
    end
    if ok(v) then
        return v
    end
    if is_list(v) then
        for _, s in ipairs(v) do
            if not ok(s) then
                fail(fname, "bad argument #1 (domains)",
                     "a domain or a non-empty list of domains", s)
            end
        end
        return copy(v)
    end
    fail(fname, "bad argument #1 (domains)",
         optional and "nil (any), a domain or a non-empty list of domains"
                  or "a domain or a non-empty list of domains (\"*\" for any)", v)
end

local function check_header_map(fname, what, v)
    if type(v) ~= "table" or next(v) == nil then
        fail(fname, what, "a table of header name -> value", v)
    end
    for k, x in pairs(v) do
        if type(k) ~= "string" or not str_find(k, "^[!#$%%&'*+.^_`|~%w-]+$") then
            fail(fname, what .. " (name)", "a header name", k)
        end
        if type(x) ~= "string" or str_find(x, "[\r\n]") then
            fail(fname, what .. "[" .. k .. "]", "a string without CR or LF", x)
        end
    end
    return copy(v)
end

local function check_template_map(fname, what, v)
    local out = check_header_map(fname, what, v)
    for k, x in pairs(out) do
        local ok, err = template.validate(x)
        if not ok then
            raise("%s: %s[%s]: %s", fname, what, k, err)
        end
    end
    return out
end

local function check_template(fname, what, v)
    local ok, err = template.validate(v)
    if not ok then
        raise("%s: %s: %s", fname, what, err)
    end
    return v
end

-- "host:port", "[v6]:port", "host", "v6" -> host, port string | nil
local function split_host_port(s)
    local h, p = str_match(s, "^%[([^%]]+)%]:([^:]*)$")
    if h then
        return h, p
    end
    h = str_match(s, "^%[([^%]]+)%]$")
    if h then
        return h
    end
    h, p = str_match(s, "^([^:]+):([^:]*)$")
    if h then
        return h, p
    end
    return s
end

local function parse_port_string(fname, what, p)
    if p == "preserve" then
        return p
    end
    local n = str_find(p, "^%d+$") and tonumber(p)
    if not is_port_number(n) then
        fail(fname, what, "a port number or \"preserve\"", p)
    end
    return n
end

local function check_target_port(fname, what, p)
    if is_port_number(p) or p == "preserve" or type(p) == "function" then
        return p
    end
    fail(fname, what, "a port number, \"preserve\" or a function", p)
end

local function check_host(fname, what, h)
    if type(h) == "string" and h ~= "" and not str_find(h, "%s") then
        return h
    end
    fail(fname, what, "a host name or address", h)
end

-- One target -> { host = ..., port = ... }. `what` names the argument.
local function parse_target(fname, what, target, port)
    local host
    local t = type(target)
    if t == "string" then
        local h, p = split_host_port(target)
        host = check_host(fname, what, h)
        if p then
            local n = parse_port_string(fname, what, p)
            port = port or n
        end
    elseif t == "table" and target.host ~= nil then
        check_keys(fname, what, target, { host = true, port = true })
        local h = target.host
        if type(h) == "function" then
            host = h
        elseif type(h) == "table" then
            if not is_list(h) then
                fail(fname, what .. ".host", "a host, a list of hosts or a function", h)
            end
            for _, x in ipairs(h) do
                check_host(fname, what .. ".host", x)
            end
            host = copy(h)
        else
            host = check_host(fname, what .. ".host", h)
        end
        if target.port ~= nil then
            local p = check_target_port(fname, what .. ".port", target.port)
            port = port or p
        end
    elseif is_list(target) then
        host = {}
        for i, s in ipairs(target) do
            if type(s) ~= "string" then
                fail(fname, what .. "[" .. i .. "]", "a host name or address", s)
            end
            local h, p = split_host_port(s)
            if p then
                raise("%s: %s[%d]: a list of hosts takes its port from opts.port; use "
                      .. "load_balancer_route for targets with their own ports, got %s",
                      fname, what, i, describe(s))
            end
            host[i] = check_host(fname, what .. "[" .. i .. "]", h)
        end
    else
        fail(fname, what, "\"host:port\", { host = ..., port = ... } or a list of hosts",
             target)
    end
    if port == nil then
        raise("%s: %s: no port: give \"host:port\", { host = ..., port = ... } or opts.port",
              fname, what)
    end
    return { host = host, port = port }
end

local function check_certificate(fname, what, v)
    if v == "auto" then
        return v
    end
    if type(v) == "table" and type(v.cert) == "string" and v.cert ~= ""
       and type(v.key) == "string" and v.key ~= "" then
        check_keys(fname, what, v, { cert = true, key = true })
        return { cert = v.cert, key = v.key }
    end
    fail(fname, what, "\"auto\" or { cert = PATH_OR_PEM, key = PATH_OR_PEM }", v)
end

local function check_send_proxy_protocol(fname, v)
    if v == true or v == false or v == "v1" or v == "v2" then
        return v
    end
    fail(fname, "opts.send_proxy_protocol", "false, true, \"v1\" or \"v2\"", v)
end

local function check_websocket(fname, v)
    if type(v) == "boolean" then
        return { enabled = v }
    end
    if type(v) == "table" and type(v.enabled) == "boolean" then
        check_keys(fname, "opts.websocket", v, { enabled = true })
        return { enabled = v.enabled }
    end
    fail(fname, "opts.websocket", "a boolean or { enabled = BOOLEAN }", v)
end

---------------------------------------------------------------------------------------
-- option groups

local COMMON = { name = true, priority = true, ports = true, client_ip = true,
                 security = true, match = true, action = true }
local FORWARD = { port = true, send_proxy_protocol = true }
local HTTP = { path = true, headers = true, request_headers = true,
               response_headers = true, rewrite_path = true, websocket = true }
local TLS_TERMINATE = { certificate = true, tls = true, reencrypt = true,
                        tls_version = true }
local TLS_VERSION = { tls_version = true }
local PROTOCOL = { protocol = true }
local REDIRECT = { status = true, https_port = true, to = true, path = true,
                   headers = true }
local COMPLETE = { http_ports = true, status = true, https_port = true }
local NFTABLES = { port = true, preserve_source_ip = true, protocol = true,
                   max_rate = true }

local function check_opts(fname, opts, groups)
    if opts == nil then
        return {}
    end
    if type(opts) ~= "table" then
        fail(fname, "bad argument (opts)", "a table or nil", opts)
    end
    check_keys(fname, "opts", opts, groups)
    return opts
end

-- The skeleton every helper starts from: name, priority, match.ports/domains/client_ip,
-- security.
local function base_route(fname, domains, opts, default_ports)
    local route = { match = {}, action = {} }
    if opts.name ~= nil then
        if type(opts.name) ~= "string" or opts.name == "" then
            fail(fname, "opts.name", "a non-empty string", opts.name)
        end
        route.name = opts.name
    end
    if opts.priority ~= nil then
        if type(opts.priority) ~= "number" or opts.priority ~= floor(opts.priority) then
            fail(fname, "opts.priority", "an integer", opts.priority)
        end
        route.priority = opts.priority
    end
    local m = route.match
    if opts.ports ~= nil then
        m.ports = check_ports(fname, "opts.ports", opts.ports)
    else
        m.ports = default_ports
    end
    m.domains = domains
    if opts.client_ip ~= nil then
        m.client_ip = check_string_list(fname, "opts.client_ip", opts.client_ip,
                                        "an address pattern or a list of them")
    end
    if opts.tls_version ~= nil then
        m.tls_version = check_string_list(fname, "opts.tls_version", opts.tls_version,
                                          "\"TLSv1\" .. \"TLSv1.3\" or a list of them",
                                          TLS_VERSIONS)
    end
    if opts.security ~= nil then
        if type(opts.security) ~= "table" then
            fail(fname, "opts.security", "a table", opts.security)
        end
        check_keys(fname, "opts.security", opts.security, SECURITY_KEYS)
        route.security = copy(opts.security)
    end
    return route
end

-- Applies the HTTP options; returns true when any was given.
local function apply_http(fname, route, opts)
    local m, a = route.match, route.action
    local any = false
    if opts.path ~= nil then
        if type(opts.path) ~= "string" or opts.path == "" then
            fail(fname, "opts.path", "a path pattern", opts.path)
        end
        m.path = opts.path
        any = true
    end
    if opts.headers ~= nil then
        m.headers = check_header_map(fname, "opts.headers", opts.headers)
        any = true
    end
    if opts.request_headers ~= nil or opts.response_headers ~= nil then
        a.headers = {}
        if opts.request_headers ~= nil then
            a.headers.request = check_template_map(fname, "opts.request_headers",
                                                   opts.request_headers)
        end
        if opts.response_headers ~= nil then
            a.headers.response = check_template_map(fname, "opts.response_headers",
                                                    opts.response_headers)
        end
        any = true
    end
    if opts.rewrite_path ~= nil then
        a.rewrite_path = check_template(fname, "opts.rewrite_path", opts.rewrite_path)
        any = true
    end
    if opts.websocket ~= nil then
        a.websocket = check_websocket(fname, opts.websocket)
        any = true
    end
    return any
end

local function apply_forward(fname, route, opts)
    if opts.send_proxy_protocol ~= nil then
        route.action.send_proxy_protocol = check_send_proxy_protocol(fname,
                                                                     opts.send_proxy_protocol)
    end
end

local function opts_port(fname, opts)
    if opts.port ~= nil then
        return check_target_port(fname, "opts.port", opts.port)
    end
    return nil
end

-- action.tls for termination, from opts.certificate / opts.tls / opts.reencrypt.
local function terminate_tls(fname, opts)
    local tls = {}
    if opts.tls ~= nil then
        if type(opts.tls) ~= "table" then
            fail(fname, "opts.tls", "a table", opts.tls)
        end
        check_keys(fname, "opts.tls", opts.tls, TLS_KEYS)
        tls = copy(opts.tls)
    end
    if opts.certificate ~= nil then
        tls.certificate = opts.certificate
    end
    tls.certificate = check_certificate(fname, "opts.certificate",
                                        tls.certificate == nil and "auto" or tls.certificate)
    if opts.reencrypt ~= nil and type(opts.reencrypt) ~= "boolean" then
        fail(fname, "opts.reencrypt", "a boolean", opts.reencrypt)
    end
    local mode = tls.mode
    if mode == nil then
        mode = opts.reencrypt and "terminate-and-reencrypt" or "terminate"
    elseif mode ~= "terminate" and mode ~= "terminate-and-reencrypt" then
        fail(fname, "opts.tls.mode", "\"terminate\" or \"terminate-and-reencrypt\"", mode)
    end
    tls.mode = mode
    if tls.min_version ~= nil and not MIN_VERSIONS[tls.min_version] then
        fail(fname, "opts.tls.min_version", "\"TLSv1.2\" or \"TLSv1.3\"", tls.min_version)
    end
    if tls.upstream_verify ~= nil and type(tls.upstream_verify) ~= "boolean" then
        fail(fname, "opts.tls.upstream_verify", "a boolean", tls.upstream_verify)
    end
    for _, k in ipairs({ "upstream_sni", "upstream_ca_file" }) do
        if tls[k] ~= nil and (type(tls[k]) ~= "string" or tls[k] == "") then
            fail(fname, "opts.tls." .. k, "a non-empty string", tls[k])
        end
    end
    if mode == "terminate" then
        for _, k in ipairs({ "upstream_verify", "upstream_sni", "upstream_ca_file" }) do
            if tls[k] ~= nil then
                raise("%s: opts.tls.%s: only with mode \"terminate-and-reencrypt\" "
                      .. "(opts.reencrypt = true)", fname, k)
            end
        end
    end
    return tls
end

local function check_protocol(fname, v, default)
    if v == nil then
        return default
    end
    if v ~= "http" and v ~= "tcp" then
        fail(fname, "opts.protocol", "\"http\" or \"tcp\"", v)
    end
    return v
end

-- Merges opts.match / opts.action (extra SPEC fields) into the route.
local function apply_extra(fname, route, opts)
    for _, part in ipairs({ { "match", MATCH_KEYS }, { "action", ACTION_KEYS } }) do
        local key, allowed = part[1], part[2]
        local extra = opts[key]
        if extra ~= nil then
            if type(extra) ~= "table" then
                fail(fname, "opts." .. key, "a table of route." .. key .. " fields", extra)
            end
            check_keys(fname, "opts." .. key, extra, allowed)
            local dst = route[key]
            for k, v in pairs(extra) do
                dst[k] = copy(v)
            end
        end
    end
    return route
end

---------------------------------------------------------------------------------------
-- the helpers (implementations take the name they report errors under)

local function http_route(fname, domains, target, opts)
    opts = check_opts(fname, opts, { COMMON, FORWARD, HTTP })
    local route = base_route(fname, check_domains(fname, domains), opts, 80)
    local a = route.action
    a.type = "forward"
    a.protocol = "http"
    a.target = parse_target(fname, "bad argument #2 (target)", target,
                            opts_port(fname, opts))
    apply_http(fname, route, opts)
    apply_forward(fname, route, opts)
    return apply_extra(fname, route, opts)
end

local function https_terminate_route(fname, domains, target, opts)
    opts = check_opts(fname, opts, { COMMON, FORWARD, HTTP, TLS_TERMINATE, PROTOCOL })
    local route = base_route(fname, check_domains(fname, domains), opts, 443)
    local a = route.action
    a.type = "forward"
    local protocol = check_protocol(fname, opts.protocol, "http")
    a.target = parse_target(fname, "bad argument #2 (target)", target,
                            opts_port(fname, opts))
    a.tls = terminate_tls(fname, opts)
    local http = apply_http(fname, route, opts)
    if http and protocol == "tcp" then
        raise("%s: opts.protocol: \"tcp\" cannot be used with HTTP options", fname)
    end
    a.protocol = protocol
    apply_forward(fname, route, opts)
    return apply_extra(fname, route, opts)
end

local function https_passthrough_route(fname, domains, target, opts)
    opts = check_opts(fname, opts, { COMMON, FORWARD, TLS_VERSION })
    local route = base_route(fname, check_domains(fname, domains), opts, 443)
    local a = route.action
    a.type = "forward"
    a.target = parse_target(fname, "bad argument #2 (target)", target,
                            opts_port(fname, opts))
    a.tls = { mode = "passthrough" }
    apply_forward(fname, route, opts)
    return apply_extra(fname, route, opts)
end

local function redirect_to(fname, opts)
    if opts.to ~= nil then
        if opts.https_port ~= nil then
            raise("%s: opts.https_port: not with opts.to (put the port in the template)",
                  fname)
        end
        return check_template(fname, "opts.to", opts.to)
    end
    local p = opts.https_port
    if p == nil or p == 443 then
        return "https://{domain}{url}"
    end
    if not is_port_number(p) then
        fail(fname, "opts.https_port", "a port number", p)
    end
    return "https://{domain}:" .. p .. "{url}"
end

local function redirect_status(fname, status)
    if status == nil then
        return 301
    end
    if not REDIRECT_STATUS[status] then
        fail(fname, "opts.status", "301, 302, 303, 307 or 308", status)
    end
    return status
end

local function http_to_https_redirect(fname, domains, opts)
    opts = check_opts(fname, opts, { COMMON, REDIRECT })
    local route = base_route(fname, check_domains(fname, domains), opts, 80)
    local a = route.action
    a.type = "redirect"
    a.protocol = "http"
    a.redirect = { to = redirect_to(fname, opts), status = redirect_status(fname, opts.status) }
    if opts.path ~= nil then
        if type(opts.path) ~= "string" or opts.path == "" then
            fail(fname, "opts.path", "a path pattern", opts.path)
        end
        route.match.path = opts.path
    end
    if opts.headers ~= nil then
        route.match.headers = check_header_map(fname, "opts.headers", opts.headers)
    end
    return apply_extra(fname, route, opts)
end

local function complete_https_server(fname, domains, target, opts)
    opts = check_opts(fname, opts, { COMMON, FORWARD, HTTP, TLS_TERMINATE, PROTOCOL,
                                     COMPLETE })
    local https_opts = {}
    for k, v in pairs(opts) do
        if not COMPLETE[k] then
            https_opts[k] = v
        end
    end
    local https = https_terminate_route(fname, domains, target, https_opts)

    local redirect_opts = {
        priority = opts.priority,
        client_ip = opts.client_ip,
        security = opts.security,
        status = opts.status,
    }
    if opts.name ~= nil then
        redirect_opts.name = https.name .. "-redirect"
    end
    if opts.http_ports ~= nil then
        redirect_opts.ports = check_ports(fname, "opts.http_ports", opts.http_ports)
    end
    local https_port = opts.https_port
    if https_port == nil and is_port_number(opts.ports) then
        https_port = opts.ports
    end
    if https_port ~= nil and not is_port_number(https_port) then
        fail(fname, "opts.https_port", "a port number", https_port)
    end
    redirect_opts.https_port = https_port
    return { https, http_to_https_redirect(fname, domains, redirect_opts) }
end

local function socket_handler_route(fname, domains, port, handler, opts)
    opts = check_opts(fname, opts, { COMMON, TLS_VERSION })
    if opts.ports ~= nil then
        raise("%s: opts.ports: the ports are argument #2", fname)
    end
    local route = base_route(fname, check_domains(fname, domains, true), opts,
                             check_ports(fname, "bad argument #2 (port)", port))
    if type(handler) ~= "function" then
        fail(fname, "bad argument #3 (handler)", "a function(sock, ctx)", handler)
    end
    local a = route.action
    a.type = "socket-handler"
    a.handler = handler
    return apply_extra(fname, route, opts)
end

local function nftables_route(fname, domains, target, opts)
    opts = check_opts(fname, opts, { COMMON, NFTABLES })
    -- the kernel sees packets, not names: only "any" can be matched (the core refuses
    -- other domains on kernel routes; say so here, where the mistake is made)
    if domains ~= nil and domains ~= "*" then
        fail(fname, "bad argument #1 (domains)", "nil or \"*\" (kernel forwarding cannot match names)",
             domains)
    end
    local route = base_route(fname, domains, opts, 80)
    local a = route.action
    a.type = "forward"
    a.target = parse_target(fname, "bad argument #2 (target)", target,
                            opts_port(fname, opts))
    a.forwarding_engine = "nftables"
    local nft = {}
    if opts.preserve_source_ip ~= nil then
        if type(opts.preserve_source_ip) ~= "boolean" then
            fail(fname, "opts.preserve_source_ip", "a boolean", opts.preserve_source_ip)
        end
        nft.preserve_source_ip = opts.preserve_source_ip
    end
    if opts.protocol ~= nil then
        if not NFT_PROTOCOLS[opts.protocol] then
            fail(fname, "opts.protocol", "\"tcp\", \"udp\" or \"all\"", opts.protocol)
        end
        nft.protocol = opts.protocol
    end
    if opts.max_rate ~= nil then
        if type(opts.max_rate) ~= "string" or not str_find(opts.max_rate, "^%d+%a+$") then
            fail(fname, "opts.max_rate", "a rate such as \"10mbps\"", opts.max_rate)
        end
        nft.max_rate = opts.max_rate
    end
    if next(nft) then
        a.nftables = nft
    end
    return apply_extra(fname, route, opts)
end

local function load_balancer_route(fname, domains, targets, opts)
    opts = check_opts(fname, opts, { COMMON, FORWARD, HTTP, TLS_TERMINATE, PROTOCOL })
    local terminate = opts.certificate ~= nil or opts.tls ~= nil or opts.reencrypt ~= nil
    local route = base_route(fname, check_domains(fname, domains, true), opts,
                             terminate and 443 or 80)
    if not is_list(targets) then
        fail(fname, "bad argument #2 (targets)", "a non-empty list of targets", targets)
    end
    local port = opts_port(fname, opts)
    local list = {}
    for i, t in ipairs(targets) do
        list[i] = parse_target(fname, "bad argument #2 (targets[" .. i .. "])", t, port)
    end
    local a = route.action
    a.type = "forward"
    a.targets = list
    if terminate then
        a.tls = terminate_tls(fname, opts)
    end
    local http = apply_http(fname, route, opts)
    local protocol = check_protocol(fname, opts.protocol, http and "http" or nil)
    if http and protocol == "tcp" then
        raise("%s: opts.protocol: \"tcp\" cannot be used with HTTP options", fname)
    end
    a.protocol = protocol
    apply_forward(fname, route, opts)
    return apply_extra(fname, route, opts)
end

---------------------------------------------------------------------------------------
-- exports: errors are re-raised at the line that called the helper

local function export(fname, impl)
    _M[fname] = function(...)
        local ok, res = pcall(impl, fname, ...)
        if not ok then
            error(res, 2)
        end
        return res
    end
end

-- http_route(domains, target, opts): HTTP on port 80 (opts.ports) to `target`.
-- opts: common, forward, HTTP.
export("http_route", http_route)

-- https_terminate_route(domains, target, opts): TLS terminated on 443, then HTTP
-- (opts.protocol = "tcp" forwards the decrypted byte stream instead). certificate:
-- opts.certificate or "auto"; opts.reencrypt = true: TLS again towards the target.
-- opts: common, forward, HTTP, certificate, tls, reencrypt, tls_version, protocol.
export("https_terminate_route", https_terminate_route)

-- https_passthrough_route(domains, target, opts): TLS relayed as is (SNI routing) on 443.
-- opts: common, forward, tls_version.
export("https_passthrough_route", https_passthrough_route)

-- http_to_https_redirect(domains, opts): answers plain HTTP on port 80 with a redirect
-- to "https://{domain}{url}" (opts.to: another template; opts.https_port: a port other
-- than 443), status 301 (opts.status).
-- opts: common, status, https_port, to, path, headers.
export("http_to_https_redirect", http_to_https_redirect)

-- complete_https_server(domains, target, opts) -> { https_route, redirect_route }: TLS
-- termination on 443 (opts.ports) plus a redirect from HTTP on 80 (opts.http_ports).
-- opts: those of https_terminate_route, plus http_ports, status (of the redirect) and
-- https_port (default: opts.ports when it is a single port). With opts.name the
-- redirect is named NAME .. "-redirect".
export("complete_https_server", complete_https_server)

-- socket_handler_route(domains, port, handler, opts): connections on `port` (a port, a
-- range or a list) run handler(sock, ctx). domains nil = any.
-- opts: common (but ports), tls_version.
export("socket_handler_route", socket_handler_route)

-- nftables_route(domains, target, opts): kernel NAT forwarding (forwarding_engine =
-- "nftables") on port 80 (opts.ports). domains: nil or "*" (the kernel matches no names).
-- opts: common, port, preserve_source_ip, protocol ("tcp" | "udp" | "all"), max_rate.
export("nftables_route", nftables_route)

-- load_balancer_route(domains, targets, opts): spreads connections (or HTTP requests,
-- with opts.protocol = "http" or any HTTP option) round-robin over `targets`, a list of
-- "host:port" or { host = ..., port = ... }; a target that refuses or times out is
-- skipped. Port 80, or 443 when TLS is terminated (opts.certificate / tls / reencrypt).
-- domains nil = any.
-- opts: common, forward, HTTP, certificate, tls, reencrypt, tls_version, protocol.
export("load_balancer_route", load_balancer_route)

return _M
