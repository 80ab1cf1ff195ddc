/* config/port_index: for each listening port, the routes that can be chosen there.
 *
 * Built once per generation after the routes are compiled: routes sorted best first
 * (higher priority, then earlier in the file), and what the connection must do before it
 * can choose (sniff the first bytes, read HTTP). Kernel-forwarded routes have no
 * listener and are left out. core/route/router.c walks an entry to choose a route. */
#ifndef SP_CONFIG_PORT_INDEX_H
#define SP_CONFIG_PORT_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/routes.h"

struct sp_gen;

/* Routes that can be chosen for one listening port, best first. */
typedef struct sp_port_entry {
    uint16_t port;
    sp_route **routes;
    size_t nroutes;
    bool sniff;                    /* some route needs the first client bytes (SNI, version, HTTP) */
    bool http;                     /* some route works request by request */
    bool http_head;                /* plain bytes may be a request head that routes: some
                                      route without TLS is HTTP or has domains (Host) */
} sp_port_entry;

/* Fills g->ports from g->routes. */
void sp_port_index_build(struct sp_gen *g);

/* Frees g->ports. */
void sp_port_index_free(struct sp_gen *g);

/* The candidate routes for a port, best first, or NULL. */
const sp_port_entry *sp_gen_port(const struct sp_gen *g, uint16_t port);

#endif
