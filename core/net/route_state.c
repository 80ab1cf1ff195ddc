#include "net/route_state.h"

#include <stdlib.h>

sp_route_states *sp_route_states_new(size_t nroutes, sp_route_limits *limits)
{
    sp_route_states *s = calloc(1, sizeof *s + nroutes * sizeof s->at[0]);
    if (!s)
        return NULL;
    s->refs = 1;
    s->limits = limits;
    s->n = nroutes;
    return s;
}

sp_route_states *sp_route_states_ref(sp_route_states *s)
{
    s->refs++;
    return s;
}

void sp_route_states_unref(sp_route_states *s)
{
    if (s && --s->refs == 0)
        free(s);
}

/* The state of route r; r->index is its 1-based place in the generation. */
static sp_route_state *state_of(sp_route_states *s, const sp_route *r)
{
    if (r->index < 1 || (size_t)r->index > s->n)
        abort(); /* a route of another generation: a bug, not a condition to carry on from */
    return &s->at[r->index - 1];
}

const sp_target *sp_route_next_target(sp_route_states *s, const sp_route *r)
{
    return &r->targets[state_of(s, r)->rr_next++ % r->ntargets];
}

sp_route_counter *sp_route_counter_of(sp_route_states *s, const sp_route *r)
{
    sp_route_state *st = state_of(s, r);
    if (!st->counter)
        st->counter = sp_route_limits_get(s->limits, r->name);
    return st->counter;
}
