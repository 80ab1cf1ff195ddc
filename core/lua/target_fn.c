#include "lua/target_fn.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/ctx.h"

int sp_lua_target_host(sp_gen *g, int fn_ref, const sp_conn_info *info, char **host, char *err, size_t errlen)
{
    lua_State *L = g->L;
    if (sp_lua_call_ctx(L, fn_ref, info, g->settings.timeouts.lua_budget, err, errlen) != 0)
        return -1;
    size_t len;
    const char *h = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!h || len == 0 || len > 253) {
        snprintf(err, errlen, "target.host function returned %s, expected a host name or address",
                 luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    *host = strdup(h);
    lua_pop(L, 1);
    return 0;
}

int sp_lua_target_port(sp_gen *g, int fn_ref, const sp_conn_info *info, uint16_t *port, char *err, size_t errlen)
{
    lua_State *L = g->L;
    if (sp_lua_call_ctx(L, fn_ref, info, g->settings.timeouts.lua_budget, err, errlen) != 0)
        return -1;
    double p = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || p < 1 || p > 65535 || p != floor(p)) {
        snprintf(err, errlen, "target.port function returned %s, expected a port from 1 to 65535",
                 lua_type(L, -1) == LUA_TNUMBER ? "an out-of-range number" : luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    *port = (uint16_t)p;
    lua_pop(L, 1);
    return 0;
}
