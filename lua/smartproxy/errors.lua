-- smartproxy.errors: how the library's helpers describe bad arguments (internal).

local error = error
local str_format = string.format
local tostring = tostring
local type = type

local _M = {}

-- "string \"abc\"", "number 5", "table": what a message says was found.
function _M.describe(v)
    local t = type(v)
    if t == "string" then
        return str_format("string %q", v)
    elseif t == "number" or t == "boolean" then
        return t .. " " .. tostring(v)
    end
    return t
end

-- Raises without a position: the exported helpers re-raise at their caller's line.
function _M.raise(fmt, ...)
    error(str_format(fmt, ...), 0)
end

return _M
