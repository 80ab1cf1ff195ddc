#include "lua/memory.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "lua/budget.h"

typedef struct state_memory {
    uint64_t used, limit; /* touched only by the thread that runs the state */
    lua_Alloc inner;      /* LuaJIT's own allocator, which does the work */
    void *inner_ud;
} state_memory;

static _Atomic uint64_t memory_errors;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    state_memory *m = ud;
    if (nsize == 0) {
        m->used -= osize;
        return m->inner(m->inner_ud, ptr, osize, 0);
    }
    /* LuaJIT passes the old size of a block (0 for a new one). Growth past the cap fails
     * only inside a run (a resume or pcall), where LuaJIT turns it into an error the run
     * catches; the C glue between runs (a new coroutine, a ctx table) is not protected,
     * and a refusal there would abort the process. */
    if (m->limit && nsize > osize && m->used - osize + nsize > m->limit && sp_lua_budget_in_run())
        return NULL;
    void *p = m->inner(m->inner_ud, ptr, osize, nsize);
    if (p)
        m->used = m->used - osize + nsize;
    return p;
}

/* The accounting of a state made by sp_lua_state_new; NULL for any other state. */
static state_memory *memory_of(lua_State *L)
{
    void *ud = NULL;
    return lua_getallocf(L, &ud) == capped_alloc ? ud : NULL;
}

/* The state keeps LuaJIT's own allocator (much faster than malloc for Lua's small
 * objects) behind the counting wrapper; what it allocated before the wrapper went in is
 * what the GC counts. */
lua_State *sp_lua_state_new(uint64_t limit)
{
    state_memory *m = calloc(1, sizeof *m);
    lua_State *L = m ? luaL_newstate() : NULL;
    if (!L) {
        free(m);
        return NULL;
    }
    m->limit = limit;
    m->inner = lua_getallocf(L, &m->inner_ud);
    m->used = (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (uint64_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, capped_alloc, m);
    return L;
}

void sp_lua_state_set_limit(lua_State *L, uint64_t limit)
{
    state_memory *m = memory_of(L);
    if (m)
        m->limit = limit;
}

uint64_t sp_lua_state_memory(lua_State *L)
{
    state_memory *m = memory_of(L);
    return m ? m->used : 0;
}

void sp_lua_state_close(lua_State *L)
{
    if (!L)
        return;
    state_memory *m = memory_of(L);
    if (m) /* LuaJIT frees its whole heap at once when it sees its own allocator */
        lua_setallocf(L, m->inner, m->inner_ud);
    lua_close(L);
    free(m);
}

void sp_lua_state_reclaim(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0); /* LuaJIT's allocator unmaps the large blocks it frees */
}

uint64_t sp_lua_memory_errors(void) { return atomic_load_explicit(&memory_errors, memory_order_relaxed); }

void sp_lua_memory_error_seen(void) { atomic_fetch_add_explicit(&memory_errors, 1, memory_order_relaxed); }
