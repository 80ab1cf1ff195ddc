-- smartproxy.template: the {variable} templates of SPEC 6, used by redirect targets
-- (routes and handlers). Internal module.
--
--   local t = template.compile("https://{domain}{url}")   -- error() on unknown variables
--   local s = t(vars)                                      -- vars: name -> string

local concat = table.concat
local error = error
local tostring = tostring
local type = type
local str_byte = string.byte
local str_find = string.find
local str_sub = string.sub

local _M = {}

-- The variables of SPEC 6.
local VARIABLES = {
    client_ip = true, client_port = true, domain = true, host = true, port = true,
    path = true, query = true, url = true, proto = true, route_name = true,
    connection_id = true,
}
_M.VARIABLES = VARIABLES

-- Splits a template into literal strings (odd slots) and variable names (even slots).
-- Returns parts | nil, err. Strict like core/pattern/template.c, with the same messages:
-- an unknown variable, an unclosed '{' or a '}' without its '{' is an error (offsets
-- count from 0).
function _M.parse(tpl)
    if type(tpl) ~= "string" then
        return nil, "expected a template string, got " .. type(tpl)
    end
    local parts, n, pos = {}, 0, 1
    while true do
        local s = str_find(tpl, "[{}]", pos)
        n = n + 1
        parts[n] = str_sub(tpl, pos, (s or 0) - 1)
        if not s then
            break
        end
        if str_byte(tpl, s) == 125 then -- "}"
            return nil, "'}' without its '{' at offset " .. (s - 1)
        end
        local e = str_find(tpl, "[{}]", s + 1)
        if not e or str_byte(tpl, e) == 123 then -- "{"
            return nil, "unclosed '{' at offset " .. (s - 1)
        end
        local name = str_sub(tpl, s + 1, e - 1)
        if not VARIABLES[name] then
            return nil, "unknown template variable {" .. name .. "}"
        end
        n = n + 1
        parts[n] = name
        pos = e + 1
    end
    return parts
end

-- Checks a template; returns true | nil, err.
function _M.validate(tpl)
    local parts, err = _M.parse(tpl)
    if not parts then
        return nil, err
    end
    return true
end

-- Compiles a template into function(vars) -> string. Raises on a bad template (a
-- programming mistake); `what` names the argument in the message.
function _M.compile(tpl, what)
    local parts, err = _M.parse(tpl)
    if not parts then
        error((what or "template") .. ": " .. err, 2)
    end
    local n = #parts
    if n == 1 then
        local s = parts[1]
        return function() return s end
    end
    return function(vars)
        local out = {}
        for i = 1, n do
            if i % 2 == 1 then
                out[i] = parts[i]
            else
                local v = vars[parts[i]]
                out[i] = v == nil and "" or tostring(v)
            end
        end
        return concat(out, "", 1, n)
    end
end

return _M
