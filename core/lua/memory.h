/* memory: Lua states whose memory is capped (limits.lua_memory).
 *
 * Every Lua state the proxy creates comes from sp_lua_state_new: LuaJIT allocates through
 * a wrapper that counts the state's bytes and refuses an allocation that would cross the
 * cap. LuaJIT turns the refusal into a "not enough memory" error in the code that
 * allocated, so a handler that grows a string or table without bound fails alone instead
 * of taking its worker (or the machine) with it. */
#ifndef SP_LUA_MEMORY_H
#define SP_LUA_MEMORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct lua_State lua_State;

/* A new state capped at `limit` bytes (0: no cap), or NULL when out of memory. */
lua_State *sp_lua_state_new(uint64_t limit);
/* Changes the cap of a state made by sp_lua_state_new (0: no cap; others: nothing). */
void sp_lua_state_set_limit(lua_State *L, uint64_t limit);
/* Bytes the state holds now. */
uint64_t sp_lua_state_memory(lua_State *L);
/* Closes a state (made by sp_lua_state_new or not) and frees its accounting. */
void sp_lua_state_close(lua_State *L);
/* After a memory error: collects the state's garbage at once (LuaJIT's allocator gives
 * the large blocks back to the system), so the resident size falls back instead of
 * staying at the cap until the next cycle. */
void sp_lua_state_reclaim(lua_State *L);

/* Memory errors in every state so far (process-wide, for the metrics). */
uint64_t sp_lua_memory_errors(void);
/* Counts one (the caller recognised a "not enough memory" error). */
void sp_lua_memory_error_seen(void);

#endif
