/* shared: a small dictionary shared by every worker's Lua states (sp.shared), for
 * counters and caches, like OpenResty's lua_shared_dict.
 *
 * Keys are strings; values are strings, numbers or booleans; an entry may expire after a
 * TTL. Bounded: at most `capacity` entries; a set beyond it evicts expired entries first,
 * then fails with "no memory". Striped locks keep workers from contending on one lock. */
#ifndef SP_LUA_SHARED_H
#define SP_LUA_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_shared sp_shared;
typedef struct lua_State lua_State;

sp_shared *sp_shared_new(size_t capacity);
void sp_shared_free(sp_shared *d);

/* Registers the dictionary for a Lua state: core.shared becomes usable there. */
void sp_lua_set_shared(lua_State *L, sp_shared *d);
/* Pushes the sp.shared object (methods get, set, incr, delete) on L's stack. */
void sp_lua_push_shared(lua_State *L);

#endif
