-- smartproxy.http: a minimal HTTP/1.1 server over a smartproxy socket (SPEC 7), for
-- the ready-made HTTP handlers: http_server, http_response, http_redirect, http_block.
--
-- Requests: request line, headers (looked up case-insensitively), Content-Length and
-- chunked bodies, "Expect: 100-continue", keep-alive by the HTTP/1.1 rules (1.1: open
-- unless "Connection: close"; 1.0: closed unless "Connection: keep-alive"), pipelined
-- requests answered in order. Limits: head 16 KiB (431; 414 for the request line alone),
-- 100 header lines (431), body 1 MiB (413), 100 requests per connection. Malformed or
-- ambiguous requests (no Host on 1.1, two Hosts, a Host that is not host[:port], bad or
-- conflicting Content-Length, Transfer-Encoding with Content-Length or on 1.0) get 400
-- and a close.
--
-- Responses: HTTP/1.1, Content-Length framing, Date, Connection as needed; HEAD gets the
-- headers only; 204 and 304 get no body.

local runtime = require "smartproxy.runtime"

local byte = string.byte
local concat = table.concat
local error = error
local floor = math.floor
local ipairs = ipairs
local os_date = os.date
local os_time = os.time
local pairs = pairs
local rawget = rawget
local rawset = rawset
local setmetatable = setmetatable
local str_find = string.find
local str_format = string.format
local str_gmatch = string.gmatch
local str_lower = string.lower
local str_match = string.match
local str_sub = string.sub
local tonumber = tonumber
local tostring = tostring
local traceback = debug.traceback
local type = type
local xpcall = xpcall

local _M = {}

_M.MAX_HEAD_SIZE = 16384
_M.MAX_BODY_SIZE = 1048576
_M.MAX_HEADERS = 100
_M.MAX_REQUESTS = 100

local STATUS_TEXT = {
    [100] = "Continue", [101] = "Switching Protocols",
    [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
    [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
    [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
    [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
    [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
    [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
    [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
    [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
    [413] = "Content Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
    [416] = "Range Not Satisfiable", [417] = "Expectation Failed", [418] = "I'm a teapot",
    [421] = "Misdirected Request", [422] = "Unprocessable Content", [425] = "Too Early",
    [426] = "Upgrade Required", [428] = "Precondition Required",
    [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
    [503] = "Service Unavailable", [504] = "Gateway Timeout",
    [505] = "HTTP Version Not Supported",
}
_M.STATUS_TEXT = STATUS_TEXT

local TOKEN = "^[!#$%%&'*+.^_`|~%w-]+$"

---------------------------------------------------------------------------------------
-- headers: a table with lowercase keys, read and written case-insensitively

local headers_mt = {
    __index = function(t, k)
        if type(k) == "string" then
            local l = str_lower(k)
            if l ~= k then
                return rawget(t, l)
            end
        end
        return nil
    end,
    __newindex = function(t, k, v)
        if type(k) == "string" then
            k = str_lower(k)
        end
        rawset(t, k, v)
    end,
}

-- A new, empty case-insensitive header table.
function _M.new_headers()
    return setmetatable({}, headers_mt)
end

local function has_token(value, token)
    if not value then
        return false
    end
    for t in str_gmatch(str_lower(value), "[^,%s]+") do
        if t == token then
            return true
        end
    end
    return false
end
_M.has_token = has_token

---------------------------------------------------------------------------------------
-- reading a request

-- The read errors after which a status is still worth sending: the socket refused a line
-- longer than it buffers.
local function too_long(err)
    return type(err) == "string" and (str_find(err, "too long", 1, true)
                                      or str_find(err, "too large", 1, true))
end

local function read_line(sock)
    local line, err = sock:read("*l")
    if not line then
        return nil, err
    end
    if byte(line, -1) == 13 then -- the socket may leave the CR of a CRLF
        line = str_sub(line, 1, -2)
    end
    return line
end

-- request-target -> path, query ("" when absent), or nil when malformed
local function split_target(method, target)
    local first = byte(target, 1)
    local rest
    if first == 47 then -- "/": origin-form
        rest = target
    elseif target == "*" then
        return method == "OPTIONS" and "*" or nil, ""
    else
        rest = str_match(target, "^[hH][tT][tT][pP][sS]?://[^/?#]+(.*)$")
        if not rest then
            if method == "CONNECT" and str_find(target, "^[^/?#]+:%d+$") then
                return target, ""
            end
            return nil
        end
        if rest == "" or byte(rest, 1) == 63 then -- "?"
            rest = "/" .. rest
        end
    end
    local q = str_find(rest, "?", 1, true)
    if q then
        return str_sub(rest, 1, q - 1), str_sub(rest, q + 1)
    end
    return rest, ""
end

local function parse_request_line(line)
    local method, target, major, minor = str_match(line, "^(%S+) (%S+) HTTP/(%d)%.(%d)$")
    if not method or not str_find(method, TOKEN) then
        return nil, 400
    end
    if major ~= "1" then
        return nil, 505
    end
    if str_find(target, "[%z\1-\32\127]") then
        return nil, 400
    end
    local path, query = split_target(method, target)
    if not path then
        return nil, 400
    end
    return {
        method = method,
        url = target,
        path = path,
        query = query,
        version = minor == "0" and 1.0 or 1.1,
    }
end

-- Whether a Host value is not a host[:port] (RFC 9110 7.2). Hosts that passed are
-- remembered (a bounded set): string patterns are not compiled by LuaJIT, and a server
-- sees the same few Hosts on every request.
local CACHE_MAX = 512     -- distinct strings a check cache remembers before it starts over
local CACHE_MAX_LEN = 256 -- longer strings are checked every time (bounds the memory held)

-- A cache of checked strings: memo.t[s] is what the check said.
local function new_memo()
    return { t = {}, n = 0 }
end

local function remember(memo, s, v)
    if #s > CACHE_MAX_LEN then
        return v
    end
    if memo.n >= CACHE_MAX then
        memo.t, memo.n = {}, 0
    end
    memo.t[s], memo.n = v, memo.n + 1
    return v
end

local good_hosts = new_memo()
local function bad_host(host)
    if good_hosts.t[host] then
        return false
    end
    if str_find(host, "[/?#@\\%s,]") then
        return true
    end
    remember(good_hosts, host, true)
    return false
end

-- The proxy's sockets parse the head in C (llhttp, the proxy's own strict parser):
-- one call instead of a Lua read and match per line. Same results as read_head below.
local function read_head_native(sock, limits)
    local req, err = sock:read_request_head(limits.max_head_size)
    if not req then
        return nil, err -- a status to answer (400, 431), or "closed" / "timeout"
    end
    local path, query = split_target(req.method, req.url)
    if not path then
        return nil, 400
    end
    req.path, req.query = path, query
    local headers = setmetatable(req.headers, headers_mt)
    local host = rawget(headers, "host")
    if host then
        if bad_host(host) then
            return nil, 400
        end
    elseif req.version == 1.1 then
        return nil, 400
    end
    return req, nil, rawget(headers, "content-length"), rawget(headers, "transfer-encoding")
end

-- Reads the head; returns req | nil, status (a number: answer it and close) | nil, err
-- (a string: close quietly).
local function read_head(sock, limits)
    if sock.read_request_head then
        return read_head_native(sock, limits)
    end
    local size, line, err = 0, nil, nil
    -- RFC 9112 2.2: ignore empty lines before the request line
    for _ = 1, 8 do
        line, err = read_line(sock)
        if not line then
            return nil, too_long(err) and 414 or err
        end
        size = size + #line + 2
        if size > limits.max_head_size then
            return nil, 414
        end
        if line ~= "" then
            break
        end
    end
    if line == "" then
        return nil, 400
    end
    local req, status = parse_request_line(line)
    if not req then
        return nil, status
    end

    local headers = setmetatable({}, headers_mt)
    local count, hosts, lengths, te = 0, 0, nil, nil
    while true do
        line, err = read_line(sock)
        if not line then
            return nil, too_long(err) and 431 or err
        end
        size = size + #line + 2
        if size > limits.max_head_size then
            return nil, 431
        end
        if line == "" then
            break
        end
        count = count + 1
        if count > limits.max_headers then
            return nil, 431
        end
        -- no whitespace before the colon, no obs-fold (RFC 9112 5.1, 5.2)
        local name, value = str_match(line, "^([^:]*):[ \t]*(.-)[ \t]*$")
        if not name or not str_find(name, TOKEN) or str_find(value, "[%z\1-\8\10-\31\127]") then
            return nil, 400
        end
        name = str_lower(name)
        if name == "host" then
            hosts = hosts + 1
            if bad_host(value) then
                return nil, 400
            end
        elseif name == "content-length" then
            lengths = lengths and (lengths .. "," .. value) or value
        elseif name == "transfer-encoding" then
            te = te and (te .. "," .. value) or value
        end
        local old = rawget(headers, name)
        rawset(headers, name, old and (old .. ", " .. value) or value)
    end
    req.headers = headers

    if hosts > 1 or (hosts == 0 and req.version == 1.1) then
        return nil, 400
    end
    return req, nil, lengths, te
end

-- Content-Length values (all copies must agree) -> number | nil
local function parse_length(lengths)
    local n
    for v in str_gmatch(lengths .. ",", "[ \t]*([^,]-)[ \t]*,") do
        if not str_find(v, "^%d+$") then
            return nil
        end
        local x = tonumber(v)
        if n and x ~= n then
            return nil
        end
        n = x
    end
    return n
end

-- The body framing of a request: "length", n | "chunked" | nil, status
local function framing(req, lengths, te)
    if te then
        if lengths or req.version == 1.0 then
            return nil, 400 -- ambiguous (request smuggling) or not allowed
        end
        local codings, last = {}, nil
        for c in str_gmatch(str_lower(te), "[^,%s]+") do
            codings[#codings + 1] = c
            last = c
        end
        if last ~= "chunked" then
            return nil, 400
        end
        if #codings > 1 then
            return nil, 501 -- a transfer coding other than chunked
        end
        return "chunked"
    end
    if lengths then
        local n = parse_length(lengths)
        if not n then
            return nil, 400
        end
        return "length", n
    end
    return "length", 0
end

local function read_exact(sock, n)
    if n == 0 then
        return ""
    end
    local data, err = sock:read(n)
    if not data then
        return nil, err
    end
    return data
end

local function read_chunked(sock, limits)
    local parts, total, head = {}, 0, 0
    while true do
        local line, err = read_line(sock)
        if not line then
            return nil, too_long(err) and 400 or err
        end
        local hex = str_match(line, "^(%x+)[ \t]*$") or str_match(line, "^(%x+)[ \t]*;")
        if not hex then
            return nil, 400
        end
        hex = str_match(hex, "^0*(.*)$")
        if #hex > 8 then
            return nil, 413
        end
        local n = hex == "" and 0 or tonumber(hex, 16)
        if n == 0 then
            break
        end
        total = total + n
        if total > limits.max_body_size then
            return nil, 413
        end
        local data
        data, err = read_exact(sock, n)
        if not data then
            return nil, err
        end
        parts[#parts + 1] = data
        local crlf
        crlf, err = read_exact(sock, 2)
        if not crlf then
            return nil, err
        end
        if crlf ~= "\r\n" then
            return nil, 400
        end
    end
    -- trailer section: read and dropped
    while true do
        local line, err = read_line(sock)
        if not line then
            return nil, too_long(err) and 431 or err
        end
        if line == "" then
            break
        end
        head = head + #line + 2
        if head > limits.max_head_size then
            return nil, 431
        end
    end
    return concat(parts)
end

-- Reads one request from sock. Returns
--   req                         { method, url, path, query, version, headers, body,
--                                 keep_alive }
--   nil, status                 a number: answer it (send_error) and close
--   nil, err                    "closed", "timeout", ...: close quietly
function _M.read_request(sock, limits)
    local req, status, lengths, te = read_head(sock, limits)
    if not req then
        return nil, status
    end
    local kind, n = framing(req, lengths, te)
    if not kind then
        return nil, n
    end
    if kind == "length" and n > limits.max_body_size then
        return nil, 413
    end

    local conn = rawget(req.headers, "connection") -- names are stored lowercase
    if req.version == 1.1 then
        req.keep_alive = not has_token(conn, "close")
    else
        req.keep_alive = has_token(conn, "keep-alive") and not has_token(conn, "close")
    end

    local expect = rawget(req.headers, "expect")
    if expect then
        if str_lower(expect) ~= "100-continue" then
            return nil, 417
        end
        if req.version == 1.1 and (kind == "chunked" or n > 0) then
            local ok, err = sock:write("HTTP/1.1 100 Continue\r\n\r\n")
            if not ok then
                return nil, err
            end
        end
    end

    local body, err
    if kind == "chunked" then
        body, err = read_chunked(sock, limits)
    else
        body, err = read_exact(sock, n)
    end
    if not body then
        return nil, err
    end
    req.body = body
    return req
end

---------------------------------------------------------------------------------------
-- writing a response
--
-- This runs for every response of every Lua HTTP server, so what does not change between
-- responses is computed once: status lines per status, header names and values checked
-- once per distinct string (bounded caches), the Date line once per second, and the
-- pieces go into one reused buffer (no table per response).

local status_lines = {}
local function status_line(status)
    local line = status_lines[status]
    if line then
        return line
    end
    if type(status) ~= "number" or status ~= floor(status) or status < 200 or status > 599 then
        error("bad response status " .. tostring(status) .. " (expected 200..599)", 0)
    end
    line = "HTTP/1.1 " .. status .. " " .. (STATUS_TEXT[status] or "Unknown") .. "\r\n"
    status_lines[status] = line
    return line
end

-- header name -> its lowercase form, for names that are tokens
local lower_names = new_memo()
local function lower_name(name)
    local l = lower_names.t[name]
    if l then
        return l
    end
    if type(name) ~= "string" or not str_find(name, TOKEN) then
        error("bad response header name " .. tostring(name), 0)
    end
    return remember(lower_names, name, str_lower(name))
end

-- header values known to hold no CR, LF or NUL
local good_values = new_memo()
local function check_value(name, value)
    if good_values.t[value] then
        return value
    end
    local t = type(value)
    if t == "number" then
        value = tostring(value)
    elseif t ~= "string" then
        error("bad value for response header \"" .. name .. "\": expected a string, a"
              .. " number or a list of them, got " .. t, 0)
    end
    if str_find(value, "[\r\n%z]") then
        error("bad value for response header \"" .. name .. "\": CR, LF or NUL", 0)
    end
    remember(good_values, value, true)
    return value
end

local last_time, date_line
local function http_date_line()
    local now = os_time()
    if now ~= last_time then
        last_time = now
        date_line = "Date: " .. os_date("!%a, %d %b %Y %H:%M:%S GMT", now) .. "\r\n"
    end
    return date_line
end

-- The buffer responses are assembled in: filled and concatenated without a yield in
-- between, so one per Lua state is enough; stale entries past n are never read.
local out = {}

local function add_header(n, name, value)
    out[n + 1] = name
    out[n + 2] = ": "
    out[n + 3] = check_value(name, value)
    out[n + 4] = "\r\n"
    return n + 4
end

-- Builds a response. opts: head (HEAD request: no body), keep_alive, version (of the
-- request: 1.0 answers "Connection: keep-alive" when kept open).
-- Returns the bytes, and whether the connection stays open (a "Connection: close" in
-- headers closes it). Raises on a bad status or header (a programming mistake).
function _M.build_response(status, headers, body, opts)
    local line = status_line(status or 200)
    if body == nil then
        body = ""
    elseif type(body) == "number" then
        body = tostring(body)
    elseif type(body) ~= "string" then
        error("bad response body: expected a string, got " .. type(body), 0)
    end
    local keep_alive = opts and opts.keep_alive or false
    out[1] = line
    local n = 1
    local has_date, has_type = false, false
    if headers ~= nil then
        if type(headers) ~= "table" then
            error("bad response headers: expected a table, got " .. type(headers), 0)
        end
        for name, value in pairs(headers) do
            local l = lower_name(name)
            if l == "connection" then
                if has_token(value, "close") then
                    keep_alive = false
                end
            elseif l ~= "content-length" and l ~= "transfer-encoding" then
                if l == "date" then
                    has_date = true
                elseif l == "content-type" then
                    has_type = true
                end
                if type(value) == "table" then
                    for _, v in ipairs(value) do
                        n = add_header(n, name, v)
                    end
                else
                    n = add_header(n, name, value)
                end
            end
        end
    end
    if not has_date then
        n = n + 1
        out[n] = http_date_line()
    end
    local bodiless = status == 204 or status == 304
    if bodiless then
        body = ""
    else
        if body ~= "" and not has_type then
            n = n + 1
            out[n] = "Content-Type: text/plain; charset=utf-8\r\n"
        end
        out[n + 1] = "Content-Length: "
        out[n + 2] = #body
        out[n + 3] = "\r\n"
        n = n + 3
    end
    if not keep_alive then
        n = n + 1
        out[n] = "Connection: close\r\n"
    elseif opts.version == 1.0 then
        n = n + 1
        out[n] = "Connection: keep-alive\r\n"
    end
    n = n + 1
    out[n] = "\r\n"
    if body ~= "" and not (opts and opts.head) then
        n = n + 1
        out[n] = body
    end
    return concat(out, "", 1, n), keep_alive
end

-- Writes an error response with "Connection: close" (the caller ends the connection).
function _M.send_error(sock, status, body)
    local data = _M.build_response(status, nil, body or ((STATUS_TEXT[status] or "Error")
                                                          .. "\n"), { keep_alive = false })
    return sock:write(data)
end

-- After an error response the client may still be sending (a body we refused): closing
-- with unread bytes makes the kernel send a reset, which can destroy the response
-- before the client reads it. Read and drop a bounded amount first (up to `max_bytes`,
-- each read waiting at most `ms`), as nginx's lingering close does.
local LINGER_MS = 500
local LINGER_BYTES = 1048576

local function linger(sock, ms, max_bytes)
    sock:set_timeout(ms or LINGER_MS)
    local left = max_bytes or LINGER_BYTES
    while left > 0 do
        local data = sock:read(left < 65536 and left or 65536)
        if not data then
            return
        end
        left = left - #data
    end
end
_M.linger = linger

---------------------------------------------------------------------------------------
-- the response object handed to http_server handlers

local response = {}
local response_mt = { __index = response }

-- res:send(status, headers, body): sends the response now (the arguments default to
-- res.status, res.headers and res.body). Returns true | nil, err; a second send returns
-- nil, "response already sent".
function response:send(status, headers, body)
    if self._sent then
        return nil, "response already sent"
    end
    if status == nil then status = self.status end
    if headers == nil then headers = self.headers end
    if body == nil then body = self.body end
    local data, keep_alive = _M.build_response(status, headers, body, self._opts)
    self._sent = true
    self._keep_alive = keep_alive
    return self._sock:write(data)
end

-- build_response's opts for each (HEAD?, keep-alive?, HTTP/1.0?): shared, never modified
local response_opts = {}
for i = 0, 7 do
    response_opts[i] = { head = i >= 4, keep_alive = i % 4 >= 2, version = i % 2 == 1 and 1.0 or 1.1 }
end

local function new_response(sock, req, keep_alive)
    local i = (req.method == "HEAD" and 4 or 0) + (keep_alive and 2 or 0)
              + (req.version == 1.0 and 1 or 0)
    return setmetatable({
        status = 200,
        headers = {},
        body = nil,
        _sock = sock,
        _sent = false,
        _keep_alive = keep_alive,
        _opts = response_opts[i],
    }, response_mt)
end

---------------------------------------------------------------------------------------
-- the server loop

local function run(handler, req, res, ctx)
    handler(req, res, ctx)
    if not res._sent then
        return res:send()
    end
    return true
end

local function log_error(msg)
    if runtime.core() then
        runtime.log("error", msg)
    end
end

-- Limits with defaults filled in (opts: max_head_size, max_body_size, max_headers,
-- max_requests, timeout).
function _M.limits(opts)
    opts = opts or {}
    return {
        max_head_size = opts.max_head_size or _M.MAX_HEAD_SIZE,
        max_body_size = opts.max_body_size or _M.MAX_BODY_SIZE,
        max_headers = opts.max_headers or _M.MAX_HEADERS,
        max_requests = opts.max_requests or _M.MAX_REQUESTS,
        timeout = opts.timeout,
    }
end

-- serve(sock, ctx, handler, limits): answers requests on sock with handler(req, res,
-- ctx) until the client or the rules end the connection, then returns.
-- A Lua error in handler is logged and answered with 500 (when nothing was sent yet).
function _M.serve(sock, ctx, handler, limits)
    if limits.timeout then
        sock:set_timeout(limits.timeout)
    end
    local count = 0
    while true do
        local req, status = _M.read_request(sock, limits)
        if not req then
            if type(status) == "number" and _M.send_error(sock, status) then
                linger(sock)
            end
            break
        end
        count = count + 1
        local res = new_response(sock, req, req.keep_alive and count < limits.max_requests)
        local ok, sent = xpcall(run, traceback, handler, req, res, ctx)
        if not ok then
            log_error(str_format("http handler failed (%s %s): %s", req.method, req.url,
                                 tostring(sent)))
            if not res._sent then
                _M.send_error(sock, 500)
            end
            break
        end
        if not sent then
            break -- the write failed (err): the client is gone
        end
        if not res._keep_alive then
            break
        end
    end
    -- returning ends the connection: the proxy flushes what was written, then closes
end

---------------------------------------------------------------------------------------
-- template variables (SPEC 6) of a request

-- "example.com:8080" -> "example.com"; "[::1]:8080" -> "[::1]"
local function strip_port(host)
    if byte(host, 1) == 91 then -- "["
        return str_match(host, "^(%[[^%]]*%])") or host
    end
    return (str_match(host, "^([^:]*)"))
end

function _M.template_vars(req, ctx)
    ctx = ctx or {}
    local host = req.headers["host"]
    local domain
    if host and host ~= "" then
        domain = str_lower(strip_port(host))
    else
        host = ctx.domain or ""
        domain = host
    end
    if domain == "" and ctx.domain then
        domain = ctx.domain
    end
    return {
        domain = domain,
        host = host,
        port = ctx.server_port,
        path = req.path,
        query = req.query,
        url = req.url,
        client_ip = ctx.client_ip,
        client_port = ctx.client_port,
        proto = ctx.tls and "https" or "http",
        route_name = ctx.route_name,
        connection_id = ctx.connection_id,
    }
end

return _M
