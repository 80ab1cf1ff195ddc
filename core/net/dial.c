/* dial: resolve, try each address in order, write the preamble (see dial.h). */
#include "net/dial.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* The part of the preamble the socket did not take at once; frees itself when written
 * (or cancelled by the socket's close), whoever owns the socket by then. */
typedef struct preamble_write {
    uv_write_t req;
    char data[];
} preamble_write;

void sp_dial_init(sp_dial *d, uv_loop_t *loop, const sp_dial_ops *ops, const sp_dial_keeper *keeper,
                  void *keeper_ctx, void *owner)
{
    memset(d, 0, sizeof *d);
    d->loop = loop;
    d->ops = ops;
    d->keeper = keeper;
    d->keeper_ctx = keeper_ctx;
    d->owner = owner;
}

bool sp_dial_literal(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    char buf[64];
    size_t len = strlen(host);
    if (len > 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof buf) { /* "[::1]" */
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = 0;
        host = buf;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return true;
    }
    return false;
}

/* Drops what one dial holds besides its handles: the preamble and the addresses. */
static void forget(sp_dial *d)
{
    d->active = false;
    free(d->preamble);
    d->preamble = NULL;
    d->have_literal = false;
    if (d->addrs) {
        uv_freeaddrinfo(d->addrs);
        d->addrs = d->next_addr = NULL;
    }
}

static void finish(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp)
{
    forget(d);
    d->ops->done(d, r, status, tcp);
}

static void on_preamble_written(uv_write_t *req, int status)
{
    free(req); /* a failure shows up to the owner as a read or write error */
}

/* The preamble goes first: tried at once, else queued (libuv keeps later writes behind
 * it). 0, or a libuv error. */
static int write_preamble(sp_dial *d, uv_tcp_t *tcp)
{
    uv_buf_t b = uv_buf_init(d->preamble, (unsigned)d->preamble_len);
    int n = uv_try_write((uv_stream_t *)tcp, &b, 1);
    if (n == (int)d->preamble_len)
        return 0;
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t sent = n > 0 ? (size_t)n : 0, rest = d->preamble_len - sent;
    preamble_write *w = malloc(sizeof *w + rest);
    if (!w)
        return UV_ENOMEM;
    memcpy(w->data, d->preamble + sent, rest);
    b = uv_buf_init(w->data, (unsigned)rest);
    int rc = uv_write(&w->req, (uv_stream_t *)tcp, &b, 1, on_preamble_written);
    if (rc != 0)
        free(w);
    return rc;
}

static void try_next(sp_dial *d);

static void on_connect(uv_connect_t *req, int status)
{
    sp_dial_attempt *a = req->data;
    sp_dial *d = a->d;
    if (d->attempt != a)
        return; /* abandoned (timed out or cancelled); its close is under way */
    d->attempt = NULL;
    if (status < 0) {
        d->last_status = status;
        if (d->ops->attempt_failed)
            d->ops->attempt_failed(d, status);
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)&a->tcp);
        try_next(d);
        return;
    }
    uv_tcp_nodelay(&a->tcp, 1);
    int rc = d->preamble_len ? write_preamble(d, &a->tcp) : 0;
    if (rc != 0) {
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)&a->tcp);
        finish(d, SP_DIAL_PREAMBLE_FAILED, rc, NULL);
        return;
    }
    finish(d, SP_DIAL_CONNECTED, 0, &a->tcp);
}

/* The next address to try: the literal, else the next IPv4 or IPv6 one resolved. */
static bool next_address(sp_dial *d, struct sockaddr_storage *ss)
{
    if (d->have_literal) {
        d->have_literal = false;
        *ss = d->literal;
        return true;
    }
    while (d->next_addr) {
        struct addrinfo *ai = d->next_addr;
        d->next_addr = ai->ai_next;
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
            memcpy(ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in *)ss)->sin_port = htons(d->port); /* same offset in v6 */
            return true;
        }
    }
    return false;
}

/* Starts the next attempt; an address whose connect fails at once is skipped. */
static void try_next(sp_dial *d)
{
    struct sockaddr_storage ss;
    while (next_address(d, &ss)) {
        sp_dial_attempt *a = calloc(1, sizeof *a);
        if (!a) {
            finish(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM, NULL);
            return;
        }
        a->d = d;
        uv_tcp_init(d->loop, &a->tcp);
        d->keeper->adopt(d->keeper_ctx, (uv_handle_t *)&a->tcp);
        a->req.data = a;
        d->attempt_started_ms = uv_now(d->loop);
        d->attempt_started_ns = uv_hrtime();
        int rc = uv_tcp_connect(&a->req, &a->tcp, (struct sockaddr *)&ss, on_connect);
        if (rc == 0) {
            d->attempt = a;
            if (d->ops->attempt_started)
                d->ops->attempt_started(d);
            return;
        }
        d->last_status = rc;
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)&a->tcp);
    }
    finish(d, SP_DIAL_CONNECT_FAILED, d->last_status, NULL);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sp_dial *d = req->data;
    d->resolving = false;
    if (!d->active) { /* cancelled: the keeper may free everything now, d included */
        if (res)
            uv_freeaddrinfo(res);
        d->keeper->lookup(d->keeper_ctx, false);
        return;
    }
    d->keeper->lookup(d->keeper_ctx, false);
    if (status < 0 || !res) {
        if (res)
            uv_freeaddrinfo(res);
        finish(d, SP_DIAL_RESOLVE_FAILED, status, NULL);
        return;
    }
    d->addrs = d->next_addr = res;
    try_next(d);
}

void sp_dial_start(sp_dial *d, const char *host, uint16_t port, uint64_t timeout_ms,
                   const void *preamble, size_t preamble_len)
{
    d->active = true;
    d->port = port;
    d->timeout_ms = timeout_ms;
    d->last_status = 0;
    d->preamble_len = 0;
    if (preamble_len) {
        d->preamble = malloc(preamble_len);
        if (!d->preamble) {
            finish(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM, NULL);
            return;
        }
        memcpy(d->preamble, preamble, preamble_len);
        d->preamble_len = preamble_len;
    }
    if (sp_dial_literal(host, port, &d->literal)) {
        d->have_literal = true;
        try_next(d);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    d->gai.data = d;
    int rc = uv_getaddrinfo(d->loop, &d->gai, on_resolved, host, NULL, &hints);
    if (rc != 0) {
        finish(d, SP_DIAL_RESOLVE_NOT_STARTED, rc, NULL);
        return;
    }
    d->resolving = true;
    d->keeper->lookup(d->keeper_ctx, true);
}

void sp_dial_cancel(sp_dial *d)
{
    if (!d->active)
        return;
    if (d->resolving)
        uv_cancel((uv_req_t *)&d->gai); /* its callback still comes, and tells the keeper */
    if (d->attempt) {
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)&d->attempt->tcp);
        d->attempt = NULL;
    }
    forget(d);
}

bool sp_dial_attempting(const sp_dial *d) { return d->attempt != NULL; }

uint64_t sp_dial_deadline(const sp_dial *d)
{
    return d->attempt && d->timeout_ms ? d->attempt_started_ms + d->timeout_ms : UINT64_MAX;
}

void sp_dial_timed_out(sp_dial *d)
{
    if (!d->attempt)
        return;
    d->keeper->close(d->keeper_ctx, (uv_handle_t *)&d->attempt->tcp);
    d->attempt = NULL;
    d->last_status = UV_ETIMEDOUT;
    try_next(d);
}
