/* conn: one accepted client connection, from accept to the last close callback.
 *
 * One object, one explicit state (sp_conn_state), one owner (its worker) and exactly one
 * cleanup path: conn_close() stops everything, closes every handle, and the memory is
 * released only when the last close callback and the last outstanding request (DNS,
 * connect, write, shutdown) have come back. The worker's counters follow every state
 * change, so a leak shows as a non-zero active count.
 *
 * accept -> route (port, client address) -> connect (resolve, try candidates) ->
 * pipe (both ways, with backpressure) -> close (flush, then close handles) -> free. */
#ifndef SP_NET_CONN_H
#define SP_NET_CONN_H

#include <uv.h>

#include "pattern/ip_pattern.h"
#include "net/worker-t.h"

/* Starts the life of fd, a socket accepted from `peer` on `port` (closed with a RST when
 * a limit refuses it). `local` is the listener's own address when it is not a wildcard
 * (it saves a getsockname per connection), else NULL. */
void sp_conn_accept(sp_worker *w, int fd, const struct sockaddr *peer, uint16_t port, const sp_ip *local);

/* Ends a connection now (graceful stop deadline, worker shutdown). */
void sp_conn_abort(sp_conn *c, sp_end_reason reason);

/* The worker stops gracefully: each connection's application ends what only waits for
 * more (HTTP connections between requests close; a stopping worker drains only
 * exchanges in progress). */
void sp_conns_stop_idle(sp_worker *w);

/* Ends every live connection of the worker now. */
void sp_conns_abort_all(sp_worker *w, sp_end_reason reason);

/* A connection with no client for a background task (sp.timer, sp.every; its
 * application is started by the caller): not counted as a connection, ended when its
 * generation stops being current or the worker stops. `route` names it in logs and must
 * outlive it. NULL when out of memory. */
sp_conn *sp_conn_new_background(sp_worker *w, sp_gen *g, const sp_route *route);
/* Ends the background tasks of every generation but `keep` (NULL: all). */
void sp_conns_end_background(sp_worker *w, const sp_gen *keep);

#endif
