/* One description of a route for the printers; see describe.h. */
#include "config/describe.h"

#include <string.h>

void sp_route_describe(const sp_route *r, sp_route_desc *out)
{
    static const char *const action_names[] = {
        [SP_ACTION_FORWARD] = "forward", [SP_ACTION_BLOCK] = "block",
        [SP_ACTION_SOCKET_HANDLER] = "socket-handler", [SP_ACTION_REDIRECT] = "redirect",
    };
    *out = (sp_route_desc){
        .name = r->name, .index = r->index, .priority = r->priority,
        .ports = r->ports, .nports = r->nports,
        .action = r->action, .action_name = action_names[r->action],
        .kernel = r->nft.enabled, .http = r->is_http,
        .targets = r->targets, .ntargets = r->ntargets,
    };
}

void sp_target_describe(const sp_target *t, sp_target_desc *out)
{
    *out = (sp_target_desc){
        .host = t->host ? t->host : SP_DESC_LUA_FUNCTION,
        .host_is_ipv6 = t->host && strchr(t->host, ':'),
        .port_kind = t->port_kind,
        .port = t->port,
        .port_word = t->port_kind == SP_PORT_PRESERVE ? "preserve"
                   : t->port_kind == SP_PORT_FUNCTION ? SP_DESC_LUA_FUNCTION : NULL,
    };
}
