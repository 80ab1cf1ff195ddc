/* route_state: what one worker keeps for each route of a generation it serves: the
 * round-robin cursor over the route's targets, and the route's entry in the shared
 * per-route figures (net/route_limits.h), looked up once.
 *
 * A generation is immutable once loaded, but this state changes with every connection,
 * so it lives beside the generation rather than in it: the worker makes one table when
 * it adopts a generation, indexed by the routes' places in it (sp_route.index), and
 * every connection accepted on that generation holds a reference (a background Lua task
 * proxies nothing and holds none). A reload thus
 * leaves old connections their old cursors, and the table goes with the last of them.
 * A table belongs to one worker's thread: no locks, no atomics; each worker cycles its
 * own cursor, as it did when the cursor sat in its own copy of the route. */
#ifndef SP_NET_ROUTE_STATE_H
#define SP_NET_ROUTE_STATE_H

#include <stddef.h>

#include "config/routes.h"
#include "net/route_limits.h"

typedef struct sp_route_state {
    unsigned rr_next;               /* round-robin cursor over the route's targets */
    sp_route_counter *counter;      /* the route's shared figures, NULL until first used */
} sp_route_state;

typedef struct sp_route_states {
    int refs;                       /* the worker while the generation is current, each connection on it */
    sp_route_limits *limits;        /* where the shared figures are looked up (the process's) */
    size_t n;
    sp_route_state at[];            /* at[r->index - 1] for route r */
} sp_route_states;

/* A table for a generation of nroutes routes (refs = 1); NULL when out of memory. */
sp_route_states *sp_route_states_new(size_t nroutes, sp_route_limits *limits);
sp_route_states *sp_route_states_ref(sp_route_states *s);
void sp_route_states_unref(sp_route_states *s);

/* The next target of route r (a forward route of the table's generation), round-robin. */
const sp_target *sp_route_next_target(sp_route_states *s, const sp_route *r);

/* Route r's shared figures, looked up by name on first use; NULL only when out of
 * memory (looked up again next time). */
sp_route_counter *sp_route_counter_of(sp_route_states *s, const sp_route *r);

#endif
