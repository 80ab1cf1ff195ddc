-- The example configurations load in plain LuaJIT and their handlers do what their
-- comments say (over fake sockets and a fake core).
local paths = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
                     .. "support/path.lua")
local fake = require "support.fake"

local EXAMPLES = paths.top .. "examples/"

local sp, core

-- Loads an example afresh (its module-level state too) over a fresh fake core.
local function load_example(name)
    sp, core = fake.load_smartproxy()
    local config = dofile(EXAMPLES .. name)
    assert.is_table(config)
    assert.same({ "127.0.0.1" }, config.listen_addresses)
    assert.matches("^127%.0%.0%.1:%d+$", config.metrics.listen)
    assert.is_table(config.routes)
    return config, config.routes[1]
end

local function run(route, input, ctx, sock_opts)
    local sock = fake.socket(input, sock_opts)
    route.action.handler(sock, ctx or fake.ctx())
    return sock
end

describe("examples", function()
    teardown(fake.unload)

    it("use distinct admin ports", function()
        local seen = {}
        for _, name in ipairs({ "echo.lua", "line-protocol.lua", "smtp-gateway.lua",
                                "custom-router.lua", "nftables.lua" }) do
            local config = load_example(name)
            assert.is_nil(seen[config.metrics.listen], name)
            seen[config.metrics.listen] = true
        end
    end)

    describe("nftables.lua", function()
        it("forwards in the kernel", function()
            local config = load_example("nftables.lua")
            local app, range = config.routes[1], config.routes[2]
            assert.same({ type = "forward", target = { host = "10.203.2.2", port = 9000 },
                          forwarding_engine = "nftables",
                          nftables = { protocol = "all", preserve_source_ip = true } }, app.action)
            assert.equal(7000, app.match.ports)
            assert.equal("nftables", range.action.forwarding_engine)
            assert.equal("100mbps", range.action.nftables.max_rate)
        end)
    end)

    describe("echo.lua", function()
        it("echoes on 7000", function()
            local _, route = load_example("echo.lua")
            assert.equal(7000, route.match.ports)
            assert.equal("socket-handler", route.action.type)
            assert.equal(sp.handlers.echo, route.action.handler)
            assert.equal("hi\r\n", run(route, "hi\r\n"):output())
        end)
    end)

    describe("line-protocol.lua", function()
        local route
        before_each(function()
            local _
            _, route = load_example("line-protocol.lua")
        end)

        it("stores, reads, counts and deletes", function()
            local sock = run(route, "SET greeting hello world\r\nGET greeting\r\n"
                                    .. "get missing\r\nINCR n\r\nINCR n\r\nDEL n\r\nDEL n\r\n"
                                    .. "\r\nGET n\r\n")
            assert.equal("OK\r\nVALUE hello world\r\nNIL\r\n1\r\n2\r\n1\r\n0\r\nNIL\r\n",
                         sock:output())
            assert.equal(0, sock.close_calls) -- ended by returning
        end)

        it("keeps the store (sp.shared) across connections", function()
            run(route, "SET k v\r\n")
            assert.equal("VALUE v\r\n", run(route, "GET k\r\n"):output())
        end)

        it("reports errors and quits", function()
            local sock = run(route, "SET k\r\nINCR\r\nSET s abc\r\nINCR s\r\nNOPE x\r\nQUIT\r\n"
                                    .. "GET k\r\n")
            assert.equal("ERR usage: SET key value\r\nERR usage: INCR key\r\nOK\r\n"
                         .. "ERR value is not an integer\r\nERR unknown command NOPE\r\nBYE\r\n",
                         sock:output())
            assert.equal("GET k\r\n", sock:remaining())
            assert.equal(0, sock.close_calls) -- ended by returning
        end)
    end)

    describe("smtp-gateway.lua", function()
        local route
        before_each(function()
            local _
            _, route = load_example("smtp-gateway.lua")
        end)

        it("greets, drops the backend's greeting and pipes", function()
            local backend = fake.socket("220-backend.local ESMTP\r\n220 ready\r\n250 rest")
            core.connect_result = function() return backend end
            local sock = run(route, "EHLO me\r\n", fake.ctx({ client_ip = "10.1.2.3" }))
            assert.equal("220 mail.example.test ESMTP smartproxy gateway\r\n", sock:output())
            assert.same({ "connect", "127.0.0.1", 2526, { timeout = 5000 } }, core.calls[1])
            assert.equal(1, #core.pipes)
            assert.equal(sock, core.pipes[1][1])
            assert.equal(backend, core.pipes[1][2])
            assert.equal("250 rest", backend:remaining())
            assert.equal("EHLO me\r\n", sock:remaining()) -- left for the backend
        end)

        it("lets the allow-list decide", function()
            for ip, ok in pairs({ ["127.0.0.1"] = true, ["::1"] = true,
                                  ["::ffff:127.0.0.1"] = true, ["10.255.0.1"] = true,
                                  ["192.168.3.4"] = true, ["192.169.0.1"] = false,
                                  ["11.0.0.1"] = false, ["203.0.113.9"] = false,
                                  ["2001:db8::1"] = false }) do
                core.pipes = {}
                core.connect_result = function() return fake.socket("220 ok\r\n") end
                local sock = run(route, "", fake.ctx({ client_ip = ip }))
                if ok then
                    assert.equal(1, #core.pipes, ip)
                else
                    assert.equal(0, #core.pipes, ip)
                    assert.matches("^554 5%.7%.1 ", sock:output())
                    assert.equal(0, sock.close_calls) -- ended by returning
                end
            end
        end)

        it("answers 421 when the backend is down or does not greet", function()
            core.connect_result = function() return nil, "connection refused" end
            local sock = run(route, "", fake.ctx({ client_ip = "127.0.0.1" }))
            assert.matches("\r\n421 4%.3%.0 ", sock:output())
            assert.equal(0, sock.close_calls) -- ended by returning
            local backend = fake.socket("500 go away\r\n")
            core.connect_result = function() return backend end
            sock = run(route, "", fake.ctx({ client_ip = "127.0.0.1" }))
            assert.matches("\r\n421 4%.3%.0 ", sock:output())
            assert.is_true(backend.closed)
            assert.equal(0, #core.pipes)
        end)
    end)

    describe("custom-router.lua", function()
        local route
        before_each(function()
            local _
            _, route = load_example("custom-router.lua")
        end)

        local function routed(input)
            core.calls, core.pipes, core.upstreams = {}, {}, {}
            local sock = run(route, input)
            return sock, core.calls[1], core.upstreams[1]
        end

        it("sends HTTP to 8000 with the consumed bytes first", function()
            local sock, call, up = routed("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert.equal(8000, call[3])
            assert.equal("GET / HTTP/1.1\r\n", up:output())
            assert.equal("Host: a\r\n\r\n", sock:remaining())
            assert.equal(1, #core.pipes)
            assert.same({ 10000 }, sock.timeouts)
        end)

        it("sends SSH to 22 and the rest to the echo port", function()
            local _, call, up = routed("SSH-2.0-OpenSSH_9.2\r\n")
            assert.equal(22, call[3])
            assert.equal("SSH-2.0-OpenSSH_9.2\r\n", up:output())
            _, call, up = routed("hello\nmore")
            assert.equal(7000, call[3])
            assert.equal("hello\n", up:output())
            _, call, up = routed("no newline")
            assert.equal(7000, call[3])
            assert.equal("no newline", up:output())
        end)

        it("closes a client that sent nothing or whose backend is down", function()
            local sock, call = routed("")
            assert.is_nil(call)
            assert.equal(0, sock.close_calls) -- ended by returning
            core.connect_result = function() return nil, "refused" end
            sock = routed("GET / HTTP/1.1\r\n")
            assert.equal(0, sock.close_calls) -- ended by returning
            assert.equal(0, #core.pipes)
            assert.equal("warn", core.logs[#core.logs].level)
        end)

        it("decides after at most 4096 bytes", function()
            local _, _, up = routed(string.rep("x", 5000))
            assert.equal(4096, #up:output())
        end)
    end)
end)
