-- Test doubles for the Lua library specs: an in-memory socket with the smartproxy sock
-- API (SPEC 7) and a fake "smartproxy.core".
--
--   local fake = require "support.fake"      -- after support.path
--   local sock = fake.socket("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
--   handler(sock, fake.ctx())
--   sock:output()                             -- everything written
--
--   local sp, core = fake.load_smartproxy()   -- fresh modules over a fresh fake core
--   local sp = fake.load_smartproxy(false)    -- fresh modules, no core at all

local concat = table.concat

local _M = {}

---------------------------------------------------------------------------------------
-- socket

local sock_mt = {}
sock_mt.__index = sock_mt

-- fake.socket(input, opts): reads consume `input`, a string, or a list of strings that
-- arrive one after the other: a read that needs more than has arrived waits for the next
-- one, unless the socket's timeout is short (<= 10 ms), when it answers nil, "timeout"
-- and the partial data (consumed), as a real socket would before the next packet. After
-- the last one reads fail with "closed" (opts.eof_error = "timeout": a silent client).
-- opts.keep_cr: "*l" leaves the CR of a CRLF. opts.max_line: "*l" fails with
-- "line too long" beyond it. opts.write_error: writes fail with it. opts.peer: {ip, port}.
function _M.socket(input, opts)
    opts = opts or {}
    local pending = {}
    if type(input) == "table" then
        for i = 2, #input do
            pending[#pending + 1] = input[i]
        end
        input = input[1]
    end
    return setmetatable({
        input = input or "",
        pending = pending,
        pos = 1,
        out = {},
        closed = false,
        close_calls = 0,
        timeout = 60000,
        timeouts = {},
        reads = {},
        opts = opts,
    }, sock_mt)
end

-- What is left to read: arrived and still to arrive.
function sock_mt:remaining()
    return self.input:sub(self.pos) .. table.concat(self.pending)
end

-- A read cannot be answered from what arrived: wait for more, time out, or hit EOF.
-- Returns true when more arrived (retry), else nil, err, partial.
local function starve(self)
    local partial = self.input:sub(self.pos)
    if #self.pending > 0 then
        if self.timeout > 0 and self.timeout <= 10 then
            self.input, self.pos = "", 1
            return nil, "timeout", partial
        end
        self.input = partial .. table.remove(self.pending, 1)
        self.pos = 1
        return true
    end
    self.input, self.pos = "", 1
    return nil, self.opts.eof_error or "closed", partial
end

local function read_once(self, pattern)
    if pattern == "*l" then
        local nl = self.input:find("\n", self.pos, true)
        if self.opts.max_line then
            local len = (nl or #self.input + 1) - self.pos
            if len > self.opts.max_line then
                return nil, "line too long", ""
            end
        end
        if not nl then
            return starve(self)
        end
        local line = self.input:sub(self.pos, nl - 1)
        self.pos = nl + 1
        if not self.opts.keep_cr and line:sub(-1) == "\r" then
            line = line:sub(1, -2)
        end
        return line
    elseif pattern == "*a" then
        if #self.pending > 0 then
            return starve(self)
        end
        local rest = self.input:sub(self.pos)
        self.input, self.pos = "", 1
        return rest
    elseif type(pattern) == "number" then
        assert(pattern >= 0 and pattern == math.floor(pattern), "read(n): n must be >= 0")
        if #self.input - self.pos + 1 < pattern then
            return starve(self)
        end
        local data = self.input:sub(self.pos, self.pos + pattern - 1)
        self.pos = self.pos + pattern
        return data
    end
    error("fake socket: bad read pattern " .. tostring(pattern))
end

function sock_mt:read(pattern)
    self.reads[#self.reads + 1] = pattern
    if self.closed then
        return nil, "closed", ""
    end
    while true do
        local data, err, partial = read_once(self, pattern)
        if data ~= true then
            return data, err, partial
        end
    end
end

function sock_mt:write(data)
    assert(type(data) == "string", "fake socket: write() takes a string, got " .. type(data))
    if self.closed then
        return nil, "closed"
    end
    if self.opts.write_error then
        return nil, self.opts.write_error
    end
    self.out[#self.out + 1] = data
    return true
end

function sock_mt:close()
    self.close_calls = self.close_calls + 1
    self.closed = true
    return true
end

function sock_mt:set_timeout(ms)
    assert(type(ms) == "number" and ms >= 0, "set_timeout(ms): ms must be >= 0")
    self.timeout = ms
    self.timeouts[#self.timeouts + 1] = ms
end

function sock_mt:peer()
    local p = self.opts.peer or { "127.0.0.1", 40000 }
    return p[1], p[2]
end

-- Everything written so far, as one string.
function sock_mt:output()
    return concat(self.out)
end

-- The writes, one per element.
function sock_mt:writes()
    return self.out
end

---------------------------------------------------------------------------------------
-- ctx (SPEC 5)

function _M.ctx(over)
    local ctx = {
        client_ip = "192.0.2.10", client_port = 40000,
        server_ip = "127.0.0.1", server_port = 8080,
        domain = "", tls = false, route_name = "test", connection_id = 7,
    }
    for k, v in pairs(over or {}) do
        ctx[k] = v
    end
    return ctx
end

---------------------------------------------------------------------------------------
-- core

-- A fake "smartproxy.core" that records every call. core.connect_result(host, port,
-- opts) decides what connect returns (default: a fresh fake socket, kept in
-- core.upstreams).
function _M.core()
    local core = { version = "9.9.9-test", calls = {}, logs = {}, pipes = {}, upstreams = {},
                   sleeps = {}, updates = {} }
    local function record(name, ...)
        core.calls[#core.calls + 1] = { name, ... }
    end
    function core.connect(host, port, opts)
        record("connect", host, port, opts)
        if core.connect_result then
            return core.connect_result(host, port, opts)
        end
        local up = _M.socket("")
        core.upstreams[#core.upstreams + 1] = up
        return up
    end
    function core.pipe(a, b)
        record("pipe", a, b)
        core.pipes[#core.pipes + 1] = { a, b }
    end
    core.spawned = {}
    function core.spawn(fn)
        record("spawn", fn)
        core.spawned[#core.spawned + 1] = fn
    end
    function core.sleep(ms)
        record("sleep", ms)
        core.sleeps[#core.sleeps + 1] = ms
    end
    function core.log(level, msg)
        record("log", level, msg)
        core.logs[#core.logs + 1] = { level = level, msg = msg }
    end
    function core.stats()
        record("stats")
        return { active_connections = 1, total_connections = 2 }
    end
    -- the shared dictionary, with the C module's semantics (no TTL expiry here)
    local dict = {}
    core.shared = {
        get = function(_, k) return dict[k] end,
        set = function(_, k, v) dict[k] = v; return true end,
        delete = function(_, k) dict[k] = nil; return true end,
        incr = function(_, k, by, init)
            local v = dict[k]
            if v == nil then
                if init == nil then return nil, "not found" end
                v = init
            elseif type(v) ~= "number" then
                return nil, "not a number"
            end
            dict[k] = v + (by or 1)
            return dict[k]
        end,
    }
    function core.update_routes(routes)
        record("update_routes", routes)
        core.updates[#core.updates + 1] = routes
        if core.update_error then
            return nil, core.update_error
        end
        return true
    end
    return core
end

local MODULES = { "smartproxy", "smartproxy.runtime", "smartproxy.routes",
                  "smartproxy.handlers", "smartproxy.http", "smartproxy.template",
                  "smartproxy.errors" }

-- Forgets the library modules and the core so the next require loads them afresh.
function _M.unload()
    for _, m in ipairs(MODULES) do
        package.loaded[m] = nil
    end
    package.loaded["smartproxy.core"] = nil
    package.preload["smartproxy.core"] = nil
end

-- Loads the library afresh over a new fake core installed with package.preload (as the
-- proxy does), or with no core when `with_core` is false. Returns sp, core.
function _M.load_smartproxy(with_core)
    _M.unload()
    local core
    if with_core ~= false then
        core = _M.core()
        package.preload["smartproxy.core"] = function() return core end
    end
    return require("smartproxy"), core
end

---------------------------------------------------------------------------------------
-- HTTP responses written to a fake socket

-- Parses the responses in `data` (Content-Length framed, or bodiless when `head`).
-- Returns a list of { status, reason, headers (lowercase names), body, raw_headers }.
function _M.parse_responses(data, head)
    local list, pos = {}, 1
    while pos <= #data do
        local e = data:find("\r\n\r\n", pos, true)
        assert(e, "unterminated response head: " .. data:sub(pos))
        local head_text = data:sub(pos, e - 1)
        pos = e + 4
        local lines = {}
        for line in (head_text .. "\r\n"):gmatch("(.-)\r\n") do
            lines[#lines + 1] = line
        end
        local version, status, reason = lines[1]:match("^(HTTP/%d%.%d) (%d%d%d) (.*)$")
        assert(version, "bad status line: " .. lines[1])
        local r = { version = version, status = tonumber(status), reason = reason,
                    headers = {}, raw_headers = {} }
        for i = 2, #lines do
            local name, value = lines[i]:match("^([^:]+): (.*)$")
            assert(name, "bad header line: " .. lines[i])
            r.raw_headers[#r.raw_headers + 1] = { name, value }
            local l = name:lower()
            if r.headers[l] then
                r.headers[l] = r.headers[l] .. ", " .. value
            else
                r.headers[l] = value
            end
        end
        local len = tonumber(r.headers["content-length"] or "0")
        if r.status == 100 or head then
            len = 0
        end
        r.body = data:sub(pos, pos + len - 1)
        pos = pos + len
        list[#list + 1] = r
    end
    return list
end

return _M
