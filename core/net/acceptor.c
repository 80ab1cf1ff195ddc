#define _GNU_SOURCE /* accept4 */
#include "net/acceptor.h"

#include <errno.h>
#include <unistd.h>

/* Errors Linux's accept(2) passes on for one pending connection (reset, or a network
 * error, before it was taken): the next one may be fine. */
static bool lost_one_connection(int err)
{
    switch (err) {
    case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

static void on_readable(uv_poll_t *poll, int status, int events);

/* uv_poll_start fails only for an fd that another handle watches, which uv_poll_init
 * has already refused: its result is not checked. */
static void watch(sp_acceptor *a)
{
    uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

static void on_resume(uv_timer_t *t)
{
    watch(t->data);
}

/* Out of descriptors or memory (or the socket reports an error): an accept now would
 * fail the same way, so none is tried for a while. */
static void pause_accepting(sp_acceptor *a, int err)
{
    uv_poll_stop(&a->poll);
    uv_timer_start(&a->resume, on_resume, SP_ACCEPT_PAUSE_MS, 0);
    a->ops->failed(a, err, true);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
    sp_acceptor *a = poll->data;
    if (status < 0) { /* POLLERR: libuv has stopped watching */
        pause_accepting(a, status);
        return;
    }
    for (int i = 0; i < SP_ACCEPTS_PER_WAKEUP; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(a->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            a->ops->accepted(a, fd, (struct sockaddr *)&peer);
            if (uv_is_closing((uv_handle_t *)&a->poll))
                return; /* the owner closed us */
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if (err == EINTR)
            continue;
        if (!lost_one_connection(err)) {
            pause_accepting(a, -err);
            return;
        }
        a->ops->failed(a, -err, false);
    }
    /* more may be pending: the poll is level-triggered and reports them next round */
}

static void on_handle_closed(uv_handle_t *h)
{
    sp_acceptor *a = h->data;
    if (--a->open_handles == 0 && a->closed)
        a->closed(a);
}

int sp_acceptor_start(sp_acceptor *a, uv_loop_t *loop, int fd, int backlog, const sp_acceptor_ops *ops,
                      void *data)
{
    if (listen(fd, backlog) != 0)
        return -errno;
    int rc = uv_poll_init_socket(loop, &a->poll, fd);
    if (rc != 0)
        return rc;
    a->fd = fd;
    a->ops = ops;
    a->data = data;
    a->closed = NULL;
    a->poll.data = a->resume.data = a->probe.data = a;
    uv_timer_init(loop, &a->resume);
    /* libuv opens a spare descriptor per loop (for the EMFILE remedy of uv_listen, unused
     * here) when the loop's first stream is initialized. A stream made and closed now
     * has that happen at start, not at the first connection, so a worker's descriptor
     * count is settled once it listens. */
    uv_tcp_init(loop, &a->probe);
    a->open_handles = 3;
    uv_close((uv_handle_t *)&a->probe, on_handle_closed);
    watch(a);
    return 0;
}

void sp_acceptor_close(sp_acceptor *a, void (*closed)(sp_acceptor *a))
{
    a->closed = closed;
    uv_close((uv_handle_t *)&a->poll, on_handle_closed); /* stops watching the fd */
    close(a->fd);
    a->fd = -1;
    uv_close((uv_handle_t *)&a->resume, on_handle_closed);
}
