#include "lua/ctx.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>

void sp_lua_push_ctx(lua_State *L, const sp_conn_info *info)
{
    char ip[64];
    lua_createtable(L, 0, 8);
    sp_ip_format(&info->client_ip, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "client_ip");
    lua_pushinteger(L, info->client_port);
    lua_setfield(L, -2, "client_port");
    sp_ip_format(&info->server_ip, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "server_ip");
    lua_pushinteger(L, info->server_port);
    lua_setfield(L, -2, "server_port");
    lua_pushnumber(L, (lua_Number)info->id);
    lua_setfield(L, -2, "connection_id");
    if (info->route_name) {
        lua_pushstring(L, info->route_name);
        lua_setfield(L, -2, "route_name");
    }
    lua_pushlstring(L, info->domain ? info->domain : "", info->domain_len);
    lua_setfield(L, -2, "domain");
    lua_pushboolean(L, info->tls);
    lua_setfield(L, -2, "tls");
    if (info->tls_version) {
        lua_pushstring(L, info->tls_version);
        lua_setfield(L, -2, "tls_version");
    }
    if (info->proxied_by) {
        lua_pushstring(L, info->proxied_by);
        lua_setfield(L, -2, "proxied_by");
    }
    if (info->alpn) {
        lua_pushstring(L, info->alpn);
        lua_setfield(L, -2, "alpn");
    }
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int sp_lua_call_ctx(lua_State *L, int ref, const sp_conn_info *info, char *err, size_t errlen)
{
    lua_pushcfunction(L, traceback);
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    sp_lua_push_ctx(L, info);
    if (lua_pcall(L, 1, 1, base) != 0) {
        snprintf(err, errlen, "Lua error: %s", lua_tostring(L, -1));
        lua_settop(L, base - 1);
        return -1;
    }
    lua_remove(L, base); /* the traceback function; the result stays on top */
    return 0;
}
