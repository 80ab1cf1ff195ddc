/* Compiles the configuration table into a generation. Every check names the file, the
 * route (name and 1-based index) and the field path, and says what was expected and
 * what was found (SPEC 10). Errors are raised with lua_error from inside a protected
 * call: whatever was allocated so far already hangs off the generation, which the caller
 * frees on failure, so the long jump leaks nothing. The settings, the routes and the port
 * index are compiled by their own modules, in this order. */
#include "config/config.h"

#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/schema.h"

static int compile_protected(lua_State *L)
{
    cfg_cx *cx = lua_touserdata(L, 1);
    sp_gen *g = cx->g;
    lua_settop(L, 2);
    int top = 2;
    if (!lua_istable(L, top))
        cfg_fail_type(cx, "(config)", top, "the file to return a table");
    static const char *const keys[] = {"routes", "workers", "listen_addresses", "timeouts",
                                       "keep_alive", "limits", "metrics", "log", "proxy_ips",
                                       "accept_proxy_protocol", "security", "acme", "certificates", NULL};
    cfg_check_keys(cx, top, "", keys);

    cfg_compile_settings(cx, top);
    cfg_compile_routes(cx, top);
    sp_port_index_build(g);
    return 0;
}

/* The one path that frees a generation: on a failed compile (close_state false: L still
 * belongs to the caller) and on the last unref (close_state true: the state goes too, and
 * with it every registry reference the routes hold). */
static void gen_free(sp_gen *g, bool close_state)
{
    for (size_t i = 0; i < g->nroutes; i++)
        sp_route_free(&g->routes[i], close_state ? NULL : g->L);
    free(g->routes);
    sp_port_index_free(g);
    sp_settings_free(&g->settings);
    free(g->file);
    if (close_state && g->L)
        g->close_state(g->L);
    free(g);
}

sp_gen *sp_gen_compile(lua_State *L, void (*close_state)(lua_State *L), const char *file, char *err,
                       size_t errlen)
{
    sp_gen *g = cfg_calloc(1, sizeof *g);
    g->refs = 1;
    g->file = cfg_strdup(file);
    sp_settings_defaults(&g->settings);
    cfg_cx cx = {.L = L, .g = g, .file = file};

    int value = lua_gettop(L);
    lua_pushcfunction(L, compile_protected);
    lua_pushlightuserdata(L, &cx);
    lua_pushvalue(L, value);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        gen_free(g, false);
        return NULL;
    }
    g->L = L;
    g->close_state = close_state;
    return g;
}

void sp_gen_ref(sp_gen *g) { g->refs++; }

void sp_gen_unref(sp_gen *g)
{
    if (--g->refs == 0)
        gen_free(g, true);
}
