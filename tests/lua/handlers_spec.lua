-- Ready-made handlers (SPEC 7) over fake sockets and a fake smartproxy.core.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local fake = require "support.fake"

local sp, core = fake.load_smartproxy()
local H = sp.handlers

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

local function run(handler, input, ctx, sock_opts)
    local sock = fake.socket(input, sock_opts)
    handler(sock, ctx or fake.ctx())
    return sock
end

describe("handlers.echo", function()
    it("is a handler that writes back every byte until EOF", function()
        local input = "hello\r\nbinary\0\255 no newline"
        local sock = run(H.echo, input)
        assert.equal(input, sock:output())
        assert.equal(0, sock.close_calls) -- ended by returning: the core flushes, closes
    end)

    it("writes back what arrived together in one write", function()
        local sock = run(H.echo, { "hello\r\n", "world", "!" })
        assert.equal("hello\r\nworld!", sock:output())
        assert.same({ "hello\r\n", "world", "!" }, sock:writes())
        -- waits long for the first byte, briefly for the rest
        assert.same({ 60000, 1, 60000, 1, 60000, 1 }, sock.timeouts)
    end)

    it("writes bulk data back in chunks", function()
        local big = string.rep("0123456789abcdef", 4096) -- 64 KiB
        local sock = run(H.echo, big)
        assert.equal(big, sock:output())
        assert.equal(4, #sock:writes())
    end)

    it("ends on an empty connection, an idle timeout and failed writes", function()
        local sock = run(H.echo, "")
        assert.equal("", sock:output())
        sock = run(H.echo, "", nil, { eof_error = "timeout" })
        assert.equal("", sock:output())
        sock = run(H.echo, "abc", nil, { write_error = "closed" })
        assert.equal(2, #sock.reads)
        assert.equal(0, sock.close_calls)
    end)
end)

describe("handlers.proxy", function()
    before_each(function()
        core.calls, core.pipes, core.logs, core.upstreams = {}, {}, {}, {}
        core.connect_result = nil
    end)

    it("connects and pipes", function()
        local opts = { timeout = 5000, proxy_protocol = "v1" }
        local sock = fake.socket("x")
        H.proxy("10.0.0.5", 25, opts)(sock, fake.ctx())
        assert.equal("connect", core.calls[1][1])
        assert.equal("10.0.0.5", core.calls[1][2])
        assert.equal(25, core.calls[1][3])
        assert.equal(opts, core.calls[1][4])
        assert.equal(1, #core.pipes)
        assert.equal(sock, core.pipes[1][1])
        assert.equal(core.upstreams[1], core.pipes[1][2])
        assert.is_false(sock.closed) -- the C pipe owns it now
    end)

    it("logs and closes the client when the connect fails", function()
        core.connect_result = function() return nil, "connection refused" end
        local sock = run(H.proxy("db.local", 5432))
        assert.equal(0, #core.pipes)
        assert.equal(0, sock.close_calls) -- ended by returning
        assert.equal("warn", core.logs[1].level)
        assert.equal("proxy: cannot connect to db.local:5432: connection refused", core.logs[1].msg)
    end)

    it("rejects bad arguments", function()
        assert.matches("handlers.proxy: bad argument #1 (host): expected a host name or "
                       .. "address, got nil", errmsg(H.proxy), nil, true)
        assert.matches("handlers.proxy: bad argument #2 (port): expected a port number, got "
                       .. "string \"25\"", errmsg(H.proxy, "h", "25"), nil, true)
        assert.matches("bad argument #3 (opts)", errmsg(H.proxy, "h", 25, "tls"), nil, true)
        local ok, err = pcall(function() H.proxy("h", 0) end)
        assert.is_false(ok)
        assert.matches("handlers_spec.lua:%d+: handlers.proxy: bad argument #2", err)
    end)
end)

describe("handlers.line_protocol", function()
    it("calls fn per line and writes replies with CRLF", function()
        local seen = {}
        local ctx = fake.ctx()
        local sock = run(H.line_protocol(function(line, s, c)
            seen[#seen + 1] = line
            assert.equal(ctx, c)
            assert.is_table(s)
            if line == "ping" then
                return "pong"
            elseif line == "num" then
                return 42
            elseif line == "silent" then
                return false
            end
            return nil
        end), "ping\r\nsilent\nnum\r\nother\r\n", ctx)
        assert.same({ "ping", "silent", "num", "other" }, seen)
        assert.equal("pong\r\n42\r\n", sock:output())
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("ends on sp.handlers.CLOSE, alone or after a reply", function()
        local fn = function(line)
            if line == "quit" then
                return "bye", H.CLOSE
            elseif line == "exit" then
                return H.CLOSE
            end
            return "ok"
        end
        local sock = run(H.line_protocol(fn), "a\r\nquit\r\nb\r\n")
        assert.equal("ok\r\nbye\r\n", sock:output())
        assert.equal("b\r\n", sock:remaining())
        assert.equal(0, sock.close_calls) -- ended by returning
        sock = run(H.line_protocol(fn), "exit\r\nb\r\n")
        assert.equal("", sock:output())
        assert.equal(0, sock.close_calls) -- ended by returning
        assert.equal("smartproxy.handlers.CLOSE", tostring(H.CLOSE))
    end)

    it("drops an unterminated last line and strips a CR the socket left", function()
        local seen = {}
        local sock = run(H.line_protocol(function(line) seen[#seen + 1] = line end),
                         "a\r\nb\r\npartial", nil, { keep_cr = true })
        assert.same({ "a", "b" }, seen)
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("stops on timeout and on write errors", function()
        local n = 0
        local sock = run(H.line_protocol(function() n = n + 1 return "r" end), "a\nb\n", nil,
                         { write_error = "closed" })
        assert.equal(1, n)
        assert.equal(0, sock.close_calls) -- ended by returning
        sock = run(H.line_protocol(function() return "r" end), "a\n", nil,
                   { eof_error = "timeout" })
        assert.equal("r\r\n", sock:output())
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("raises when fn returns something else", function()
        assert.has_error(function()
            run(H.line_protocol(function() return {} end), "a\n")
        end)
    end)

    it("rejects a missing fn", function()
        assert.matches("handlers.line_protocol: bad argument #1 (fn): expected a "
                       .. "function(line, sock, ctx), got nil", errmsg(H.line_protocol), nil, true)
    end)
end)

describe("handlers.block", function()
    it("writes the message, drops what the client sent for a moment and ends", function()
        local sock = run(H.block("go away\n"), "anything")
        assert.equal("go away\n", sock:output())
        assert.equal("", sock:remaining())
        assert.same({ 200 }, sock.timeouts)
        assert.equal(0, sock.close_calls) -- ended by returning
        sock = run(H.block("go away\n"), { "", string.rep("x", 70000) })
        assert.equal(70000 - 65536, #sock:remaining())
    end)

    it("ends at once without a message", function()
        for _, msg in ipairs({ false, "" }) do
            local sock = run(H.block(msg or nil), "anything")
            assert.equal("", sock:output())
            assert.equal("anything", sock:remaining())
            assert.same({}, sock.reads)
        end
    end)

    it("rejects a non-string message", function()
        assert.matches("handlers.block: bad argument #1 (message)", errmsg(H.block, 5), nil, true)
    end)
end)

describe("handlers.http_response", function()
    it("answers every request with the response", function()
        local h = H.http_response{ status = 201, headers = { ["X-A"] = "b" }, body = "made" }
        local sock = run(h, "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\n"
                            .. "Content-Length: 1\r\n\r\nz")
        local res = fake.parse_responses(sock:output())
        assert.equal(2, #res)
        for i = 1, 2 do
            assert.equal(201, res[i].status)
            assert.equal("b", res[i].headers["x-a"])
            assert.equal("made", res[i].body)
        end
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("defaults to 200 with an empty body and copies its headers", function()
        local headers = { ["X-A"] = "1" }
        local h = H.http_response{ headers = headers }
        headers["X-A"] = "changed"
        local res = fake.parse_responses(run(h, "GET / HTTP/1.0\r\n\r\n"):output())
        assert.equal(200, res[1].status)
        assert.equal("", res[1].body)
        assert.equal("1", res[1].headers["x-a"])
    end)

    it("rejects bad arguments", function()
        assert.matches("handlers.http_response: bad argument #1 (response)",
                       errmsg(H.http_response, 200), nil, true)
        assert.matches("bad argument #1 (status): expected an HTTP status 200..599, got number 99",
                       errmsg(H.http_response, { status = 99 }), nil, true)
        assert.matches("unknown key string \"code\"", errmsg(H.http_response, { code = 200 }),
                       nil, true)
        assert.matches("bad argument #1 (headers)",
                       errmsg(H.http_response, { headers = { ["X-A"] = "a\nb" } }), nil, true)
        assert.matches("bad argument #1 (body)", errmsg(H.http_response, { body = {} }), nil, true)
    end)
end)

describe("handlers.http_redirect", function()
    it("redirects with the template filled in, 301 by default", function()
        local h = H.http_redirect("https://{domain}{url}")
        local sock = run(h, "GET /a/b?c=d HTTP/1.1\r\nHost: Example.com:80\r\n\r\n"
                            .. "GET /x HTTP/1.1\r\nHost: other.org\r\n\r\n")
        local res = fake.parse_responses(sock:output())
        assert.equal(2, #res)
        assert.equal(301, res[1].status)
        assert.equal("https://example.com/a/b?c=d", res[1].headers["location"])
        assert.equal("https://other.org/x", res[2].headers["location"])
        assert.matches("https://example.com/a/b?c=d", res[1].body, nil, true)
    end)

    it("fills every variable", function()
        local h = H.http_redirect("{proto}://{host}/{port}{path}?{query}&ip={client_ip}"
                                  .. ":{client_port}&r={route_name}&c={connection_id}", 307)
        local ctx = fake.ctx({ tls = true, server_port = 8443 })
        local res = fake.parse_responses(run(h, "GET /p?q HTTP/1.1\r\nHost: h:1\r\n\r\n",
                                             ctx):output())
        assert.equal(307, res[1].status)
        assert.equal("https://h:1/8443/p?q&ip=192.0.2.10:40000&r=test&c=7",
                     res[1].headers["location"])
    end)

    it("falls back to ctx.domain without a Host (HTTP/1.0)", function()
        local h = H.http_redirect("https://{domain}{path}", 308)
        local res = fake.parse_responses(run(h, "GET /z HTTP/1.0\r\n\r\n",
                                             fake.ctx({ domain = "sni.example" })):output())
        assert.equal(308, res[1].status)
        assert.equal("https://sni.example/z", res[1].headers["location"])
    end)

    it("rejects unknown variables and bad statuses", function()
        assert.matches("handlers.http_redirect: bad argument #1 (template): unknown template "
                       .. "variable {hostname}", errmsg(H.http_redirect, "https://{hostname}/"),
                       nil, true)
        assert.matches("bad argument #2 (status): expected 301, 302, 303, 307 or 308",
                       errmsg(H.http_redirect, "https://x/", 200), nil, true)
        assert.matches("bad argument #1 (template)", errmsg(H.http_redirect, nil), nil, true)
    end)
end)

describe("handlers.http_block", function()
    it("answers 403 once and closes", function()
        local sock = run(H.http_block(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                                         .. "GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        local res = fake.parse_responses(sock:output())
        assert.equal(1, #res)
        assert.equal(403, res[1].status)
        assert.equal("Forbidden\n", res[1].body)
        assert.equal("close", res[1].headers["connection"])
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("takes a status and body", function()
        local res = fake.parse_responses(run(H.http_block(451, "no\n"),
                                             "GET / HTTP/1.1\r\nHost: a\r\n\r\n"):output())
        assert.equal(451, res[1].status)
        assert.equal("no\n", res[1].body)
    end)

    it("rejects non-error statuses", function()
        assert.matches("handlers.http_block: bad argument #1 (status): expected an HTTP status "
                       .. "400..599, got number 200", errmsg(H.http_block, 200), nil, true)
        assert.matches("bad argument #2 (body)", errmsg(H.http_block, 403, 1), nil, true)
    end)
end)

describe("handlers.http_server", function()
    it("rejects bad arguments", function()
        assert.matches("handlers.http_server: bad argument #1 (fn)", errmsg(H.http_server), nil, true)
        assert.matches("bad argument #2 (opts): unknown key string \"max_body\"",
                       errmsg(H.http_server, function() end, { max_body = 1 }), nil, true)
        assert.matches("bad argument #2 (opts.max_requests): expected a positive integer",
                       errmsg(H.http_server, function() end, { max_requests = 0 }), nil, true)
    end)
end)
