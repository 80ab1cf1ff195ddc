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

void sp_route_json(const sp_route *r, sp_json *j)
{
    static const char *const tls_modes[] = {
        [SP_TLS_NONE] = NULL, [SP_TLS_PASSTHROUGH] = "passthrough",
        [SP_TLS_TERMINATE] = "terminate", [SP_TLS_REENCRYPT] = "terminate-and-reencrypt",
    };
    sp_route_desc d;
    sp_route_describe(r, &d);
    sp_json_obj_open(j);
    sp_json_key(j, "name");
    sp_json_str(j, d.name);
    sp_json_key(j, "index");
    sp_json_int(j, d.index);
    sp_json_key(j, "priority");
    sp_json_int(j, d.priority);
    sp_json_key(j, "enabled");
    sp_json_bool(j, !r->disabled);
    sp_json_key(j, "description");
    sp_json_str(j, r->description); /* null when there is none */
    sp_json_key(j, "tags");
    sp_json_arr_open(j);
    for (size_t k = 0; k < r->ntags; k++)
        sp_json_str(j, r->tags[k]);
    sp_json_arr_close(j);
    sp_json_key(j, "ports");
    sp_json_arr_open(j);
    for (size_t k = 0; k < d.nports; k++) {
        sp_json_arr_open(j);
        sp_json_int(j, d.ports[k].from);
        sp_json_int(j, d.ports[k].to);
        sp_json_arr_close(j);
    }
    sp_json_arr_close(j);
    sp_json_key(j, "protocol");
    sp_json_str(j, d.http ? "http" : "tcp");
    sp_json_key(j, "tls");
    if (tls_modes[r->tls.mode])
        sp_json_str(j, tls_modes[r->tls.mode]);
    else
        sp_json_null(j);
    sp_json_key(j, "domains");
    sp_json_arr_open(j);
    char name[258];
    for (size_t k = 0; k < r->ndomains; k++)
        sp_json_str(j, sp_domain_pattern_format(&r->domains[k], name, sizeof name));
    sp_json_arr_close(j);
    sp_json_key(j, "action");
    sp_json_str(j, d.action_name);
    if (d.kernel) {
        sp_json_key(j, "forwarding_engine");
        sp_json_str(j, "nftables");
    }
    sp_json_key(j, "targets");
    sp_json_arr_open(j);
    for (size_t k = 0; k < d.ntargets; k++) {
        sp_target_desc t;
        sp_target_describe(&d.targets[k], &t);
        sp_json_obj_open(j);
        sp_json_key(j, "host");
        sp_json_str(j, t.host);
        sp_json_key(j, "port");
        if (t.port_kind == SP_PORT_FIXED)
            sp_json_int(j, t.port);
        else
            sp_json_str(j, t.port_word);
        sp_json_obj_close(j);
    }
    sp_json_arr_close(j);
    sp_json_obj_close(j);
}
