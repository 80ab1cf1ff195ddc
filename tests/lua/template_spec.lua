-- SPEC 6 templates (internal module used by redirects).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local fake = require "support.fake"
fake.load_smartproxy(false)
local template = require "smartproxy.template"

describe("smartproxy.template", function()
    it("knows the SPEC 6 variables", function()
        for _, v in ipairs({ "client_ip", "client_port", "domain", "host", "port", "path",
                             "query", "url", "proto", "route_name", "connection_id" }) do
            assert.is_true(template.validate("{" .. v .. "}"), v)
        end
    end)

    it("renders literals and variables; missing values are empty", function()
        local t = template.compile("https://{domain}:{port}{url}#x")
        assert.equal("https://a.com:8443/p?q#x", t({ domain = "a.com", port = 8443, url = "/p?q" }))
        assert.equal("https://:/p#x", t({ url = "/p" }))
        assert.equal("plain", template.compile("plain")({}))
        assert.equal("/a.com/a.com", template.compile("/{domain}/{domain}")({ domain = "a.com" }))
    end)

    it("rejects unknown variables", function()
        assert.same({ nil, "unknown template variable {nope}" }, { template.validate("/{nope}") })
        assert.same({ nil, "unknown template variable {}" }, { template.validate("{}") })
        assert.same({ nil, "expected a template string, got number" }, { template.validate(1) })
        assert.has_error(function() template.compile("{x}", "opts.to") end,
                         "opts.to: unknown template variable {x}")
    end)

    it("rejects stray braces, like core/pattern/template.c", function()
        local cases = {
            { "{", "unclosed '{' at offset 0" },
            { "{not closed", "unclosed '{' at offset 0" },
            { "abc{domain", "unclosed '{' at offset 3" },
            { "{{domain}}", "unclosed '{' at offset 0" },
            { "{a{domain}", "unclosed '{' at offset 0" },
            { "{domain}{", "unclosed '{' at offset 8" },
            { "}", "'}' without its '{' at offset 0" },
            { "a}b", "'}' without its '{' at offset 1" },
            { "{domain}}", "'}' without its '{' at offset 8" },
            { "{x}{y}", "unknown template variable {x}" },
            { "{ domain }", "unknown template variable { domain }" },
            { '{"a":1}', 'unknown template variable {"a":1}' },
        }
        for _, c in ipairs(cases) do
            assert.same({ nil, c[2] }, { template.validate(c[1]) }, c[1])
        end
        assert.equal("", template.compile("")({}))
        assert.equal("/v2/x", template.compile("/v2{path}")({ path = "/x" }))
    end)
end)
