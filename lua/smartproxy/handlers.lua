-- smartproxy.handlers: ready-made socket handlers (SPEC 7). Each is a function(sock, ctx)
-- for a "socket-handler" route, or a constructor returning one:
--
--   sp.handlers.echo                              itself a handler
--   sp.handlers.proxy(host, port, connect_opts)
--   sp.handlers.line_protocol(function(line, sock, ctx) ... end)
--   sp.handlers.http_response{ status = 200, headers = {...}, body = "..." }
--   sp.handlers.http_redirect("https://{domain}{url}", 301)
--   sp.handlers.block(message)
--   sp.handlers.http_block(403, "Forbidden\n")
--   sp.handlers.http_server(function(req, res, ctx) ... end, opts)
--
-- Constructors check their arguments and raise on mistakes; the handlers themselves end
-- a connection quietly when the client goes away. A handler ends by returning: the proxy
-- then flushes what was written to the client and closes it (sock:close() would drop
-- bytes still queued).

local runtime = require "smartproxy.runtime"
local http = require "smartproxy.http"
local errors = require "smartproxy.errors"
local template = require "smartproxy.template"

local describe = errors.describe
local raise = errors.raise

local byte = string.byte
local error = error
local floor = math.floor
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local str_format = string.format
local str_sub = string.sub
local tostring = tostring
local type = type

local _M = {}

-- Returned by a line_protocol callback (alone, or after a reply) to end the connection.
_M.CLOSE = setmetatable({}, { __tostring = function() return "smartproxy.handlers.CLOSE" end })
local CLOSE = _M.CLOSE

-- Constructors raise without a position (errors.raise); `export` (at the end) re-raises
-- at the line of the caller.
local function bad_arg(fname, n, name, expected, got)
    raise("handlers.%s: bad argument #%d (%s): expected %s, got %s", fname, n, name,
          expected, describe(got))
end

local function is_port(v)
    return type(v) == "number" and v == floor(v) and v >= 1 and v <= 65535
end

---------------------------------------------------------------------------------------
-- stream handlers

-- How echo batches: it waits (up to ECHO_IDLE_MS) for one byte, then takes what else
-- arrives within ECHO_GATHER_MS (up to ECHO_CHUNK bytes) and writes it all back at once,
-- so a bulk transfer costs one write per chunk and never holds the worker for long.
local ECHO_IDLE_MS = 60000
local ECHO_GATHER_MS = 1
local ECHO_CHUNK = 16384

-- echo(sock, ctx): writes back every byte it reads, until the client closes (or stays
-- silent for a minute).
function _M.echo(sock)
    while true do
        sock:set_timeout(ECHO_IDLE_MS)
        local first = sock:read(1)
        if not first then
            return
        end
        sock:set_timeout(ECHO_GATHER_MS)
        local more, err, partial = sock:read(ECHO_CHUNK)
        if not sock:write(first .. (more or partial or "")) then
            return
        end
        if err == "closed" then
            return
        end
    end
end

-- proxy(host, port, opts) -> handler: connects to host:port (opts as for sp.connect:
-- timeout, tls, sni, proxy_protocol) and pipes the two sockets; a failed connect is
-- logged and ends the connection.
local function proxy(host, port, opts)
    if type(host) ~= "string" or host == "" then
        bad_arg("proxy", 1, "host", "a host name or address", host)
    end
    if not is_port(port) then
        bad_arg("proxy", 2, "port", "a port number", port)
    end
    if opts ~= nil and type(opts) ~= "table" then
        bad_arg("proxy", 3, "opts", "a table of connect options or nil", opts)
    end
    return function(sock)
        local up, err = runtime.connect(host, port, opts)
        if not up then
            runtime.log("warn", str_format("proxy: cannot connect to %s:%d: %s", host, port,
                                           tostring(err)))
            return
        end
        return runtime.pipe(sock, up)
    end
end

-- line_protocol(fn) -> handler: reads lines (without their CRLF or LF) and calls
-- fn(line, sock, ctx). fn returns a reply (a string, written with "\r\n"), or false/nil
-- to write nothing, or sp.handlers.CLOSE to end; a reply followed by CLOSE is written,
-- then the connection ends. An unterminated last line at EOF is dropped.
local function line_protocol(fn)
    if type(fn) ~= "function" then
        bad_arg("line_protocol", 1, "fn", "a function(line, sock, ctx)", fn)
    end
    return function(sock, ctx)
        while true do
            local line = sock:read("*l")
            if not line then
                break
            end
            if byte(line, -1) == 13 then
                line = str_sub(line, 1, -2)
            end
            local reply, after = fn(line, sock, ctx)
            if reply == CLOSE then
                break
            end
            if reply then
                local t = type(reply)
                if t ~= "string" and t ~= "number" then
                    error("line_protocol: the callback returned a " .. t
                          .. " (expected a string, false, nil or sp.handlers.CLOSE)", 0)
                end
                if not sock:write(reply .. "\r\n") then
                    break
                end
            end
            if after == CLOSE then
                break
            end
        end
    end
end

-- block(message) -> handler: writes message (if any) and ends the connection. With a
-- message, what the client sends meanwhile is read and dropped for a moment (at most
-- 200 ms between reads, 64 KiB), so that closing does not reset the connection before
-- the client has read the message.
local BLOCK_LINGER_MS = 200
local BLOCK_LINGER_BYTES = 65536

local function block(message)
    if message ~= nil and type(message) ~= "string" then
        bad_arg("block", 1, "message", "a string or nil", message)
    end
    if message == "" then
        message = nil
    end
    local linger = http.linger
    return function(sock)
        if message and sock:write(message) then
            linger(sock, BLOCK_LINGER_MS, BLOCK_LINGER_BYTES)
        end
    end
end

---------------------------------------------------------------------------------------
-- HTTP handlers

local SERVER_OPTS = { max_requests = true, max_head_size = true, max_body_size = true,
                      max_headers = true, timeout = true }

local function check_status(fname, n, status, lo, hi)
    if type(status) ~= "number" or status ~= floor(status) or status < lo or status > hi then
        bad_arg(fname, n, "status", str_format("an HTTP status %d..%d", lo, hi), status)
    end
end

local function check_headers(fname, n, headers)
    if headers == nil then
        return {}
    end
    if type(headers) ~= "table" then
        bad_arg(fname, n, "headers", "a table of name -> value", headers)
    end
    local out = {}
    for k, v in pairs(headers) do
        local tv = type(v)
        if type(k) ~= "string" or (tv ~= "string" and tv ~= "number" and tv ~= "table") then
            bad_arg(fname, n, "headers", "a table of name -> value", headers)
        end
        out[k] = v
    end
    -- fail now rather than on the first request
    local ok, err = pcall(http.build_response, 200, out, "")
    if not ok then
        raise("handlers.%s: bad argument #%d (headers): %s", fname, n, err)
    end
    return out
end

local function check_body(fname, n, body)
    if body ~= nil and type(body) ~= "string" then
        bad_arg(fname, n, "body", "a string or nil", body)
    end
    return body
end

local function server_limits(fname, n, opts)
    if opts == nil then
        return http.limits()
    end
    if type(opts) ~= "table" then
        bad_arg(fname, n, "opts", "a table or nil", opts)
    end
    for k, v in pairs(opts) do
        if not SERVER_OPTS[k] then
            raise("handlers.%s: bad argument #%d (opts): unknown key %s", fname, n,
                  describe(k))
        end
        if type(v) ~= "number" or v ~= floor(v) or v < 1 then
            raise("handlers.%s: bad argument #%d (opts.%s): expected a positive integer, "
                  .. "got %s", fname, n, k, describe(v))
        end
    end
    return http.limits(opts)
end

-- http_server(fn, opts) -> handler: an HTTP/1.1 server calling fn(req, res, ctx) for
-- each request.
--   req: method, url (as sent), path, query (without "?"), version (1.0 | 1.1),
--        headers (case-insensitive), body (a string, "" when none), keep_alive
--   res: status (200), headers ({}), body: sent when fn returns; or
--        res:send(status, headers, body) to send at once (true | nil, err)
-- opts: max_requests (per connection, 100), max_head_size (16384, else 431),
--       max_body_size (1048576, else 413), max_headers (100), timeout (ms, per read).
-- An error in fn is logged and answered with 500.
local function http_server(fn, opts)
    if type(fn) ~= "function" then
        bad_arg("http_server", 1, "fn", "a function(req, res, ctx)", fn)
    end
    local limits = server_limits("http_server", 2, opts)
    local serve = http.serve
    return function(sock, ctx)
        return serve(sock, ctx, fn, limits)
    end
end

-- http_response{ status = 200, headers = {...}, body = "" } -> handler: answers every
-- request with that response.
local function http_response(spec)
    if type(spec) ~= "table" then
        bad_arg("http_response", 1, "response", "a table { status, headers, body }", spec)
    end
    for k in pairs(spec) do
        if k ~= "status" and k ~= "headers" and k ~= "body" then
            raise("handlers.http_response: bad argument #1: unknown key %s (expected "
                  .. "status, headers, body)", describe(k))
        end
    end
    local status = spec.status or 200
    check_status("http_response", 1, status, 200, 599)
    local headers = check_headers("http_response", 1, spec.headers)
    local body = check_body("http_response", 1, spec.body) or ""
    local limits = http.limits()
    local function respond(_, res)
        return res:send(status, headers, body)
    end
    return function(sock, ctx)
        return http.serve(sock, ctx, respond, limits)
    end
end

-- http_redirect(template, status) -> handler: answers every request with a redirect to
-- the template filled in from the request and ctx: {domain} {host} {port} {path} {query}
-- {url} {proto} {client_ip} {client_port} {route_name} {connection_id}.
-- status: 301 (default), 302, 303, 307 or 308.
local function http_redirect(tpl, status)
    if type(tpl) ~= "string" or tpl == "" then
        bad_arg("http_redirect", 1, "template", "a URL template", tpl)
    end
    local ok, err = template.validate(tpl)
    if not ok then
        raise("handlers.http_redirect: bad argument #1 (template): %s", err)
    end
    local render = template.compile(tpl)
    status = status or 301
    if status ~= 301 and status ~= 302 and status ~= 303 and status ~= 307
       and status ~= 308 then
        bad_arg("http_redirect", 2, "status", "301, 302, 303, 307 or 308", status)
    end
    local template_vars = http.template_vars
    local limits = http.limits()
    local function respond(req, res, ctx)
        local location = render(template_vars(req, ctx))
        return res:send(status, { Location = location }, "Redirecting to " .. location .. "\n")
    end
    return function(sock, ctx)
        return http.serve(sock, ctx, respond, limits)
    end
end

-- http_block(status, body) -> handler: answers the first request with status (403) and
-- body, then closes.
local function http_block(status, body)
    status = status or 403
    check_status("http_block", 1, status, 400, 599)
    body = check_body("http_block", 2, body)
              or ((http.STATUS_TEXT[status] or "Blocked") .. "\n")
    local limits = http.limits({ max_requests = 1 })
    local function respond(_, res)
        return res:send(status, nil, body)
    end
    return function(sock, ctx)
        return http.serve(sock, ctx, respond, limits)
    end
end

---------------------------------------------------------------------------------------
-- exports: a constructor's argument error is raised at the line that called it

local function export(name, impl)
    _M[name] = function(...)
        local ok, res = pcall(impl, ...)
        if not ok then
            error(res, 2)
        end
        return res
    end
end

export("proxy", proxy)
export("line_protocol", line_protocol)
export("block", block)
export("http_server", http_server)
export("http_response", http_response)
export("http_redirect", http_redirect)
export("http_block", http_block)

return _M
