-- The entry module: what it exports, and its bridge to smartproxy.core with and
-- without the core.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local fake = require "support.fake"

local NO_CORE = "smartproxy.core is only available inside smartproxy"

describe("smartproxy outside the proxy", function()
    local sp
    setup(function()
        sp = fake.load_smartproxy(false)
    end)
    teardown(fake.unload)

    it("loads without smartproxy.core", function()
        assert.is_table(sp)
        assert.is_nil(sp.version)
        assert.equal("scm", sp._VERSION)
        assert.is_nil(package.loaded["smartproxy.core"])
    end)

    it("raises in every function that needs the core", function()
        local calls = {
            connect = function() sp.connect("h", 1) end,
            pipe = function() sp.pipe({}, {}) end,
            sleep = function() sp.sleep(1) end,
            log = function() sp.log("info", "x") end,
            stats = function() sp.stats() end,
            update_routes = function() sp.update_routes({}) end,
        }
        for name, call in pairs(calls) do
            local ok, err = pcall(call)
            assert.is_false(ok, name)
            assert.matches("sp." .. name .. ": " .. NO_CORE, err, nil, true)
            assert.matches("init_spec.lua:%d+:", err) -- at the caller's line
        end
    end)

    it("builds routes and handlers all the same", function()
        assert.is_table(sp.http_route("a.com", "h:1"))
        assert.is_function(sp.handlers.http_server(function() end))
        assert.is_function(sp.handlers.echo)
    end)

    it("finds a core that appears later", function()
        local core = fake.core()
        package.loaded["smartproxy.core"] = core
        sp.sleep(5)
        assert.same({ 5 }, core.sleeps)
        package.loaded["smartproxy.core"] = nil
    end)
end)

describe("smartproxy inside the proxy", function()
    local sp, core
    before_each(function()
        sp, core = fake.load_smartproxy()
    end)
    teardown(fake.unload)

    it("exports the SPEC 7 API", function()
        for _, name in ipairs({ "connect", "pipe", "sleep", "log", "stats", "update_routes",
                                "http_route", "https_terminate_route", "https_passthrough_route",
                                "complete_https_server", "http_to_https_redirect",
                                "socket_handler_route", "nftables_route",
                                "load_balancer_route" }) do
            assert.is_function(sp[name], name)
        end
        for _, name in ipairs({ "proxy", "line_protocol", "http_response", "http_redirect",
                                "block", "http_block", "http_server", "echo" }) do
            assert.is_function(sp.handlers[name], name)
        end
        assert.is_table(sp.handlers.CLOSE)
        assert.is_nil(sp.templates)
        assert.equal("9.9.9-test", sp.version)
    end)

    it("loads every submodule up front (workers replay what the config loaded)", function()
        for _, m in ipairs({ "smartproxy.runtime", "smartproxy.routes", "smartproxy.handlers",
                             "smartproxy.http", "smartproxy.template" }) do
            assert.is_not_nil(package.loaded[m], m)
        end
    end)

    it("passes connect, pipe, sleep and stats through", function()
        local opts = { tls = true, sni = "x", timeout = 100 }
        local up = sp.connect("h", 443, opts)
        assert.equal(core.upstreams[1], up)
        assert.same({ "connect", "h", 443, opts }, core.calls[1])
        core.connect_result = function() return nil, "timeout" end
        assert.same({ nil, "timeout" }, { sp.connect("h", 1) })
        sp.pipe("a", "b")
        assert.same({ "a", "b" }, core.pipes[1])
        sp.sleep(10)
        assert.same({ 10 }, core.sleeps)
        assert.same({ active_connections = 1, total_connections = 2 }, sp.stats())
    end)

    it("logs its arguments through tostring, joined with spaces", function()
        sp.log("info", "a", 1, nil, true, "b")
        sp.log("error", "only")
        sp.log("debug")
        assert.same({ level = "info", msg = "a 1 nil true b" }, core.logs[1])
        assert.same({ level = "error", msg = "only" }, core.logs[2])
        assert.same({ level = "debug", msg = "" }, core.logs[3])
        local t = setmetatable({}, { __tostring = function() return "T" end })
        sp.log("warn", t)
        assert.equal("T", core.logs[4].msg)
    end)

    it("rejects an unknown log level", function()
        local ok, err = pcall(function() sp.log("fatal", "x") end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'log': level must be", err, nil, true)
        assert.equal(0, #core.logs)
    end)

    it("says so when the core lacks a function", function()
        core.update_routes = nil
        local ok, err = pcall(function() sp.update_routes({}) end)
        assert.is_false(ok)
        assert.matches("sp.update_routes: not supported by this version of smartproxy "
                       .. "(9.9.9-test) yet", err, nil, true)
        assert.matches("init_spec.lua:%d+:", err)
    end)

    it("passes update_routes through and returns its error", function()
        local routes = { sp.http_route("a.com", "h:1") }
        assert.is_true(sp.update_routes(routes))
        assert.equal(routes, core.updates[1])
        core.update_error = "route #1: bad"
        assert.same({ nil, "route #1: bad" }, { sp.update_routes(routes) })
        assert.has_error(function() sp.update_routes("x") end,
                         "bad argument #1 to 'update_routes': expected a list of routes, got string")
    end)
end)

describe("sp.timer and sp.every", function()
    local fake = require "support.fake"
    teardown(fake.unload)

    it("spawn a background task that sleeps, then runs the function", function()
        local sp, core = fake.load_smartproxy()
        local ran = 0
        sp.timer(250, function() ran = ran + 1 end)
        assert.equal(1, #core.spawned)
        core.spawned[1]()
        assert.same({ 250 }, core.sleeps)
        assert.equal(1, ran)
    end)

    it("every() keeps going after an error and logs it", function()
        local sp, core = fake.load_smartproxy()
        local runs = 0
        sp.every(100, function()
            runs = runs + 1
            if runs == 1 then error("first run fails") end
            if runs == 3 then coroutine.yield("stop") end -- leave the loop for the test
        end)
        local co = coroutine.create(core.spawned[1])
        assert.is_true(coroutine.resume(co))
        assert.equal(3, runs)
        assert.equal("error", core.logs[1].level)
        assert.matches("first run fails", core.logs[1].msg)
    end)

    it("check their arguments", function()
        local sp = fake.load_smartproxy()
        assert.has_error(function() sp.timer(-1, function() end) end,
                         "sp.timer: ms: expected milliseconds >= 0, got -1")
        assert.has_error(function() sp.every(10, "x") end, "sp.every: fn: expected a function, got string")
    end)
end)
