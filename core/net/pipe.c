/* pipe: bytes both ways between client and target, plain or through TLS.
 *
 * Reads land in pooled 64 KiB buffers. A side whose TLS we terminate has its bytes fed
 * into its session and the plaintext read out (through the TLS pump, tls/stream.h); a
 * side that gets TLS from us (its handshake done by the dialer) has its plaintext
 * encrypted on the way. Writes are tried synchronously first and queued only
 * when the socket is full; a reader stops while its peer's queue is above the high-water
 * mark and resumes below the low-water mark, which bounds memory per connection. */
#include <stdlib.h>
#include <string.h>

#include "net/conn_impl.h"
#include "util/log.h"

typedef struct sp_write {
    uv_write_t req;
    sp_conn *c;
    sp_side *to;
    void *buf;
} sp_write;

static sp_side *peer_of(sp_conn *c, sp_side *s) { return s == &c->client ? &c->target : &c->client; }

void sp_pipe_stop_reading(sp_side *s)
{
    if (s->tcp && s->reading) {
        uv_read_stop((uv_stream_t *)s->tcp);
        s->reading = false;
    }
}

void sp_pipe_start_reading(sp_conn *c, sp_side *s)
{
    if (s->tcp && !s->reading && !s->eof &&
        uv_read_start((uv_stream_t *)s->tcp, sp_pipe_on_alloc, sp_pipe_on_read) == 0)
        s->reading = true;
}

void sp_pipe_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sp_conn *c = h->data;
    buf->base = sp_bufpool_get(&c->w->pool);
    buf->len = buf->base ? SP_READ_BUF_SIZE : 0;
}

sp_end_reason sp_pipe_error_reason(sp_conn *c, sp_side *s, int err)
{
    bool client = s == &c->client;
    if (err == UV_ECONNRESET || err == UV_EPIPE)
        return client ? SP_END_CLIENT_RESET : SP_END_TARGET_RESET;
    return client ? SP_END_CLIENT_ERROR : SP_END_TARGET_ERROR;
}

/* Can `to` take more bytes now? Before the target is ready, that is room in the early
 * queue; after, its socket queue below the high-water mark. */
static bool has_room(sp_conn *c, sp_side *to)
{
    if (sp_app_active(c))
        return true; /* the application buffers and pauses reads itself */
    if (to == &c->target && !c->target_ready)
        return c->nearly < SP_EARLY_BUFS;
    return to->queued <= SP_HIGH_WATER;
}

bool sp_pipe_resume(sp_conn *c, sp_side *s)
{
    sp_pipe_start_reading(c, s);
    if (s->tls.ssl && s->tls.established)
        return sp_pipe_tls_pump(c, s); /* plaintext may wait inside the session */
    return true;
}

static void on_write(uv_write_t *req, int status)
{
    sp_write *wr = (sp_write *)req;
    sp_conn *c = wr->c;
    sp_side *to = wr->to;
    sp_bufpool_put(&c->w->pool, wr->buf);
    free(wr);
    to->queued -= SP_READ_BUF_SIZE;
    if (status == UV_ECANCELED)
        return; /* the handle is closing; nothing more to do */
    if (status < 0) {
        sp_conn_abort(c, sp_pipe_error_reason(c, to, status));
        return;
    }
    c->last_activity_ms = uv_now(&c->w->loop);
    if (to->queued > SP_LOW_WATER)
        return;
    if (c->state == SP_STATE_PIPING)
        sp_pipe_resume(c, peer_of(c, to));
    else if (sp_app_active(c) && c->app->drained)
        c->app->drained(c, to);
}

void sp_side_count_written(sp_conn *c, sp_side *to, size_t len)
{
    to->bytes_written += len;
    sp_counter_add(to == &c->client ? &c->w->counters.bytes_to_clients : &c->w->counters.bytes_to_targets, len);
}

void sp_side_count_read(sp_conn *c, sp_side *from, size_t len)
{
    from->bytes_read += len;
    sp_counter_add(from == &c->client ? &c->w->counters.bytes_from_clients : &c->w->counters.bytes_from_targets,
                   (int64_t)len);
    c->last_activity_ms = uv_now(&c->w->loop);
}

bool sp_pipe_write(sp_conn *c, sp_side *to, void *buf, size_t len)
{
    if (!to->tcp || len == 0) {
        sp_bufpool_put(&c->w->pool, buf);
        return true;
    }
    sp_side_count_written(c, to, len);
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    /* Most writes complete at once: try that first and skip the request entirely. */
    if (to->queued == 0) {
        int n = uv_try_write((uv_stream_t *)to->tcp, &b, 1);
        if (n == (int)len) {
            sp_bufpool_put(&c->w->pool, buf);
            return true;
        }
        if (n > 0) {
            b.base += n;
            b.len -= (unsigned)n;
        } else if (n != UV_EAGAIN) {
            sp_bufpool_put(&c->w->pool, buf);
            sp_conn_abort(c, sp_pipe_error_reason(c, to, n));
            return false;
        }
    }
    sp_write *wr = malloc(sizeof *wr);
    if (!wr) {
        sp_bufpool_put(&c->w->pool, buf);
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return false;
    }
    wr->c = c;
    wr->to = to;
    wr->buf = buf;
    int rc = uv_write(&wr->req, (uv_stream_t *)to->tcp, &b, 1, on_write);
    if (rc != 0) {
        sp_bufpool_put(&c->w->pool, buf);
        free(wr);
        sp_conn_abort(c, sp_pipe_error_reason(c, to, rc));
        return false;
    }
    to->queued += SP_READ_BUF_SIZE;
    return true;
}

/* ---- the TLS pump's view of a side (tls/stream.h) ---- */

typedef struct pipe_tls_ctx {
    sp_conn *c;
    sp_side *s;
} pipe_tls_ctx;

static void *tls_get_buf(void *ctx, size_t *cap)
{
    pipe_tls_ctx *p = ctx;
    *cap = SP_READ_BUF_SIZE;
    return sp_bufpool_get(&p->c->w->pool);
}

static void tls_put_buf(void *ctx, void *buf) { sp_bufpool_put(&((pipe_tls_ctx *)ctx)->c->w->pool, buf); }

static int tls_send(void *ctx, void *buf, size_t len)
{
    pipe_tls_ctx *p = ctx;
    return sp_pipe_write(p->c, p->s, buf, len) ? 0 : -1; /* a failed write ended the connection */
}

static bool deliver(sp_conn *c, sp_side *to, void *buf, size_t len);

/* Plaintext out of a side's session: to the application, else to the peer. The
 * application's input returns nothing: whether the connection goes on is read after. */
static int tls_receive(void *ctx, void *buf, size_t len)
{
    pipe_tls_ctx *p = ctx;
    sp_conn *c = p->c;
    if (sp_app_active(c) && c->app->input)
        c->app->input(c, p->s, buf, len);
    else if (!deliver(c, peer_of(c, p->s), buf, len))
        return -1;
    return p->s->tcp && c->state != SP_STATE_CLOSING ? 0 : -1;
}

static bool tls_has_room(void *ctx)
{
    pipe_tls_ctx *p = ctx;
    return has_room(p->c, peer_of(p->c, p->s));
}

static const sp_tls_io pipe_tls_io = {
    .get_buf = tls_get_buf, .put_buf = tls_put_buf, .send = tls_send,
    .receive = tls_receive, .has_room = tls_has_room,
};

bool sp_pipe_flush_tls(sp_conn *c, sp_side *s)
{
    if (!s->tcp || !s->tls.ssl)
        return true;
    pipe_tls_ctx ctx = {c, s};
    int rc = sp_tls_flush(&s->tls, &pipe_tls_io, &ctx);
    if (rc == -2)
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
    return rc == 0;
}

bool sp_pipe_hold_early(sp_conn *c, void *buf, size_t len)
{
    if (c->nearly == SP_EARLY_BUFS)
        return false;
    c->early[c->nearly] = buf;
    c->early_len[c->nearly++] = len;
    return true;
}

/* Hands bytes to `to`: held while the target is not ready, encrypted when `to` speaks
 * TLS through us, else written as they are. Takes the buffer. */
static bool deliver(sp_conn *c, sp_side *to, void *buf, size_t len)
{
    if (to == &c->target && !c->target_ready) {
        if (!sp_pipe_hold_early(c, buf, len)) { /* callers check has_room first */
            sp_bufpool_put(&c->w->pool, buf);
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return false;
        }
        return true;
    }
    if (!to->tls.ssl)
        return sp_pipe_write(c, to, buf, len);
    int rc = sp_tls_write(&to->tls, buf, len);
    sp_bufpool_put(&c->w->pool, buf);
    if (rc != 0) {
        sp_conn_abort(c, SP_END_TLS_ERROR);
        return false;
    }
    return sp_pipe_flush_tls(c, to);
}

bool sp_pipe_send(sp_conn *c, sp_side *to, void *buf, size_t len) { return deliver(c, to, buf, len); }

bool sp_pipe_send_bytes(sp_conn *c, sp_side *to, const char *data, size_t len)
{
    if (c->state == SP_STATE_CLOSING)
        return false; /* a closing connection takes no new bytes */
    while (len > 0) {
        void *buf = sp_bufpool_get(&c->w->pool);
        if (!buf) {
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return false;
        }
        size_t n = len < SP_READ_BUF_SIZE ? len : SP_READ_BUF_SIZE;
        memcpy(buf, data, n);
        if (!deliver(c, to, buf, n))
            return false;
        data += n;
        len -= n;
    }
    return true;
}

/* Passes a FIN on to `to` once what is queued is written (half-open routes); a TLS side
 * gets its close_notify first. */
static void on_half_shutdown(uv_shutdown_t *req, int status)
{
    free(req); /* a failure shows up as a read or write error on the same socket */
}

static bool pass_fin(sp_conn *c, sp_side *to)
{
    if (to->shut)
        return true;
    if (to->tls.ssl) {
        sp_tls_shutdown(&to->tls);
        if (!sp_pipe_flush_tls(c, to))
            return false;
    }
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req && uv_shutdown(req, (uv_stream_t *)to->tcp, on_half_shutdown) == 0) {
        req->data = c;
        to->shut = true;
        return true;
    }
    free(req);
    sp_conn_close(c, to == &c->client ? SP_END_TARGET_CLOSED : SP_END_CLIENT_CLOSED);
    return false;
}

/* One side finished sending (FIN, or a TLS close_notify). true: the connection goes on
 * (half-open, or waiting for its target with bytes to deliver). */
static bool on_eof(sp_conn *c, sp_side *from)
{
    sp_side *to = peer_of(c, from);
    from->eof = true;
    sp_pipe_stop_reading(from);
    if (from->tls.ssl && !from->tls.established) {
        from->tls.failure = SP_TLSFAIL_EOF;
        sp_conn_tls_failed(c, from);
        return false;
    }
    if (sp_app_active(c) && c->app->side_ended) {
        c->app->side_ended(c, from, false, SP_END_CLIENT_CLOSED);
        return false;
    }
    if (c->state == SP_STATE_PROXY_HEADER) {
        sp_conn_proxy_header_failed(c, "closed before a complete header", SP_END_BAD_PROXY_HEADER);
        return false;
    }
    if (c->state == SP_STATE_SNIFFING) {
        sp_conn_abort(c, SP_END_CLIENT_CLOSED);
        return false;
    }
    if (c->state == SP_STATE_CONNECTING || c->state == SP_STATE_HANDSHAKE) {
        /* A client that leaves before the target is there and sent nothing is gone; one
         * that sent something and finished gets it delivered, then the FIN (half-open)
         * or a flushed close, once the target is ready. */
        if (c->nearly == 0 && !c->route->half_open) {
            sp_conn_abort(c, SP_END_CLIENT_CLOSED);
            return false;
        }
        return true;
    }
    if (c->route->half_open && !to->eof && to->tcp)
        return pass_fin(c, to);
    sp_conn_close(c, from == &c->client ? SP_END_CLIENT_CLOSED : SP_END_TARGET_CLOSED);
    return false;
}

/* The client's handshake completed (a target's is the dialer's, net/dial.c): the session
 * layer takes the connection on (a terminating route goes on to its HTTP session or its
 * target), and may end it. */
static void on_established(sp_conn *c, sp_side *s)
{
    sp_counter_add(&c->w->counters.tls_handshakes, 1);
    if (sp_tls_resumed(&s->tls))
        sp_counter_add(&c->w->counters.tls_resumed, 1);
    c->info.tls_version = sp_tls_version(&s->tls);
    unsigned len;
    const unsigned char *alpn = sp_tls_alpn(&s->tls, &len);
    if (alpn && len < sizeof c->alpn) {
        memcpy(c->alpn, alpn, len);
        c->alpn[len] = 0;
        c->info.alpn = c->alpn;
    }
    if (c->state == SP_STATE_HANDSHAKE)
        sp_conn_session()->handshake_done(c);
}

bool sp_pipe_tls_pump(sp_conn *c, sp_side *s)
{
    pipe_tls_ctx ctx = {c, s};
    for (;;) {
        /* the layer that took the connection on after the handshake may have ended it */
        if (s->tls.established && (!s->tcp || c->state == SP_STATE_CLOSING))
            return false;
        switch (sp_tls_pump(&s->tls, &pipe_tls_io, &ctx)) {
        case SP_TLS_PUMP_ESTABLISHED:
            on_established(c, s);
            continue; /* then the plaintext that came with the last flight */
        case SP_TLS_PUMP_FULL:
            sp_pipe_stop_reading(s); /* resumed, and pumped again, when the peer drains */
            return true;
        case SP_TLS_PUMP_HANDSHAKE_FAILED:
            sp_conn_tls_failed(c, s);
            return false;
        case SP_TLS_PUMP_FAILED:
            sp_conn_abort(c, SP_END_TLS_ERROR);
            return false;
        case SP_TLS_PUMP_OUT_OF_MEMORY:
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return false;
        case SP_TLS_PUMP_PEER_CLOSED:
            return s->eof || on_eof(c, s);
        case SP_TLS_PUMP_OWNER_ENDED:
            return false;
        default: /* handshaking, or drained */
            return true;
        }
    }
}

bool sp_pipe_tls_input(sp_conn *c, sp_side *from, const void *data, size_t len)
{
    if (sp_tls_feed(&from->tls, data, len) != 0) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return false;
    }
    return sp_pipe_tls_pump(c, from);
}

void sp_pipe_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sp_conn *c = stream->data;
    sp_side *from = (uv_tcp_t *)stream == c->client.tcp ? &c->client : &c->target;
    sp_side *to = peer_of(c, from);
    if (nread <= 0) {
        sp_bufpool_put(&c->w->pool, buf->base);
        if (nread == 0)
            return; /* EAGAIN */
        if (nread == UV_EOF)
            on_eof(c, from);
        else if (nread != UV_ENOBUFS && sp_app_active(c) && c->app->side_ended)
            c->app->side_ended(c, from, true, sp_pipe_error_reason(c, from, (int)nread));
        else if (nread == UV_ENOBUFS)
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        else if (from->tls.ssl && !from->tls.established) {
            from->tls.failure = SP_TLSFAIL_EOF;
            sp_conn_tls_failed(c, from);
        } else
            sp_conn_abort(c, sp_pipe_error_reason(c, from, (int)nread));
        return;
    }
    sp_side_count_read(c, from, (size_t)nread);

    if (c->state == SP_STATE_SNIFFING || c->state == SP_STATE_PROXY_HEADER) {
        sp_buf_append(&c->sniffed, buf->base, (size_t)nread);
        sp_bufpool_put(&c->w->pool, buf->base);
        if (c->state == SP_STATE_PROXY_HEADER)
            sp_conn_proxy_header_input(c);
        else
            sp_conn_session()->sniffed(c);
        return;
    }
    if (from->tls.ssl) {
        sp_pipe_tls_input(c, from, buf->base, (size_t)nread);
        sp_bufpool_put(&c->w->pool, buf->base);
        return;
    }
    if (sp_app_active(c) && c->app->input) {
        c->app->input(c, from, buf->base, (size_t)nread);
        return;
    }
    if (to->shut || (!to->tcp && to != &c->target)) { /* nowhere to send it: the peer is gone */
        sp_bufpool_put(&c->w->pool, buf->base);
        return;
    }
    if (deliver(c, to, buf->base, (size_t)nread) && !has_room(c, to))
        sp_pipe_stop_reading(from);
}

bool sp_pipe_start(sp_conn *c)
{
    if (c->app && c->app->target_ready) {
        c->app->target_ready(c);
        return false;
    }
    sp_conn_set_state(c, SP_STATE_PIPING);
    c->last_activity_ms = uv_now(&c->w->loop);
    int n = c->nearly;
    c->nearly = 0;
    bool open = true;
    for (int i = 0; i < n; i++) {
        if (open)
            open = deliver(c, &c->target, c->early[i], c->early_len[i]);
        else
            sp_bufpool_put(&c->w->pool, c->early[i]); /* a failed write closed the connection */
    }
    if (!open)
        return false;
    if (c->client.eof) { /* the client finished sending while we connected */
        if (!c->route->half_open) {
            sp_conn_close(c, SP_END_CLIENT_CLOSED); /* after the held bytes are flushed */
            return false;
        }
        if (!pass_fin(c, &c->target))
            return false;
    }
    if (!sp_pipe_resume(c, &c->client) || !sp_pipe_resume(c, &c->target))
        return false;
    sp_conn_arm_timer(c);
    return true;
}
