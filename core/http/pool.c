/* pool: idle upstream connections per worker (see pool.h). */
#include "http/pool.h"

#include <stdlib.h>
#include <string.h>

typedef struct sp_pooled {
    struct sp_pooled *prev, *next;
    sp_http_pool *pool;
    uv_tcp_t *tcp;
    sp_tls_stream tls;
    char *key;
    uint64_t expires_ms;
} sp_pooled;

struct sp_http_pool {
    uv_loop_t *loop;
    sp_pooled *head;          /* most recently added first */
    size_t n;
    uv_timer_t timer;         /* evicts expired entries */
    bool closing;
    int handles;              /* open handles: the timer and closing sockets */
};

static char scratch[16384]; /* what an idle server sends is discarded: one buffer will do */

static void maybe_free(sp_http_pool *p)
{
    if (p->closing && p->handles == 0)
        free(p);
}

static void on_closed(uv_handle_t *h)
{
    sp_http_pool *p = h->data;
    if (h != (uv_handle_t *)&p->timer)
        free(h);
    p->handles--;
    maybe_free(p);
}

static void unlink_entry(sp_pooled *e)
{
    sp_http_pool *p = e->pool;
    if (e->prev)
        e->prev->next = e->next;
    else
        p->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    p->n--;
}

static void evict(sp_pooled *e)
{
    sp_http_pool *p = e->pool;
    unlink_entry(e);
    e->tcp->data = p;
    uv_close((uv_handle_t *)e->tcp, on_closed);
    p->handles++;
    sp_tls_free(&e->tls);
    free(e->key);
    free(e);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = scratch;
    buf->len = sizeof scratch;
}

/* Anything from an idle server: a close, a reset, or bytes we never asked for. A TLS
 * session may get a ticket or a close_notify; either way the connection is not reused,
 * except for post-handshake messages, which yield no application bytes. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    sp_pooled *e = s->data;
    if (n == 0)
        return;
    if (n > 0 && e->tls.ssl) {
        char plain[256];
        if (sp_tls_feed(&e->tls, buf->base, (size_t)n) == 0 && sp_tls_read(&e->tls, plain, sizeof plain) == 0 &&
            !e->tls.peer_closed)
            return; /* a session ticket or key update: still usable */
    }
    evict(e);
}

static void on_timer(uv_timer_t *t)
{
    sp_http_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    sp_pooled *e = p->head, *next;
    for (; e; e = next) {
        next = e->next;
        if (e->expires_ms <= now)
            evict(e);
    }
}

sp_http_pool *sp_http_pool_new(uv_loop_t *loop)
{
    sp_http_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->handles = 1;
    uv_timer_start(&p->timer, on_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&p->timer); /* an idle pool does not keep a stopping loop alive */
    return p;
}

void sp_http_pool_close(sp_http_pool *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    while (p->head)
        evict(p->head);
    uv_close((uv_handle_t *)&p->timer, on_closed);
}

bool sp_http_pool_put(sp_http_pool *p, const char *key, uv_tcp_t *tcp, sp_tls_stream *tls, size_t max,
                      uint64_t idle_ms)
{
    if (!p || p->closing || max == 0)
        return false;
    size_t same = 0;
    for (sp_pooled *e = p->head; e; e = e->next)
        same += strcmp(e->key, key) == 0;
    if (same >= max)
        return false;
    sp_pooled *e = calloc(1, sizeof *e);
    char *k = strdup(key);
    if (!e || !k) {
        free(e);
        free(k);
        return false;
    }
    e->pool = p;
    e->tcp = tcp;
    e->key = k;
    if (tls) {
        e->tls = *tls;
        memset(tls, 0, sizeof *tls);
    }
    e->expires_ms = uv_now(p->loop) + (idle_ms ? idle_ms : 1);
    tcp->data = e;
    if (uv_read_start((uv_stream_t *)tcp, on_alloc, on_read) != 0) {
        sp_tls_free(&e->tls);
        free(e->key);
        free(e);
        if (tls)
            memset(tls, 0, sizeof *tls);
        tcp->data = p;
        uv_close((uv_handle_t *)tcp, on_closed);
        p->handles++;
        return true; /* taken (and closed) */
    }
    e->next = p->head;
    if (p->head)
        p->head->prev = e;
    p->head = e;
    p->n++;
    return true;
}

uv_tcp_t *sp_http_pool_take(sp_http_pool *p, const char *key, sp_tls_stream *tls)
{
    if (!p)
        return NULL;
    for (sp_pooled *e = p->head; e; e = e->next) {
        if (strcmp(e->key, key) != 0)
            continue;
        unlink_entry(e);
        uv_tcp_t *tcp = e->tcp;
        uv_read_stop((uv_stream_t *)tcp);
        *tls = e->tls;
        free(e->key);
        free(e);
        return tcp;
    }
    return NULL;
}

size_t sp_http_pool_size(const sp_http_pool *p) { return p ? p->n : 0; }
