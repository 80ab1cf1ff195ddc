#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "util/log.h"

#define LISTEN_BACKLOG 4096

int sp_bind_tcp(const char *address, uint16_t port, bool reuseport)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        family = v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        family = v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        return -EINVAL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static void on_accepted(sp_acceptor *a, int fd, const struct sockaddr *peer)
{
    sp_listener *l = a->data;
    sp_conn_accept(l->w, fd, peer, l->port, l->has_local ? &l->local : NULL);
}

static void on_accept_failed(sp_acceptor *a, int err, bool paused)
{
    sp_listener *l = a->data;
    if (!paused) { /* that client went away before we took it */
        sp_counter_add(&l->w->counters.refused[SP_REFUSED_ACCEPT_ERROR], 1);
        return;
    }
    sp_counter_add(&l->w->counters.accept_pauses, 1);
    sp_warn("worker %d: accept on %s port %u failed: %s; not accepting there for %d ms", l->w->id,
            l->address, l->port, uv_strerror(err), SP_ACCEPT_PAUSE_MS);
}

static const sp_acceptor_ops listener_ops = {.accepted = on_accepted, .failed = on_accept_failed};

static int listener_open(sp_worker *w, const char *address, uint16_t port, char *err, size_t errlen)
{
    int fd = sp_bind_tcp(address, port, true);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", address, port, strerror(-fd));
        return fd;
    }
    sp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->w = w;
    l->port = port;
    snprintf(l->address, sizeof l->address, "%s", address);
    static const sp_ip any4 = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0}}, any6 = {{0}};
    l->has_local = sp_ip_parse(address, &l->local) == 0 && memcmp(&l->local, &any4, sizeof any4) != 0 &&
                   memcmp(&l->local, &any6, sizeof any6) != 0;
    int rc = sp_acceptor_start(&l->acceptor, &w->loop, fd, LISTEN_BACKLOG, &listener_ops, l);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", address, port, uv_strerror(rc));
        close(fd);
        free(l);
        return rc;
    }
    l->next = w->listeners;
    w->listeners = l;
    sp_debug("worker %d: listening on %s port %u", w->id, address, port);
    return 0;
}

static void listener_free(sp_acceptor *a)
{
    free(a->data);
}

static void listener_close(sp_listener *l)
{
    sp_debug("worker %d: closing listener %s port %u", l->w->id, l->address, l->port);
    sp_acceptor_close(&l->acceptor, listener_free);
}

int sp_listeners_sync(sp_worker *w, const sp_gen *g, char *err, size_t errlen)
{
    for (sp_listener *l = w->listeners; l; l = l->next)
        l->keep = false;
    int first_error = 0;
    for (size_t a = 0; a < g->settings.nlisten_addresses; a++) {
        const char *addr = g->settings.listen_addresses[a];
        for (size_t p = 0; p < g->nports; p++) {
            uint16_t port = g->ports[p].port;
            sp_listener *found = NULL;
            for (sp_listener *l = w->listeners; l && !found; l = l->next)
                if (l->port == port && strcmp(l->address, addr) == 0)
                    found = l;
            if (found) {
                found->keep = true;
                continue;
            }
            char msg[256];
            int rc = listener_open(w, addr, port, msg, sizeof msg);
            if (rc == 0) {
                w->listeners->keep = true;
            } else {
                if (!first_error) {
                    first_error = rc;
                    snprintf(err, errlen, "%s", msg);
                }
            }
        }
    }
    sp_listener **pp = &w->listeners;
    while (*pp) {
        sp_listener *l = *pp;
        if (l->keep) {
            pp = &l->next;
        } else {
            *pp = l->next;
            listener_close(l);
        }
    }
    return first_error;
}

void sp_listeners_close_all(sp_worker *w)
{
    while (w->listeners) {
        sp_listener *l = w->listeners;
        w->listeners = l->next;
        listener_close(l);
    }
}
