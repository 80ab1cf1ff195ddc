/* listener: the listening sockets of one worker, one per (address, port).
 *
 * Every worker binds the same ports with SO_REUSEPORT, so the kernel spreads new
 * connections over the workers and no accept lock is shared. IPv6 sockets are v6-only so
 * "0.0.0.0" and "::" can both be bound. Each accepts through an sp_acceptor: out of file
 * descriptors, a listener pauses (counted in accept_pauses, logged once per pause). */
#ifndef SP_NET_LISTENER_H
#define SP_NET_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/acceptor.h"
#include "net/worker-t.h"

struct sp_listener {
    sp_acceptor acceptor;
    sp_worker *w;
    uint16_t port;
    char address[64];
    sp_ip local;                      /* the bound address, when not a wildcard */
    bool has_local;
    sp_listener *next;
    bool keep;                        /* mark used while diffing generations */
};

/* Creates a bound, non-blocking socket (SO_REUSEPORT when asked: the workers share route
 * ports, but nobody may share the admin port); returns the fd or -errno. */
int sp_bind_tcp(const char *address, uint16_t port, bool reuseport);

/* Opens listeners for every port of g on every listen address that this worker does not
 * listen on yet, and closes those no longer needed. Returns 0, or -errno of the first bind
 * that failed (with what in err); listeners opened so far stay open. */
int sp_listeners_sync(sp_worker *w, const sp_gen *g, char *err, size_t errlen);

/* Closes every listener of the worker. */
void sp_listeners_close_all(sp_worker *w);

#endif
