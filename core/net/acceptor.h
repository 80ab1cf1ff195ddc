/* acceptor: takes connections off one listening socket, and pauses instead of spinning
 * when the process runs out of file descriptors.
 *
 * libuv's accept loop (uv_listen) retries a failing accept(2) without returning to the
 * event loop for as long as connections are pending. Its remedy for EMFILE, one spare
 * descriptor per loop closed to accept and drop what is pending, is lost for good once
 * another thread takes the freed slot; from then on the loop never ends, so the worker
 * never closes a connection (no descriptor ever frees) and never sees a stop request.
 * The acceptor therefore watches the socket's readiness itself (uv_poll), accepts at most
 * SP_ACCEPTS_PER_WAKEUP connections per wake-up, and when accept fails for want of
 * descriptors or memory stops watching for SP_ACCEPT_PAUSE_MS (nginx pauses its accept
 * events for 500 ms the same way). Clients wait in the kernel's queue meanwhile; none is
 * dropped. */
#ifndef SP_NET_ACCEPTOR_H
#define SP_NET_ACCEPTOR_H

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

#define SP_ACCEPTS_PER_WAKEUP 32   /* then the loop serves everything else once more */
#define SP_ACCEPT_PAUSE_MS 500

typedef struct sp_acceptor sp_acceptor;

typedef struct sp_acceptor_ops {
    /* A new connection: fd (non-blocking, close-on-exec) now belongs to the owner. */
    void (*accepted)(sp_acceptor *a, int fd, const struct sockaddr *peer);
    /* accept(2) failed with err (-errno). When paused, the acceptor now waits
     * SP_ACCEPT_PAUSE_MS (called once per pause); else only that pending connection
     * was lost (it was reset or failed before it could be taken). */
    void (*failed)(sp_acceptor *a, int err, bool paused);
} sp_acceptor_ops;

struct sp_acceptor {
    uv_poll_t poll;                   /* the socket's readiness, while accepting */
    uv_timer_t resume;                /* ends a pause */
    uv_tcp_t probe;                   /* see sp_acceptor_start */
    int fd;
    int open_handles;
    const sp_acceptor_ops *ops;
    void (*closed)(sp_acceptor *a);
    void *data;                       /* the owner's */
};

/* listen(2)s on fd, a bound socket, and starts accepting. Returns 0, or -errno with fd
 * still the caller's (and nothing to close). */
int sp_acceptor_start(sp_acceptor *a, uv_loop_t *loop, int fd, int backlog, const sp_acceptor_ops *ops,
                      void *data);

/* Stops accepting and closes the socket; `closed` runs once every handle has closed,
 * after which the memory may be freed. */
void sp_acceptor_close(sp_acceptor *a, void (*closed)(sp_acceptor *a));

#endif
