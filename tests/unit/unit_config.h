/*
 * Compiling config text in unit tests: the Lua chunk runs in a fresh state and its table
 * goes through sp_gen_compile, as a real load does (without files or workers).
 *
 *     sp_gen *g = unit_compile("return { routes = { ... } }");   // NULL: see unit_err
 *     CHECK(unit_fails_with("return { routes = 1 }", "routes: expected"));
 *
 * Header only, for the test binaries that need it (one translation unit each).
 */
#ifndef SP_TESTS_UNIT_CONFIG_H
#define SP_TESTS_UNIT_CONFIG_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

/* The message of the last failed unit_compile. */
static char unit_err[1024];

/* Compiles a config chunk given as Lua source; NULL and unit_err on failure. */
static inline sp_gen *unit_compile(const char *src)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    unit_err[0] = 0;
    if (luaL_loadstring(L, src) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(unit_err, sizeof unit_err, "%s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    sp_gen *g = sp_gen_compile(L, lua_close, "proxy.lua", unit_err, sizeof unit_err);
    if (!g)
        lua_close(L);
    return g;
}

/* Expects unit_compile(src) to fail with a message containing `want`. */
static inline bool unit_fails_with(const char *src, const char *want)
{
    sp_gen *g = unit_compile(src);
    if (g) {
        sp_gen_unref(g);
        fprintf(stderr, "    compiled, expected an error containing \"%s\"\n", want);
        return false;
    }
    if (!strstr(unit_err, want)) {
        fprintf(stderr, "    got \"%s\"\n    want \"%s\"\n", unit_err, want);
        return false;
    }
    return true;
}

#endif
