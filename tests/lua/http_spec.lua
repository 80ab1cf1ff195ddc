-- smartproxy.http through sp.handlers.http_server: parsing, framing, keep-alive, limits.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local fake = require "support.fake"

local sp, core = fake.load_smartproxy()
local http = require "smartproxy.http"

-- Runs an http_server over `input`; returns the socket, the parsed responses and the
-- requests the callback saw.
local function serve(input, fn, opts, sock_opts, head)
    local seen = {}
    local handler = sp.handlers.http_server(function(req, res, ctx)
        seen[#seen + 1] = req
        if fn then
            return fn(req, res, ctx)
        end
        res.body = "hello " .. req.path
    end, opts)
    local sock = fake.socket(input, sock_opts)
    handler(sock, fake.ctx())
    return sock, fake.parse_responses(sock:output(), head), seen
end

local function get(path, extra)
    return "GET " .. path .. " HTTP/1.1\r\nHost: example.com\r\n" .. (extra or "") .. "\r\n"
end

describe("http_server", function()
    it("answers a GET with a Content-Length response and keeps the connection", function()
        local sock, res, seen = serve(get("/a?x=1&y=2"))
        assert.equal(1, #res)
        assert.equal(200, res[1].status)
        assert.equal("OK", res[1].reason)
        assert.equal("HTTP/1.1", res[1].version)
        assert.equal("hello /a", res[1].body)
        assert.equal("8", res[1].headers["content-length"])
        assert.equal("text/plain; charset=utf-8", res[1].headers["content-type"])
        assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", res[1].headers["date"])
        assert.is_nil(res[1].headers["connection"])
        local req = seen[1]
        assert.equal("GET", req.method)
        assert.equal("/a?x=1&y=2", req.url)
        assert.equal("/a", req.path)
        assert.equal("x=1&y=2", req.query)
        assert.equal(1.1, req.version)
        assert.equal("", req.body)
        assert.is_true(req.keep_alive)
        assert.equal(0, sock.close_calls) -- ended by returning after the client's EOF
        assert.equal("", sock:remaining())
    end)

    it("looks headers up case-insensitively and joins repeated ones", function()
        local _, _, seen = serve("GET / HTTP/1.1\r\nHOST: a\r\nX-Tag: one\r\nx-tag:two \r\n"
                                 .. "Content-Type:\ttext/x\r\n\r\n")
        local h = seen[1].headers
        assert.equal("a", h.host)
        assert.equal("a", h["Host"])
        assert.equal("one, two", h["X-TAG"])
        assert.equal("text/x", h["content-type"])
        assert.equal("text/x", h["Content-Type"])
        h["X-New"] = "v"
        assert.equal("v", rawget(h, "x-new"))
    end)

    it("gives an empty query when there is none and handles absolute-form", function()
        local _, _, seen = serve(get("/p") .. "GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n"
                                 .. "GET https://example.com/q?z HTTP/1.1\r\nHost: x\r\n\r\n"
                                 .. "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equal("/p", seen[1].path)
        assert.equal("", seen[1].query)
        assert.equal("/", seen[2].path)
        assert.equal("/q", seen[3].path)
        assert.equal("z", seen[3].query)
        assert.equal("*", seen[4].path)
    end)

    it("reads a Content-Length body", function()
        local _, res, seen = serve("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
                                   .. "hello world", function(req, res)
            res.body = req.body:upper()
        end)
        assert.equal("hello world", seen[1].body)
        assert.equal("HELLO WORLD", res[1].body)
    end)

    it("accepts repeated identical Content-Length values", function()
        local _, res, seen = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n"
                                   .. "Content-Length: 3\r\n\r\nabc")
        assert.equal(200, res[1].status)
        assert.equal("abc", seen[1].body)
    end)

    it("reads a chunked body with extensions and trailers", function()
        local body = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .. "5\r\nhello\r\n"
                     .. "1;name=value\r\n \r\n"
                     .. "00a\r\n0123456789\r\n"
                     .. "0\r\nX-Trailer: yes\r\n\r\n"
        local _, res, seen = serve(body .. get("/next"))
        assert.equal(2, #res)
        assert.equal("hello 0123456789", seen[1].body)
        assert.equal("/next", seen[2].path)
    end)

    it("answers pipelined requests in order", function()
        local input = get("/one")
                      .. "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
                      .. get("/three")
        local sock, res, seen = serve(input, function(req, res)
            res.body = req.path .. ":" .. req.body
        end)
        assert.equal(3, #res)
        assert.same({ "/one:", "/two:body", "/three:" }, { res[1].body, res[2].body, res[3].body })
        assert.equal(3, #seen)
        assert.equal(3, #sock:writes()) -- one write per response
    end)

    it("answers 400 to HTTP/1.1 without Host and closes", function()
        local sock, res, seen = serve("GET / HTTP/1.1\r\n\r\n" .. get("/after"))
        assert.equal(1, #res)
        assert.equal(400, res[1].status)
        assert.equal("close", res[1].headers["connection"])
        assert.equal(0, #seen)
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("reads and drops what the client still sends after an error (lingering)", function()
        local rest = string.rep("x", 100000)
        local sock, res = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"
                                .. rest)
        assert.equal(413, res[1].status)
        assert.equal("", sock:remaining())
        assert.equal(500, sock.timeouts[#sock.timeouts])
        -- bounded: at most 1 MiB is drained
        sock = serve({ "GET / HTTP/1.0\r\nContent-Length: x\r\n\r\n", string.rep("y", 1100000) })
        assert.equal(1100000 - 1048576, #sock:remaining())
    end)

    it("answers 400 to two Host headers or one that is not host[:port]", function()
        local _, res = serve("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert.equal(400, res[1].status)
        for _, host in ipairs({ "evil.com/x", "a@evil.com", "a b", "a\\b", "a?b", "a#b" }) do
            _, res = serve("GET / HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n")
            assert.equal(400, res[1].status, host)
        end
        _, res = serve("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
        assert.equal(200, res[1].status)
    end)

    it("answers 431 to an oversize head and 414 to an oversize request line", function()
        local big = string.rep("x", 17000)
        local sock, res, seen = serve("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. big .. "\r\n\r\n")
        assert.equal(431, res[1].status)
        assert.equal("close", res[1].headers["connection"])
        assert.equal(0, #seen)
        assert.equal(0, sock.close_calls) -- ended by returning
        _, res = serve("GET /" .. big .. " HTTP/1.1\r\nHost: a\r\n\r\n")
        assert.equal(414, res[1].status)
        -- many small headers add up
        local many = {}
        for i = 1, 90 do
            many[i] = "X-H" .. i .. ": " .. string.rep("v", 200) .. "\r\n"
        end
        _, res = serve("GET / HTTP/1.1\r\nHost: a\r\n" .. table.concat(many) .. "\r\n")
        assert.equal(431, res[1].status)
    end)

    it("answers 431 to too many header lines and honours max_head_size", function()
        local many = {}
        for i = 1, 101 do
            many[i] = "X-" .. i .. ": v\r\n"
        end
        local _, res = serve("GET / HTTP/1.1\r\nHost: a\r\n" .. table.concat(many) .. "\r\n")
        assert.equal(431, res[1].status)
        _, res = serve(get("/", "X-A: " .. string.rep("a", 100) .. "\r\n"), nil,
                       { max_head_size = 64 })
        assert.equal(431, res[1].status)
    end)

    it("answers 431 when the socket refuses a long line", function()
        local _, res = serve(get("/", "X-A: " .. string.rep("a", 100) .. "\r\n"), nil, nil,
                             { max_line = 50 })
        assert.equal(431, res[1].status)
        _, res = serve("GET /" .. string.rep("a", 100) .. " HTTP/1.1\r\n", nil, nil,
                       { max_line = 50 })
        assert.equal(414, res[1].status)
    end)

    for _, cl in ipairs({ "abc", "-1", "+5", "1.0", "", "5, 6", "0x10" }) do
        it("answers 400 to Content-Length " .. string.format("%q", cl), function()
            local _, res, seen = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " .. cl
                                       .. "\r\n\r\nabcdef")
            assert.equal(1, #res)
            assert.equal(400, res[1].status)
            assert.equal(0, #seen)
        end)
    end

    it("answers 400 to two different Content-Length headers", function()
        local _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                             .. "Content-Length: 2\r\n\r\nab")
        assert.equal(400, res[1].status)
    end)

    it("rejects ambiguous or unsupported framing", function()
        local _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                             .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert.equal(400, res[1].status)
        _, res = serve("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert.equal(400, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
        assert.equal(400, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        assert.equal(501, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
                       .. "1\r\na\r\n0\r\n\r\n")
        assert.equal(200, res[1].status)
    end)

    it("answers 400 to malformed chunks", function()
        local pre = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _, chunks in ipairs({ "g\r\nabc\r\n0\r\n\r\n", "3\r\nabcX\r\n0\r\n\r\n",
                                  "-1\r\n\r\n", "\r\n" }) do
            local _, res, seen = serve(pre .. chunks)
            assert.equal(400, res[1].status, chunks)
            assert.equal(0, #seen)
        end
    end)

    it("answers 413 to a body over the limit", function()
        local _, res, seen = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n")
        assert.equal(413, res[1].status)
        assert.equal(0, #seen)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n")
        assert.equal(413, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
                       nil, { max_body_size = 10 })
        assert.equal(413, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       .. "6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n", nil, { max_body_size = 10 })
        assert.equal(413, res[1].status)
        _, res = serve("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       .. "fffffffff\r\n")
        assert.equal(413, res[1].status)
    end)

    it("answers 400 to malformed request lines and heads", function()
        for _, head in ipairs({
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / http/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET nopath HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\1b\r\n\r\n",
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        }) do
            local sock, res, seen = serve(head)
            assert.equal(1, #res, head)
            assert.equal(400, res[1].status, head)
            assert.equal(0, #seen, head)
            assert.equal(0, sock.close_calls) -- ended by returning
        end
    end)

    it("answers 505 to HTTP/2.0 and ignores an empty line before the request", function()
        local _, res = serve("GET / HTTP/2.0\r\nHost: a\r\n\r\n")
        assert.equal(505, res[1].status)
        _, res = serve("\r\n" .. get("/"))
        assert.equal(200, res[1].status)
    end)

    it("honours Connection: close", function()
        local sock, res, seen = serve(get("/a", "Connection: close\r\n") .. get("/b"))
        assert.equal(1, #res)
        assert.equal(1, #seen)
        assert.equal("close", res[1].headers["connection"])
        assert.is_false(seen[1].keep_alive)
        assert.equal(0, sock.close_calls) -- ended by returning
        assert.equal(get("/b"), sock:remaining())
    end)

    it("closes HTTP/1.0 by default", function()
        local sock, res, seen = serve("GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        assert.equal(1, #res)
        assert.equal("close", res[1].headers["connection"])
        assert.equal(1.0, seen[1].version)
        assert.is_false(seen[1].keep_alive)
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("keeps HTTP/1.0 open with Connection: keep-alive", function()
        local _, res = serve("GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                             .. "GET /b HTTP/1.0\r\n\r\n")
        assert.equal(2, #res)
        assert.equal("keep-alive", res[1].headers["connection"])
        assert.equal("close", res[2].headers["connection"])
    end)

    it("closes when the handler sets Connection: close", function()
        local _, res = serve(get("/a") .. get("/b"), function(_, res)
            res.headers["Connection"] = "close"
        end)
        assert.equal(1, #res)
        assert.equal("close", res[1].headers["connection"])
    end)

    it("bounds the requests per connection", function()
        local input = get("/1") .. get("/2") .. get("/3")
        local sock, res = serve(input, nil, { max_requests = 2 })
        assert.equal(2, #res)
        assert.is_nil(res[1].headers["connection"])
        assert.equal("close", res[2].headers["connection"])
        assert.equal(0, sock.close_calls) -- ended by returning
        local many = {}
        for i = 1, 101 do
            many[i] = get("/" .. i)
        end
        _, res = serve(table.concat(many))
        assert.equal(100, #res)
        assert.equal("close", res[100].headers["connection"])
    end)

    it("sends 100 Continue before reading an expected body", function()
        local sock = fake.socket("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                 .. "Content-Length: 3\r\n\r\nabc")
        sp.handlers.http_server(function(req, res) res.body = req.body end)(sock, fake.ctx())
        local out = sock:output()
        assert.equal("HTTP/1.1 100 Continue\r\n\r\n", sock:writes()[1])
        local res = fake.parse_responses(out:sub(#"HTTP/1.1 100 Continue\r\n\r\n" + 1))
        assert.equal("abc", res[1].body)
    end)

    it("answers 413 without 100 Continue, and 417 to other expectations", function()
        local sock = fake.socket("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                 .. "Content-Length: 2000000\r\n\r\n")
        sp.handlers.http_server(function() end)(sock, fake.ctx())
        local res = fake.parse_responses(sock:output())
        assert.equal(1, #res)
        assert.equal(413, res[1].status)
        local _
        _, res = serve(get("/", "Expect: magic\r\n"))
        assert.equal(417, res[1].status)
    end)

    it("sends no body to HEAD but the length", function()
        local _, res = serve("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", nil, nil, nil, true)
        assert.equal(200, res[1].status)
        assert.equal(tostring(#"hello /x"), res[1].headers["content-length"])
        assert.equal("", res[1].body)
    end)

    it("sends no body or length with 204 and 304", function()
        local sock = fake.socket(get("/a") .. get("/b"))
        local n = 0
        sp.handlers.http_server(function(_, res)
            n = n + 1
            res.status = n == 1 and 204 or 304
            res.body = "ignored"
        end)(sock, fake.ctx())
        local out = sock:output()
        assert.not_matches("Content%-Length", out)
        assert.not_matches("ignored", out)
        local res = fake.parse_responses(out)
        assert.equal(204, res[1].status)
        assert.equal(304, res[2].status)
    end)

    it("lets the handler send with res:send, once", function()
        local again
        local _, res = serve(get("/"), function(_, res)
            assert.is_true(res:send(201, { ["X-A"] = "1", ["Set-Cookie"] = { "a=1", "b=2" },
                                           ["Content-Type"] = "application/json" }, "{}"))
            again = { res:send(200) }
            res.body = "not sent"
        end)
        assert.same({ nil, "response already sent" }, again)
        assert.equal(1, #res)
        assert.equal(201, res[1].status)
        assert.equal("Created", res[1].reason)
        assert.equal("1", res[1].headers["x-a"])
        assert.equal("a=1, b=2", res[1].headers["set-cookie"])
        assert.equal("application/json", res[1].headers["content-type"])
        assert.equal("{}", res[1].body)
    end)

    it("replaces a handler's Content-Length and Transfer-Encoding", function()
        local _, res = serve(get("/"), function(_, res)
            res.headers["Content-Length"] = "999"
            res.headers["Transfer-Encoding"] = "chunked"
            res.body = "abc"
        end)
        assert.equal("3", res[1].headers["content-length"])
        assert.is_nil(res[1].headers["transfer-encoding"])
    end)

    it("answers 500 and logs when the handler fails", function()
        core.logs = {}
        local sock, res = serve(get("/boom") .. get("/after"), function() error("kaboom") end)
        assert.equal(1, #res)
        assert.equal(500, res[1].status)
        assert.equal("close", res[1].headers["connection"])
        assert.equal(0, sock.close_calls) -- ended by returning
        assert.equal(1, #core.logs)
        assert.equal("error", core.logs[1].level)
        assert.matches("GET /boom", core.logs[1].msg, nil, true)
        assert.matches("kaboom", core.logs[1].msg, nil, true)
        assert.matches("stack traceback", core.logs[1].msg, nil, true)
    end)

    it("answers 500 to a header with CR/LF (no response splitting)", function()
        local _, res = serve(get("/"), function(_, res)
            res.headers["X-Evil"] = "a\r\nSet-Cookie: x=1"
        end)
        assert.equal(500, res[1].status)
        assert.is_nil(res[1].headers["set-cookie"])
    end)

    it("answers 500 to a bad status or body", function()
        local _, res = serve(get("/"), function(_, res) res.status = 99 end)
        assert.equal(500, res[1].status)
        _, res = serve(get("/"), function(_, res) res.body = {} end)
        assert.equal(500, res[1].status)
    end)

    it("closes quietly when the client leaves mid-request", function()
        for _, input in ipairs({ "", "GET / HT", "GET / HTTP/1.1\r\nHost: a\r\n",
                                 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
                                 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab" }) do
            local sock, res, seen = serve(input)
            assert.equal(0, #res, input)
            assert.equal(0, #seen)
            assert.equal(0, sock.close_calls) -- ended by returning
            assert.equal(0, sock.close_calls)
        end
        local sock, res = serve("GET / HTTP/1.1\r\nHost: a\r\n", nil, nil, { eof_error = "timeout" })
        assert.equal(0, #res)
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("stops when a write fails", function()
        local sock, _, seen = serve(get("/a") .. get("/b"), nil, nil, { write_error = "broken pipe" })
        assert.equal(1, #seen)
        assert.equal(0, sock.close_calls) -- ended by returning
    end)

    it("copes with a socket that leaves the CR on lines", function()
        local _, res, seen = serve("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   .. "3\r\nabc\r\n0\r\n\r\n" .. get("/d"), nil, nil,
                                   { keep_cr = true })
        assert.equal(2, #res)
        assert.equal("a", seen[1].headers.host)
        assert.equal("abc", seen[1].body)
    end)

    it("sets the read timeout from opts.timeout and passes ctx", function()
        local got
        local sock = fake.socket(get("/"))
        local ctx = fake.ctx({ client_ip = "10.1.2.3" })
        sp.handlers.http_server(function(_, _, c) got = c end, { timeout = 5000 })(sock, ctx)
        assert.same({ 5000 }, sock.timeouts)
        assert.equal(ctx, got)
    end)

    it("yields inside a coroutine like the proxy runs it", function()
        -- a socket whose reads yield before answering, as a real one does
        local sock = fake.socket(get("/a") .. get("/b"))
        local read = sock.read
        sock.read = function(self, p)
            coroutine.yield("read")
            return read(self, p)
        end
        local co = coroutine.create(sp.handlers.http_server(function(req, res)
            res.body = req.path
        end))
        local yields = 0
        while coroutine.status(co) ~= "dead" do
            local ok, err = coroutine.resume(co, sock, fake.ctx())
            assert.is_true(ok, err)
            yields = yields + 1
        end
        assert.is_true(yields > 4)
        local res = fake.parse_responses(sock:output())
        assert.equal("/a", res[1].body)
        assert.equal("/b", res[2].body)
    end)
end)

describe("smartproxy.http", function()
    it("builds responses", function()
        local data, keep = http.build_response(404, { ["X-A"] = 1 }, "nope",
                                               { keep_alive = true, version = 1.1 })
        assert.is_true(keep)
        assert.matches("^HTTP/1.1 404 Not Found\r\n", data)
        assert.matches("\r\nX%-A: 1\r\n", data)
        assert.matches("\r\nContent%-Length: 4\r\n", data)
        assert.matches("\r\n\r\nnope$", data)
        data, keep = http.build_response(200, { Connection = "close" }, nil,
                                         { keep_alive = true })
        assert.is_false(keep)
        assert.matches("\r\nConnection: close\r\n", data)
        assert.matches("\r\nContent%-Length: 0\r\n", data)
        assert.not_matches("Content%-Type", data)
        data = http.build_response(299, { Date = "yesterday" }, "")
        assert.matches("^HTTP/1.1 299 Unknown\r\n", data)
        assert.matches("\r\nDate: yesterday\r\n", data)
        assert.has_error(function() http.build_response(200, { ["Bad Name"] = "x" }, "") end)
        assert.has_error(function() http.build_response(200, { A = true }, "") end)
        assert.has_error(function() http.build_response(600, nil, "") end)
    end)

    it("checks every header and status, whatever it checked before", function()
        -- the builder remembers names, values and statuses that passed: what failed must
        -- still fail, also after the caches filled up and started over
        local opts = { keep_alive = true, version = 1.1 }
        for i = 1, 1500 do
            http.build_response(200, { ["X-N" .. i] = "v" .. i, ["X-Same"] = "same" }, "", opts)
        end
        assert.has_error(function() http.build_response(200, { ["X-Same"] = "a\r\nb" }, "") end)
        assert.has_error(function() http.build_response(200, { ["X-Same"] = "a\0" }, "") end)
        assert.has_error(function() http.build_response(200, { ["X-N1 "] = "v1" }, "") end)
        assert.has_error(function() http.build_response(200.5, nil, "") end)
        assert.has_error(function() http.build_response("200", nil, "") end)
        assert.has_error(function() http.build_response(199, nil, "") end)
        local data = http.build_response(200, { ["X-N7"] = 7, ["x-list"] = { "a", 2 } }, "b", opts)
        assert.matches("\r\nX%-N7: 7\r\n", data)
        assert.matches("\r\nx%-list: a\r\nx%-list: 2\r\n", data)
        assert.matches("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", data)
        data = http.build_response(204, { ["Content-Length"] = "9" }, "ignored", opts)
        assert.equal(nil, data:find("Content-Length", 1, true))
        assert.matches("\r\n\r\n$", data)
        local long = string.rep("v", 300) -- not cached: checked on every use
        assert.matches(long, (http.build_response(200, { ["X-Long"] = long }, "", opts)))
        assert.has_error(function()
            http.build_response(200, { ["X-Long"] = long .. "\n" }, "", opts)
        end)
        data = http.build_response(200, nil, "body", { head = true, keep_alive = true, version = 1.0 })
        assert.matches("\r\nContent%-Length: 4\r\nConnection: keep%-alive\r\n\r\n$", data)
    end)

    it("fills template variables from the request and ctx", function()
        local req = { path = "/p", query = "q=1", url = "/p?q=1",
                      headers = http.new_headers() }
        req.headers.Host = "Example.COM:8080"
        local v = http.template_vars(req, fake.ctx({ server_port = 8080, tls = true }))
        assert.equal("example.com", v.domain)
        assert.equal("Example.COM:8080", v.host)
        assert.equal(8080, v.port)
        assert.equal("https", v.proto)
        assert.equal("192.0.2.10", v.client_ip)
        req.headers.host = "[::1]:81"
        assert.equal("[::1]", http.template_vars(req, fake.ctx()).domain)
        req.headers.host = nil
        v = http.template_vars(req, fake.ctx({ domain = "sni.example" }))
        assert.equal("sni.example", v.domain)
        assert.equal("sni.example", v.host)
        assert.equal("http", v.proto)
    end)

    it("finds Connection tokens", function()
        assert.is_true(http.has_token("Keep-Alive, Upgrade", "upgrade"))
        assert.is_true(http.has_token("close", "close"))
        assert.is_false(http.has_token("closed", "close"))
        assert.is_false(http.has_token(nil, "close"))
    end)
end)
