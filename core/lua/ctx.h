/* ctx: the connection context handed to Lua callbacks (SPEC 5), and protected calls.
 *
 * A Lua error in a callback is returned as a message with its traceback; the caller ends
 * that one connection and logs it with the route name. */
#ifndef SP_LUA_CTX_H
#define SP_LUA_CTX_H

#include <stddef.h>

#include "route/router.h"

typedef struct lua_State lua_State;

/* Pushes a new ctx table for info. */
void sp_lua_push_ctx(lua_State *L, const sp_conn_info *info);

/* Calls the function at registry reference `ref` with ctx, for at most budget_ms
 * (timeouts.lua_budget; 0: unbounded); on success leaves one result on the stack and
 * returns 0, else returns -1 with the error and traceback in err. */
int sp_lua_call_ctx(lua_State *L, int ref, const sp_conn_info *info, uint64_t budget_ms, char *err,
                    size_t errlen);

/* Pushes an HTTP head's fields as a table: lowercased names, repeated fields joined
 * with ", " (as ctx.headers and sock:read_request_head give them). */
struct sp_http_head;
void sp_lua_push_headers(lua_State *L, const struct sp_http_head *h);

#endif
