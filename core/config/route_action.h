/* config/route_action: compiles a route's `action` table (private to core/config/).
 *
 * type (forward, block, socket-handler, redirect), protocol, the targets (a host, a host
 * list, a list of targets, or Lua functions for host and port), TLS (passthrough,
 * terminate, terminate-and-reencrypt, certificates), send_proxy_protocol, the handler,
 * the HTTP-only fields (headers, rewrite_path, websocket, redirect) and kernel forwarding
 * (config/nft_options.h). Errors are SPEC 10 messages raised through config/schema.h. */
#ifndef SP_CONFIG_ROUTE_ACTION_H
#define SP_CONFIG_ROUTE_ACTION_H

#include "config/schema.h"

/* Reads the action table at index t into r (called by config/routes.c). */
void cfg_compile_action(cfg_cx *cx, sp_route *r, int t);

#endif
