/* The routes of a generation by listening port; see port_index.h. */
#include "config/port_index.h"

#include <stdlib.h>

#include "config/config.h"
#include "config/schema.h"

static int route_order(const void *a, const void *b)
{
    const sp_route *x = *(sp_route *const *)a, *y = *(sp_route *const *)b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->index - y->index;
}

static int entry_order(const void *a, const void *b)
{
    return (int)((const sp_port_entry *)a)->port - (int)((const sp_port_entry *)b)->port;
}

/* For each port, its candidate routes, best first. */
void sp_port_index_build(sp_gen *g)
{
    /* count routes per port */
    uint32_t *count = cfg_calloc(65536, sizeof *count);
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        if (r->nft.enabled || r->disabled)
            continue; /* forwarded by the kernel (core/nft), or switched off: no listener */
        for (size_t k = 0; k < r->nports; k++)
            for (uint32_t p = r->ports[k].from; p <= r->ports[k].to; p++)
                count[p]++;
    }
    size_t nports = 0;
    for (uint32_t p = 1; p < 65536; p++)
        nports += count[p] > 0;
    g->ports = cfg_calloc(nports, sizeof *g->ports);
    uint32_t *slot = cfg_calloc(65536, sizeof *slot);
    for (uint32_t p = 1; p < 65536; p++) {
        if (!count[p])
            continue;
        sp_port_entry *e = &g->ports[g->nports];
        e->port = (uint16_t)p;
        e->routes = cfg_calloc(count[p], sizeof *e->routes);
        slot[p] = (uint32_t)g->nports++;
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        if (r->nft.enabled || r->disabled)
            continue;
        for (size_t k = 0; k < r->nports; k++)
            for (uint32_t p = r->ports[k].from; p <= r->ports[k].to; p++) {
                sp_port_entry *e = &g->ports[slot[p]];
                /* a route listing a port twice is a candidate once */
                if (e->nroutes && e->routes[e->nroutes - 1] == r)
                    continue;
                e->routes[e->nroutes++] = r;
            }
    }
    for (size_t i = 0; i < g->nports; i++) {
        sp_port_entry *e = &g->ports[i];
        qsort(e->routes, e->nroutes, sizeof(sp_route *), route_order);
        for (size_t k = 0; k < e->nroutes; k++) {
            e->sniff |= sp_route_needs_sniff(e->routes[k]) || e->routes[k]->is_http;
            e->http |= e->routes[k]->is_http;
            e->http_head |= e->routes[k]->tls.mode == SP_TLS_NONE &&
                            (e->routes[k]->is_http || sp_route_needs_sniff(e->routes[k]));
        }
    }
    qsort(g->ports, g->nports, sizeof *g->ports, entry_order);
    free(count);
    free(slot);
}

const sp_port_entry *sp_gen_port(const sp_gen *g, uint16_t port)
{
    size_t lo = 0, hi = g->nports;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->ports[mid].port == port)
            return &g->ports[mid];
        if (g->ports[mid].port < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void sp_port_index_free(sp_gen *g)
{
    for (size_t i = 0; i < g->nports; i++)
        free(g->ports[i].routes);
    free(g->ports);
}
