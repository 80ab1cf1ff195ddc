/* config/describe: one description of a compiled route for everything that shows routes.
 *
 * Three printers show routes: the --check summary (config/print.c, as text or as JSON),
 * GET /routes (core/main.c) and --explain (core/cli/explain.c). They all take a route's
 * identity, ports, action and targets from here, so a field is read and named in one
 * place; each printer only chooses its layout (text line, JSON object). Pure: no allocation, nothing written. */
#ifndef SP_CONFIG_DESCRIBE_H
#define SP_CONFIG_DESCRIBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/routes.h"
#include "util/json.h"

/* What stands for a value a Lua function chooses per connection. */
#define SP_DESC_LUA_FUNCTION "<lua function>"

/* A route as the printers show it. The strings and arrays point into the route: valid as
 * long as its generation. */
typedef struct sp_route_desc {
    const char *name;
    int index;                     /* 1-based position in the file */
    int priority;
    const sp_port_range *ports;
    size_t nports;
    sp_action_type action;
    const char *action_name;       /* "forward", "block", "redirect", "socket-handler" */
    bool kernel;                   /* forwarded by the kernel (forwarding_engine = "nftables") */
    bool http;                     /* request by request */
    const sp_target *targets;      /* describe each with sp_target_describe */
    size_t ntargets;
} sp_route_desc;

/* A target as the printers show it. */
typedef struct sp_target_desc {
    const char *host;              /* the host, or SP_DESC_LUA_FUNCTION */
    bool host_is_ipv6;             /* an IPv6 literal: "host:port" text brackets it */
    sp_port_kind port_kind;
    uint16_t port;                 /* SP_PORT_FIXED */
    const char *port_word;         /* otherwise: "preserve" or SP_DESC_LUA_FUNCTION */
} sp_target_desc;

void sp_route_describe(const sp_route *r, sp_route_desc *out);

void sp_target_describe(const sp_target *t, sp_target_desc *out);

/* A route as one JSON object, the same for GET /routes and `--check --format json`:
 * name, index, priority, enabled, description (or null), tags, ports ([from, to] pairs), protocol ("tcp" | "http"), tls (the
 * mode, or null), domains (as written), action (its type), forwarding_engine (kernel
 * routes) and targets ({host, port}). */
void sp_route_json(const sp_route *r, sp_json *j);

#endif
