#include "net/target.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/ctx.h"

int sp_target_choose(sp_gen *g, const sp_target *t, const sp_conn_info *info,
                     sp_target_choice *out, char *err, size_t errlen)
{
    lua_State *L = g->L;
    if (t->host) {
        out->host = strdup(t->host);
    } else {
        if (sp_lua_call_ctx(L, t->host_fn, info, g->settings.timeouts.lua_budget, err, errlen) != 0)
            return -1;
        size_t len;
        const char *h = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!h || len == 0 || len > 253) {
            snprintf(err, errlen, "target.host function returned %s, expected a host name or address",
                     luaL_typename(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        out->host = strdup(h);
        lua_pop(L, 1);
    }
    if (!out->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    switch (t->port_kind) {
    case SP_PORT_FIXED: out->port = t->port; break;
    case SP_PORT_PRESERVE: out->port = info->server_port; break;
    case SP_PORT_FUNCTION: {
        if (sp_lua_call_ctx(L, t->port_fn, info, g->settings.timeouts.lua_budget, err, errlen) != 0)
            return -1;
        double p = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || p < 1 || p > 65535 || p != floor(p)) {
            snprintf(err, errlen, "target.port function returned %s, expected a port from 1 to 65535",
                     lua_type(L, -1) == LUA_TNUMBER ? "an out-of-range number" : luaL_typename(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        out->port = (uint16_t)p;
        lua_pop(L, 1);
        break;
    }
    }
    snprintf(out->port_text, sizeof out->port_text, "%u", out->port);
    return 0;
}

bool sp_target_literal(const sp_target_choice *c, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    const char *h = c->host;
    char buf[64];
    size_t len = strlen(h);
    if (len > 2 && h[0] == '[' && h[len - 1] == ']' && len - 2 < sizeof buf) { /* "[::1]" */
        memcpy(buf, h + 1, len - 2);
        buf[len - 2] = 0;
        h = buf;
    }
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(c->port);
        return true;
    }
    if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(c->port);
        return true;
    }
    return false;
}

void sp_target_choice_clear(sp_target_choice *c)
{
    free(c->host);
    c->host = NULL;
    c->port = 0;
    c->port_text[0] = 0;
}
