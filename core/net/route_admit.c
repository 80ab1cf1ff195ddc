/* route_admit: a connection's admission to its route, shared by the session layer
 * (stream routes, when it acts on one) and an HTTP session (its first request's route),
 * which is why it sits in net/, below both. */
#include "net/conn_impl.h"
#include "net/route_limits.h"
#include "net/route_state.h"

/* The route's security: block list, allow list (block wins), then its limits; an
 * admitted connection is counted in the route's figures. */
bool sp_conn_admit_route(sp_conn *c, const sp_route *r, bool abort_on_refusal)
{
    sp_refused_reason why;
    sp_end_reason end;
    sp_ip_verdict ip = sp_ip_policy(&r->ip_allow_list, &r->ip_block_list, &c->info.client_ip);
    if (ip == SP_IP_BLOCKED) {
        why = SP_REFUSED_IP_BLOCKED;
        end = SP_END_IP_BLOCKED;
    } else if (ip == SP_IP_NOT_ALLOWED) {
        why = SP_REFUSED_IP_NOT_ALLOWED;
        end = SP_END_IP_NOT_ALLOWED;
    } else {
        sp_route_counter *rc = sp_route_counter_of(c->route_states, r);
        int v = rc ? sp_route_counter_admit(rc, &c->info.client_ip, r->max_connections,
                                            r->max_connections_per_ip, uv_now(&c->w->loop))
                   : 0;
        if (v == 0) {
            c->route_counter = rc;
            c->route_counted_per_ip = r->max_connections_per_ip > 0;
            return true;
        }
        why = v == 1 ? SP_REFUSED_ROUTE_MAX_CONNECTIONS : SP_REFUSED_ROUTE_MAX_CONNECTIONS_PER_IP;
        end = v == 1 ? SP_END_ROUTE_MAX_CONNECTIONS : SP_END_ROUTE_MAX_CONNECTIONS_PER_IP;
    }
    sp_counter_add(&c->w->counters.refused[why], 1);
    if (abort_on_refusal)
        sp_conn_abort(c, end);
    return false;
}
