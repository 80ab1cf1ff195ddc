/* config: the Lua configuration table compiled into an immutable C generation.
 *
 * A generation (sp_gen) is everything one load of the configuration produced: global
 * settings, the compiled routes, the port index, and the Lua state that owns the route
 * functions (target host/port functions, later handlers). Each worker compiles its own
 * generation from its own Lua state, so Lua references never cross threads; the main
 * thread compiles one too, to validate and to answer --check.
 *
 * A generation is reference counted by its owner thread only: the worker holds one
 * reference while it is current and every connection holds one while it lives. The last
 * release closes the Lua state and frees the routes; a reload never touches a live
 * connection's generation.
 *
 * The compiler is split by job: config/schema.h (the typed readers and SPEC 10 errors),
 * config/settings.h (global settings), config/routes.h and config/route_action.h
 * (routes), config/nft_options.h (kernel forwarding options), config/port_index.h
 * (routes by port); config/describe.h and config/print.h show a compiled generation.
 * This file keeps the compile order, the reference count and the one path that frees a
 * generation. */
#ifndef SP_CONFIG_CONFIG_H
#define SP_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "config/port_index.h"
#include "config/routes.h"
#include "config/settings.h"

typedef struct lua_State lua_State;

typedef struct sp_gen {
    int refs;
    uint64_t number;               /* config generation, 1 for the first load */
    lua_State *L;                  /* owns every function reference in the routes */
    void (*close_state)(lua_State *L); /* closes L the way its maker opened it */
    char *file;                    /* config file name as given, for messages */
    sp_settings settings;
    sp_route *routes;
    size_t nroutes;
    sp_port_entry *ports;          /* sorted by port */
    size_t nports;
} sp_gen;

/* Compiles the table at the top of L's stack (the value the config chunk returned).
 * On success returns a generation with refs = 1 that takes ownership of L (its last unref
 * calls close_state(L): config/ knows how to read a Lua table, not how the loader made
 * the state). On failure
 * returns NULL, leaves L to the caller and writes a message in the SPEC 10 form
 * ("proxy.lua: route \"api\" (#3): match.ports: expected ..., got ...") into err. */
sp_gen *sp_gen_compile(lua_State *L, void (*close_state)(lua_State *L), const char *file, char *err,
                       size_t errlen);

void sp_gen_ref(sp_gen *g);
void sp_gen_unref(sp_gen *g);

#endif
