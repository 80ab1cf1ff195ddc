/* dial: resolve, try each address in order, write the preamble, run the upstream
 * handshake (see dial.h). */
#include "net/dial.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "pattern/domain_pattern.h"

/* Reads and writes of the handshake go through one buffer: a TLS record is at most
 * 16 KiB plus its overhead, and a flight larger than this simply takes several. */
#define TLS_BUF_SIZE (17 * 1024)

/* The part of a write the socket did not take at once; frees itself when written (or
 * cancelled by the socket's close), whoever owns the socket by then. */
typedef struct queued_write {
    uv_write_t req;
    char data[];
} queued_write;

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

/* Drops what one dial holds besides its handles and its TLS session: the preamble, the
 * addresses, the handshake's buffer. */
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
    free(d->tls_buf);
    d->tls_buf = NULL;
}

static void finish(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp)
{
    if (r != SP_DIAL_CONNECTED)
        sp_tls_free(&d->tls); /* a connected dial's session waits for sp_dial_take_tls */
    forget(d);
    d->result = r;
    d->status = status;
    d->ops->done(d, r, status, tcp);
}

static void on_queued_write(uv_write_t *req, int status)
{
    free(req); /* a failure shows up to the owner as a read or write error */
}

/* Writes in order: tried at once, else queued (libuv keeps later writes behind it).
 * 0, or a libuv error. */
static int write_now_or_queue(sp_dial *d, uv_tcp_t *tcp, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t sent = n > 0 ? (size_t)n : 0, rest = len - sent;
    if (rest) {
        queued_write *w = malloc(sizeof *w + rest);
        if (!w)
            return UV_ENOMEM;
        memcpy(w->data, data + sent, rest);
        b = uv_buf_init(w->data, (unsigned)rest);
        int rc = uv_write(&w->req, (uv_stream_t *)tcp, &b, 1, on_queued_write);
        if (rc != 0) {
            free(w);
            return rc;
        }
    }
    d->keeper->count(d->keeper_ctx, 0, len);
    return 0;
}

/* ---- the upstream handshake, through the TLS pump ---- */

static void *tls_get_buf(void *ctx, size_t *cap)
{
    sp_dial *d = ctx;
    *cap = TLS_BUF_SIZE;
    return d->tls_buf;
}

static void tls_put_buf(void *ctx, void *buf) {} /* the dial's one buffer stays its own */

static int tls_send(void *ctx, void *buf, size_t len)
{
    sp_dial *d = ctx;
    d->write_error = write_now_or_queue(d, d->handshaking, buf, len);
    return d->write_error ? -1 : 0;
}

static int tls_receive(void *ctx, void *buf, size_t len)
{
    return -1; /* never called: the dial stops at the end of the handshake */
}

static const sp_tls_io dial_tls_io = {
    .get_buf = tls_get_buf, .put_buf = tls_put_buf, .send = tls_send, .receive = tls_receive};

/* The handshake socket goes back to the keeper, and the dial fails. */
static void handshake_failed(sp_dial *d, sp_dial_result r, int status)
{
    d->tls_failure = d->tls.failure;
    d->keeper->close(d->keeper_ctx, (uv_handle_t *)d->handshaking);
    d->handshaking = NULL;
    finish(d, r, status, NULL);
}

static void handshake_step(sp_dial *d)
{
    switch (sp_tls_pump(&d->tls, &dial_tls_io, d)) {
    case SP_TLS_PUMP_HANDSHAKING:
        return;
    case SP_TLS_PUMP_ESTABLISHED: {
        uv_tcp_t *tcp = d->handshaking;
        uv_read_stop((uv_stream_t *)tcp); /* the owner reads with its own callbacks */
        d->handshaking = NULL;
        finish(d, SP_DIAL_CONNECTED, 0, tcp);
        return;
    }
    case SP_TLS_PUMP_OUT_OF_MEMORY:
        handshake_failed(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM);
        return;
    case SP_TLS_PUMP_OWNER_ENDED: /* a write to the socket failed */
        handshake_failed(d, SP_DIAL_TLS_FAILED, d->write_error);
        return;
    default:
        handshake_failed(d, SP_DIAL_TLS_FAILED, 0);
        return;
    }
}

static void on_tls_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sp_dial *d = h->data;
    buf->base = d->tls_buf;
    buf->len = TLS_BUF_SIZE;
}

static void on_tls_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    sp_dial *d = stream->data;
    if (n == 0)
        return;
    if (n < 0) { /* the server closed or reset before the handshake completed */
        d->tls.failure = SP_TLSFAIL_EOF;
        handshake_failed(d, SP_DIAL_TLS_FAILED, 0);
        return;
    }
    d->keeper->count(d->keeper_ctx, (size_t)n, 0);
    if (sp_tls_feed(&d->tls, buf->base, (size_t)n) != 0) {
        handshake_failed(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM);
        return;
    }
    handshake_step(d);
}

/* Connected: the ClientHello goes out and the handshake is read until it completes. */
static void start_handshake(sp_dial *d, uv_tcp_t *tcp)
{
    d->handshaking = tcp;
    tcp->data = d;
    d->tls_buf = malloc(TLS_BUF_SIZE);
    if (!d->tls_buf) {
        handshake_failed(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)tcp, on_tls_alloc, on_tls_read);
    if (rc != 0) {
        handshake_failed(d, SP_DIAL_TLS_NOT_STARTED, rc);
        return;
    }
    handshake_step(d);
}

/* ---- resolve and connect ---- */

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
    d->connect_ns = uv_hrtime() - d->attempt_started_ns;
    uv_tcp_nodelay(&a->tcp, 1);
    int rc = d->preamble_len ? write_now_or_queue(d, &a->tcp, d->preamble, d->preamble_len) : 0;
    if (rc != 0) {
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)&a->tcp);
        finish(d, SP_DIAL_PREAMBLE_FAILED, rc, NULL);
        return;
    }
    if (d->want_tls) {
        start_handshake(d, &a->tcp);
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
                   const void *preamble, size_t preamble_len, const sp_dial_tls *tls)
{
    d->active = true;
    d->port = port;
    d->timeout_ms = timeout_ms;
    d->last_status = 0;
    d->connect_ns = 0;
    d->preamble_len = 0;
    d->want_tls = tls != NULL;
    sp_tls_free(&d->tls); /* a session the last owner did not take */
    if (preamble_len) {
        d->preamble = malloc(preamble_len);
        if (!d->preamble) {
            finish(d, SP_DIAL_OUT_OF_MEMORY, UV_ENOMEM, NULL);
            return;
        }
        memcpy(d->preamble, preamble, preamble_len);
        d->preamble_len = preamble_len;
    }
    if (tls && sp_tls_init_client(&d->tls, tls->ctx, tls->sni, tls->verify_host) != 0) {
        finish(d, SP_DIAL_TLS_NOT_STARTED, UV_ENOMEM, NULL);
        return;
    }
    if (sp_dial_literal(host, port, &d->literal)) {
        d->have_literal = true;
        try_next(d);
        return;
    }
    if (sp_name_is_invalid(host)) { /* RFC 6761 6.4: answered here, never asked of a server */
        finish(d, SP_DIAL_RESOLVE_FAILED, UV_EAI_NONAME, NULL);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    d->gai.data = d;
    /* a cancelled lookup still outstanding holds the request: no second one on it */
    int rc = d->resolving ? UV_EBUSY : uv_getaddrinfo(d->loop, &d->gai, on_resolved, host, NULL, &hints);
    if (rc != 0) {
        finish(d, SP_DIAL_RESOLVE_NOT_STARTED, rc, NULL);
        return;
    }
    d->resolving = true;
    d->keeper->lookup(d->keeper_ctx, true);
}

void sp_dial_take_tls(sp_dial *d, sp_tls_stream *into)
{
    *into = d->tls;
    d->tls = (sp_tls_stream){0};
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
    if (d->handshaking) {
        d->keeper->close(d->keeper_ctx, (uv_handle_t *)d->handshaking);
        d->handshaking = NULL;
    }
    sp_tls_free(&d->tls);
    forget(d);
}

bool sp_dial_attempting(const sp_dial *d) { return d->attempt != NULL; }

uint64_t sp_dial_deadline(const sp_dial *d)
{
    bool in_flight = d->attempt || d->handshaking;
    return in_flight && d->timeout_ms ? d->attempt_started_ms + d->timeout_ms : UINT64_MAX;
}

void sp_dial_timed_out(sp_dial *d)
{
    if (d->handshaking) {
        d->tls.failure = SP_TLSFAIL_TIMEOUT;
        handshake_failed(d, SP_DIAL_TLS_FAILED, 0);
        return;
    }
    if (!d->attempt)
        return;
    d->keeper->close(d->keeper_ctx, (uv_handle_t *)&d->attempt->tcp);
    d->attempt = NULL;
    d->last_status = UV_ETIMEDOUT;
    try_next(d);
}
