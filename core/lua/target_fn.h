/* target_fn: a route's target.host and target.port Lua functions, called with the
 * connection's ctx in its own generation's state, within timeouts.lua_budget.
 *
 * net/target.c reaches them through the hooks of net/target.h (installed at startup by
 * core/session/apps.c), so net/ runs no Lua itself. */
#ifndef SP_LUA_TARGET_FN_H
#define SP_LUA_TARGET_FN_H

#include <stddef.h>
#include <stdint.h>

#include "net/target.h"

/* target.host: *host (malloc'd) is the name or address returned; 0, or -1 with a
 * message naming the failing function in err. */
int sp_lua_target_host(sp_gen *g, int fn_ref, const sp_conn_info *info, char **host, char *err, size_t errlen);
/* target.port: *port is the port returned (1 to 65535); 0, or -1 with a message. */
int sp_lua_target_port(sp_gen *g, int fn_ref, const sp_conn_info *info, uint16_t *port, char *err, size_t errlen);

#endif
