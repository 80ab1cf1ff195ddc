#include "lua/ctx.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

#include "proto/http_message.h"
#include "lua/budget.h"
#include "lua/memory.h"

/* Pushes s lowercased (header names: ASCII only). */
static void push_lower(lua_State *L, const char *s, size_t len)
{
    char small[256];
    if (len > sizeof small) { /* rare: build it in Lua's own buffer */
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t k = 0; k < len; k++)
            luaL_addchar(&b, s[k] >= 'A' && s[k] <= 'Z' ? (char)(s[k] + 32) : s[k]);
        luaL_pushresult(&b);
        return;
    }
    for (size_t k = 0; k < len; k++)
        small[k] = s[k] >= 'A' && s[k] <= 'Z' ? (char)(s[k] + 32) : s[k];
    lua_pushlstring(L, small, len);
}

void sp_lua_push_headers(lua_State *L, const struct sp_http_head *h)
{
    lua_createtable(L, 0, (int)h->nfields);
    for (size_t i = 0; i < h->nfields; i++) {
        const sp_http_field *f = &h->fields[i];
        push_lower(L, sp_http_name(h, f), f->name_len);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, sp_http_value(h, f), f->value_len);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, sp_http_value(h, f), f->value_len);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
}

/* ctx.method, ctx.path (normalised, without the query), ctx.query, ctx.headers
 * (lowercased names; repeated fields joined with ", ") and ctx.params (from :name in
 * the route's match.path). */
static void push_http(lua_State *L, const sp_conn_info *info)
{
    const sp_http_head *h = info->http;
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)h->method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, info->path, info->path_len);
    lua_setfield(L, -2, "path");
    const char *url = sp_http_url(h);
    const char *q = memchr(url, '?', h->url_len);
    lua_pushlstring(L, q ? q + 1 : "", q ? h->url_len - (size_t)(q + 1 - url) : 0);
    lua_setfield(L, -2, "query");
    sp_lua_push_headers(L, h);
    lua_setfield(L, -2, "headers");
    lua_newtable(L);
    if (info->path_pattern) {
        sp_path_param params[SP_PATH_MAX_PARAMS];
        size_t np = 0;
        if (sp_path_pattern_match(info->path_pattern, info->path, info->path_len, params, &np))
            for (size_t i = 0; i < np; i++) {
                lua_pushlstring(L, params[i].name, params[i].name_len);
                lua_pushlstring(L, params[i].value, params[i].value_len);
                lua_rawset(L, -3);
            }
    }
    lua_setfield(L, -2, "params");
}

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
    if (info->http)
        push_http(L, info);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int sp_lua_call_ctx(lua_State *L, int ref, const sp_conn_info *info, uint64_t budget_ms, char *err,
                    size_t errlen)
{
    lua_pushcfunction(L, traceback);
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    sp_lua_push_ctx(L, info);
    sp_lua_budget_enter(L, budget_ms);
    int rc = lua_pcall(L, 1, 1, base);
    sp_lua_budget_leave(NULL);
    if (rc != 0) {
        if (rc == LUA_ERRMEM)
            sp_lua_memory_error_seen();
        snprintf(err, errlen, "Lua error: %s", rc == LUA_ERRMEM ? "not enough memory (limits.lua_memory)"
                                                                : lua_tostring(L, -1));
        lua_settop(L, base - 1);
        return -1;
    }
    lua_remove(L, base); /* the traceback function; the result stays on top */
    return 0;
}
