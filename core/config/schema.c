/* The typed readers of the configuration compiler; see schema.h. */
#include "config/schema.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys the SPEC defines that this build does not implement yet: rejected with a clear
 * message instead of being silently ignored. */
static const char *const planned_keys[] = {
    NULL,
};

static bool in_list(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0)
            return true;
    return false;
}

char *cfg_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* out of memory while loading config: nothing sensible to do */
    return d;
}

void *cfg_calloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        abort();
    return p;
}

void sp_config_describe(lua_State *L, int idx, char *out, size_t len)
{
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TSTRING: snprintf(out, len, "string \"%.60s\"", lua_tostring(L, idx)); break;
    case LUA_TNUMBER: snprintf(out, len, "number %.14g", lua_tonumber(L, idx)); break;
    case LUA_TBOOLEAN: snprintf(out, len, "boolean %s", lua_toboolean(L, idx) ? "true" : "false"); break;
    default: snprintf(out, len, "%s", lua_typename(L, t)); break;
    }
}

void cfg_fail(cfg_cx *cx, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cx->route)
        lua_pushfstring(cx->L, "%s: route \"%s\" (#%d): %s: %s", cx->file, cx->route->name,
                        cx->route->index, field, msg);
    else
        lua_pushfstring(cx->L, "%s: %s: %s", cx->file, field, msg);
    lua_error(cx->L);
    abort(); /* not reached */
}

void cfg_fail_type(cfg_cx *cx, const char *field, int idx, const char *expected)
{
    char got[100];
    sp_config_describe(cx->L, idx, got, sizeof got);
    cfg_fail(cx, field, "expected %s, got %s", expected, got);
}

void cfg_join(char *out, size_t len, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, len, "%s.%s", path, key);
    else
        snprintf(out, len, "%s", key);
}

void cfg_check_keys(cfg_cx *cx, int idx, const char *path, const char *const *allowed)
{
    lua_State *L = cx->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        char field[160];
        if (lua_type(L, -1) != LUA_TSTRING) {
            char got[100];
            sp_config_describe(L, -1, got, sizeof got);
            cfg_fail(cx, path && *path ? path : "(top level)", "unexpected key %s", got);
        }
        const char *k = lua_tostring(L, -1);
        if (!in_list(allowed, k)) {
            cfg_join(field, sizeof field, path, k);
            if (in_list(planned_keys, k))
                cfg_fail(cx, field, "not supported by this version of smartproxy yet");
            cfg_fail(cx, field, "unknown field");
        }
    }
}

bool cfg_is_array(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TTABLE && lua_objlen(L, idx) > 0;
}

void cfg_opt_uint(cfg_cx *cx, int t, const char *path, const char *key, uint64_t max, uint64_t *out)
{
    lua_getfield(cx->L, t, key);
    if (!lua_isnil(cx->L, -1)) {
        char field[160];
        cfg_join(field, sizeof field, path, key);
        if (lua_type(cx->L, -1) != LUA_TNUMBER)
            cfg_fail_type(cx, field, -1, "a non-negative integer");
        double v = lua_tonumber(cx->L, -1);
        if (!(v >= 0) || v != floor(v) || v > (double)max) {
            char got[100];
            sp_config_describe(cx->L, -1, got, sizeof got);
            cfg_fail(cx, field, "expected an integer from 0 to %llu, got %s", (unsigned long long)max, got);
        }
        *out = (uint64_t)v;
    }
    lua_pop(cx->L, 1);
}

const char *cfg_opt_string(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    const char *s = NULL;
    if (!lua_isnil(cx->L, -1)) {
        if (lua_type(cx->L, -1) != LUA_TSTRING) {
            char field[160];
            cfg_join(field, sizeof field, path, key);
            cfg_fail_type(cx, field, -1, "a string");
        }
        s = lua_tostring(cx->L, -1); /* stays valid: the table still references it */
    }
    lua_pop(cx->L, 1);
    return s;
}

int cfg_opt_bool(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    int v = -1;
    if (!lua_isnil(cx->L, -1)) {
        if (lua_type(cx->L, -1) != LUA_TBOOLEAN) {
            char field[160];
            cfg_join(field, sizeof field, path, key);
            cfg_fail_type(cx, field, -1, "a boolean");
        }
        v = lua_toboolean(cx->L, -1);
    }
    lua_pop(cx->L, 1);
    return v;
}

bool cfg_opt_table(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    if (lua_isnil(cx->L, -1)) {
        lua_pop(cx->L, 1);
        return false;
    }
    if (!lua_istable(cx->L, -1)) {
        char field[160];
        cfg_join(field, sizeof field, path, key);
        cfg_fail_type(cx, field, -1, "a table");
    }
    return true;
}

size_t cfg_for_each_string(cfg_cx *cx, void *dst, int t, const char *key, const char *field,
                              const char *expected,
                              void (*each)(cfg_cx *, void *, int, const char *, size_t))
{
    lua_State *L = cx->L;
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    bool single = lua_type(L, -1) == LUA_TSTRING;
    if (!single && !cfg_is_array(L, -1))
        cfg_fail_type(cx, field, -1, expected);
    size_t n = single ? 1 : lua_objlen(L, -1);
    for (size_t i = 1; i <= n; i++) {
        char f[160];
        if (single) {
            lua_pushvalue(L, -1);
            snprintf(f, sizeof f, "%s", field);
        } else {
            lua_rawgeti(L, -1, (int)i);
            snprintf(f, sizeof f, "%s[%zu]", field, i);
        }
        if (lua_type(L, -1) != LUA_TSTRING)
            cfg_fail_type(cx, f, -1, expected);
        each(cx, dst, lua_gettop(L), f, n);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

uint16_t cfg_port_value(cfg_cx *cx, const char *field, int idx)
{
    if (lua_type(cx->L, idx) != LUA_TNUMBER)
        cfg_fail_type(cx, field, idx, "a port, a range or a list");
    double v = lua_tonumber(cx->L, idx);
    if (!(v >= 1 && v <= 65535) || v != floor(v))
        cfg_fail(cx, field, "expected a port from 1 to 65535, got number %.14g", v);
    return (uint16_t)v;
}

static void add_ip_pattern(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_ip_list *out = dst;
    if (!out->items)
        out->items = cfg_calloc(n, sizeof *out->items);
    const char *why = "invalid";
    if (sp_ip_pattern_parse(lua_tostring(cx->L, idx), &out->items[out->n], &why) != 0)
        cfg_fail(cx, field, "expected an IP address, CIDR or glob, got string \"%s\" (%s)",
                 lua_tostring(cx->L, idx), why);
    out->n++;
}

void cfg_ip_list(cfg_cx *cx, int t, const char *key, const char *field, sp_ip_list *out)
{
    cfg_for_each_string(cx, out, t, key, field, "an IP address, CIDR or glob, or a list of them",
                        add_ip_pattern);
}
