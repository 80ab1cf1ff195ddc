-- Puts tests/lua (for support.*) and the repository's lua/ on package.path, so the specs
-- run with or without busted's --lpath. Load it with:
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "support/path.lua")
local here = debug.getinfo(1, "S").source:match("^@(.*/)support/") or "./"
local top = here .. "../../"
package.path = here .. "?.lua;" .. top .. "lua/?.lua;" .. top .. "lua/?/init.lua;"
               .. package.path
return { tests = here, top = top }
