#include "net/conn.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "net/target.h"
#include "route/router.h"
#include "util/log.h"

/* Backpressure: stop reading a side while more than this many buffer bytes wait to be
 * written to its peer; resume below the low-water mark. Counted in whole read buffers,
 * so the memory a connection can pin is bounded whatever the read sizes are. */
#define HIGH_WATER (4 * SP_READ_BUF_SIZE)
#define LOW_WATER (1 * SP_READ_BUF_SIZE)
/* Read buffers of client data held while the target is being connected. */
#define EARLY_BUFS (HIGH_WATER / SP_READ_BUF_SIZE)
/* How long a closing connection may spend flushing queued bytes to a peer. */
#define FLUSH_LIMIT_MS 10000

typedef struct sp_side {
    uv_tcp_t *tcp;            /* NULL when absent or handed to uv_close */
    bool reading, eof, shut;
    size_t queued;            /* buffer bytes waiting to be written to this side */
    uint64_t bytes_read;
} sp_side;

/* One connection attempt to one target address; owns its socket until it connects. */
typedef struct sp_attempt {
    uv_tcp_t tcp;
    uv_connect_t req;
    sp_conn *c;
} sp_attempt;

struct sp_conn {
    sp_conn *prev, *next;     /* the worker's list of live connections */
    sp_worker *w;
    sp_gen *gen;              /* the generation this connection started on (a reference) */
    const sp_route *route;
    uint64_t id;
    sp_conn_state state;
    sp_end_reason reason;
    bool ended;

    sp_side client, target;
    uv_timer_t timer;
    int handles;              /* handles whose close callback is still due */
    bool resolving;           /* a uv_getaddrinfo is outstanding */
    uv_getaddrinfo_t gai;

    /* Client bytes read before the target is connected (sent first once it is). Reading
     * the client while connecting is how a client that leaves early is noticed. */
    void *early[EARLY_BUFS];
    size_t early_len[EARLY_BUFS];
    int nearly;

    sp_target_choice dest;    /* the target being tried */
    size_t candidates_tried;
    struct addrinfo *addrs, *next_addr;
    sp_attempt *attempt;      /* the connect in flight, or NULL */

    sp_conn_info info;        /* addresses and names, for routing, Lua and logs */
    uint64_t started_ms, last_activity_ms, phase_started_ms;
};

typedef struct sp_write {
    uv_write_t req;
    sp_conn *c;
    sp_side *to;
    void *buf;
} sp_write;

static void on_handle_closed(uv_handle_t *h);
static void connect_next(sp_conn *c);
static void arm_timer(sp_conn *c);
static void on_timer(uv_timer_t *timer);

/* ---- state and cleanup ---- */

static void set_state(sp_conn *c, sp_conn_state s)
{
    sp_counter_add(&c->w->counters.by_state[c->state], -1);
    sp_counter_add(&c->w->counters.by_state[s], 1);
    c->state = s;
    c->phase_started_ms = uv_now(&c->w->loop);
}

static void maybe_free(sp_conn *c)
{
    if (c->handles > 0 || c->resolving)
        return;
    sp_worker *w = c->w;
    sp_counter_add(&w->counters.by_state[c->state], -1);
    sp_counter_add(&w->counters.ended[c->reason], 1);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->addrs)
        uv_freeaddrinfo(c->addrs);
    for (int i = 0; i < c->nearly; i++)
        sp_bufpool_put(&w->pool, c->early[i]);
    sp_target_choice_clear(&c->dest);
    sp_gen_unref(c->gen);
    atomic_fetch_sub(&w->process->active, 1);
    free(c);
    sp_worker_conn_gone(w);
}

static void close_handle(sp_conn *c, uv_handle_t *h)
{
    if (h && !uv_is_closing(h)) {
        h->data = c;
        uv_close(h, on_handle_closed);
    }
}

static void close_side(sp_conn *c, sp_side *s)
{
    if (s->tcp) {
        close_handle(c, (uv_handle_t *)s->tcp);
        s->tcp = NULL;
    }
}

static void log_end(sp_conn *c)
{
    if (!c->gen->settings.log_access || !sp_log_enabled(SP_LOG_INFO))
        return;
    char client[64];
    sp_ip_format(&c->info.client_ip, client, sizeof client);
    uint64_t ms = uv_now(&c->w->loop) - c->started_ms;
    sp_info("conn=%llu route=%s client=%s:%u port=%u target=%s%s%s in=%llu out=%llu duration_ms=%llu end=%s",
            (unsigned long long)c->id, c->route ? c->route->name : "-", client, c->info.client_port,
            c->info.server_port, c->dest.host ? c->dest.host : "-", c->dest.host ? ":" : "",
            c->dest.host ? c->dest.port_text : "", (unsigned long long)c->client.bytes_read,
            (unsigned long long)c->target.bytes_read, (unsigned long long)ms,
            sp_end_reason_name(c->reason));
}

static void record_end(sp_conn *c, sp_end_reason reason)
{
    if (c->ended)
        return;
    c->ended = true;
    c->reason = reason;
    log_end(c);
}

/* The one cleanup path: stop everything and close every handle now. Queued writes are
 * cancelled (their callbacks free their buffers). */
void sp_conn_abort(sp_conn *c, sp_end_reason reason)
{
    record_end(c, reason);
    if (c->state != SP_STATE_CLOSING)
        set_state(c, SP_STATE_CLOSING);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* the callback still comes; maybe_free waits for it */
    if (c->attempt) {
        close_handle(c, (uv_handle_t *)&c->attempt->tcp);
        c->attempt = NULL;
    }
    close_side(c, &c->client);
    close_side(c, &c->target);
    close_handle(c, (uv_handle_t *)&c->timer);
}

void sp_conns_abort_all(sp_worker *w, sp_end_reason reason)
{
    for (sp_conn *c = w->conns; c; c = c->next)
        sp_conn_abort(c, reason); /* frees nothing synchronously: close callbacks come later */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    sp_conn *c = req->data;
    uv_tcp_t *tcp = (uv_tcp_t *)req->handle;
    free(req);
    /* The side is flushed (or failed): close it, and finish once both are closed. */
    if (c->client.tcp == tcp)
        close_side(c, &c->client);
    else if (c->target.tcp == tcp)
        close_side(c, &c->target);
    if (!c->client.tcp && !c->target.tcp)
        close_handle(c, (uv_handle_t *)&c->timer);
}

static void on_half_shutdown(uv_shutdown_t *req, int status)
{
    free(req); /* a failure shows up as a read or write error on the same socket */
}

/* Ends a connection after flushing what is already queued to each side (bounded by
 * FLUSH_LIMIT_MS); a side with nothing queued is closed at once. */
static void conn_close(sp_conn *c, sp_end_reason reason)
{
    if (c->state == SP_STATE_CLOSING) {
        record_end(c, reason);
        return;
    }
    record_end(c, reason);
    set_state(c, SP_STATE_CLOSING);
    sp_side *sides[2] = {&c->client, &c->target};
    for (int i = 0; i < 2; i++) {
        sp_side *s = sides[i];
        if (!s->tcp)
            continue;
        uv_read_stop((uv_stream_t *)s->tcp);
        s->reading = false;
        uv_shutdown_t *req = s->queued && !s->shut ? malloc(sizeof *req) : NULL;
        if (req && uv_shutdown(req, (uv_stream_t *)s->tcp, on_shutdown) == 0) {
            req->data = c;
            s->shut = true;
        } else {
            free(req);
            close_side(c, s);
        }
    }
    if (!c->client.tcp && !c->target.tcp)
        close_handle(c, (uv_handle_t *)&c->timer);
    else
        arm_timer(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    sp_conn *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        free(h); /* client sockets and attempts are separate allocations; tcp comes first */
    c->handles--;
    maybe_free(c);
}

/* ---- timers ---- */

static uint64_t stream_inactivity(const sp_conn *c)
{
    return sp_settings_stream_inactivity(&c->gen->settings);
}

/* One timer per connection, armed for the nearest deadline of the current state.
 * Activity does not re-arm it: when it fires early relative to the latest activity it is
 * simply armed again for the remainder, which keeps the hot path free of timer calls. */
static void arm_timer(sp_conn *c)
{
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t now = uv_now(&c->w->loop), due = UINT64_MAX;
    switch (c->state) {
    case SP_STATE_CONNECTING:
        if (t->connect)
            due = c->phase_started_ms + t->connect;
        break;
    case SP_STATE_SNIFFING:
        if (t->initial_data)
            due = c->phase_started_ms + t->initial_data;
        break;
    case SP_STATE_PIPING:
        if (stream_inactivity(c))
            due = c->last_activity_ms + stream_inactivity(c);
        if (t->max_lifetime && c->started_ms + t->max_lifetime < due)
            due = c->started_ms + t->max_lifetime;
        break;
    case SP_STATE_CLOSING:
        due = c->phase_started_ms + FLUSH_LIMIT_MS;
        break;
    default:
        break;
    }
    if (due == UINT64_MAX)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *timer)
{
    sp_conn *c = timer->data;
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t now = uv_now(&c->w->loop);
    switch (c->state) {
    case SP_STATE_CONNECTING:
        if (c->attempt) { /* this attempt took too long: try the next address or target */
            sp_debug("conn=%llu connect to %s:%s timed out", (unsigned long long)c->id,
                     c->dest.host, c->dest.port_text);
            close_handle(c, (uv_handle_t *)&c->attempt->tcp);
            c->attempt = NULL;
            c->dest.last_error = SP_END_CONNECT_TIMEOUT;
            connect_next(c);
        }
        return;
    case SP_STATE_SNIFFING:
        sp_conn_abort(c, SP_END_INITIAL_DATA_TIMEOUT);
        return;
    case SP_STATE_PIPING:
        if (t->max_lifetime && now >= c->started_ms + t->max_lifetime) {
            sp_conn_abort(c, SP_END_MAX_LIFETIME);
            return;
        }
        if (stream_inactivity(c) && now >= c->last_activity_ms + stream_inactivity(c)) {
            sp_conn_abort(c, SP_END_INACTIVITY_TIMEOUT);
            return;
        }
        arm_timer(c);
        return;
    case SP_STATE_CLOSING:
        sp_conn_abort(c, c->reason);
        return;
    default:
        return;
    }
}

/* ---- the pipe ---- */

static sp_side *peer_of(sp_conn *c, sp_side *s) { return s == &c->client ? &c->target : &c->client; }

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sp_conn *c = h->data;
    buf->base = sp_bufpool_get(&c->w->pool);
    buf->len = buf->base ? SP_READ_BUF_SIZE : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void start_reading(sp_conn *c, sp_side *s)
{
    if (s->tcp && !s->reading && !s->eof && uv_read_start((uv_stream_t *)s->tcp, on_alloc, on_read) == 0)
        s->reading = true;
}

static void stop_reading(sp_side *s)
{
    if (s->tcp && s->reading) {
        uv_read_stop((uv_stream_t *)s->tcp);
        s->reading = false;
    }
}

static sp_end_reason error_reason(sp_conn *c, sp_side *s, int err)
{
    bool client = s == &c->client;
    if (err == UV_ECONNRESET || err == UV_EPIPE)
        return client ? SP_END_CLIENT_RESET : SP_END_TARGET_RESET;
    return client ? SP_END_CLIENT_ERROR : SP_END_TARGET_ERROR;
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
        sp_conn_abort(c, error_reason(c, to, status));
        return;
    }
    c->last_activity_ms = uv_now(&c->w->loop);
    if (c->state == SP_STATE_PIPING && to->queued <= LOW_WATER)
        start_reading(c, peer_of(c, to));
}

/* Sends buf (a pool buffer holding len bytes) to side `to`; takes the buffer. */
static void send_to(sp_conn *c, sp_side *to, void *buf, size_t len)
{
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    /* Most writes complete at once: try that first and skip the request entirely. */
    if (to->queued == 0) {
        int n = uv_try_write((uv_stream_t *)to->tcp, &b, 1);
        if (n == (int)len) {
            sp_bufpool_put(&c->w->pool, buf);
            return;
        }
        if (n > 0) {
            b.base += n;
            b.len -= (unsigned)n;
        } else if (n != UV_EAGAIN) {
            sp_bufpool_put(&c->w->pool, buf);
            sp_conn_abort(c, error_reason(c, to, n));
            return;
        }
    }
    sp_write *wr = malloc(sizeof *wr);
    if (!wr) {
        sp_bufpool_put(&c->w->pool, buf);
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    wr->c = c;
    wr->to = to;
    wr->buf = buf;
    int rc = uv_write(&wr->req, (uv_stream_t *)to->tcp, &b, 1, on_write);
    if (rc != 0) {
        sp_bufpool_put(&c->w->pool, buf);
        free(wr);
        sp_conn_abort(c, error_reason(c, to, rc));
        return;
    }
    to->queued += SP_READ_BUF_SIZE;
}

/* Passes a FIN on to `to` once what is queued is written (half-open routes), or ends the
 * connection if that is impossible. */
static void pass_fin(sp_conn *c, sp_side *to)
{
    if (to->shut)
        return;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req && uv_shutdown(req, (uv_stream_t *)to->tcp, on_half_shutdown) == 0) {
        req->data = c;
        to->shut = true;
        return;
    }
    free(req);
    conn_close(c, to == &c->client ? SP_END_TARGET_CLOSED : SP_END_CLIENT_CLOSED);
}

/* One side sent its FIN. */
static void on_eof(sp_conn *c, sp_side *from)
{
    sp_side *to = peer_of(c, from);
    from->eof = true;
    stop_reading(from);
    if (c->state == SP_STATE_CONNECTING) {
        if (!c->route->half_open) /* gone before the target answered */
            sp_conn_abort(c, SP_END_CLIENT_CLOSED);
        return; /* half-open: the FIN follows the early bytes once connected */
    }
    if (c->route->half_open && !to->eof && to->tcp) {
        pass_fin(c, to);
        return;
    }
    conn_close(c, from == &c->client ? SP_END_CLIENT_CLOSED : SP_END_TARGET_CLOSED);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sp_conn *c = stream->data;
    sp_side *from = (uv_tcp_t *)stream == c->client.tcp ? &c->client : &c->target;
    sp_side *to = peer_of(c, from);
    if (nread > 0 && !to->tcp && c->state == SP_STATE_CONNECTING) {
        from->bytes_read += (uint64_t)nread;
        sp_counter_add(&c->w->counters.bytes_from_clients, nread);
        c->early[c->nearly] = buf->base;
        c->early_len[c->nearly++] = (size_t)nread;
        if (c->nearly == EARLY_BUFS)
            stop_reading(from); /* the kernel holds the rest until the target is there */
        return;
    }
    if (nread > 0) {
        from->bytes_read += (uint64_t)nread;
        sp_counter_add(from == &c->client ? &c->w->counters.bytes_from_clients
                                          : &c->w->counters.bytes_from_targets, nread);
        c->last_activity_ms = uv_now(&c->w->loop);
        if (!to->tcp || to->shut) { /* nowhere to send it: the peer is gone */
            sp_bufpool_put(&c->w->pool, buf->base);
            return;
        }
        send_to(c, to, buf->base, (size_t)nread);
        if (to->queued > HIGH_WATER)
            stop_reading(from);
        return;
    }
    if (buf->base)
        sp_bufpool_put(&c->w->pool, buf->base);
    if (nread == 0)
        return; /* EAGAIN */
    if (nread == UV_ENOBUFS) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    if (nread != UV_EOF) {
        sp_conn_abort(c, error_reason(c, from, (int)nread));
        return;
    }
    on_eof(c, from);
}

static void start_piping(sp_conn *c)
{
    set_state(c, SP_STATE_PIPING);
    c->last_activity_ms = uv_now(&c->w->loop);
    int n = c->nearly;
    c->nearly = 0;
    for (int i = 0; i < n; i++) {
        if (c->state == SP_STATE_PIPING)
            send_to(c, &c->target, c->early[i], c->early_len[i]);
        else
            sp_bufpool_put(&c->w->pool, c->early[i]); /* a failed write closed the connection */
    }
    if (c->state != SP_STATE_PIPING)
        return;
    if (c->client.eof) { /* half-open client that finished sending while we connected */
        pass_fin(c, &c->target);
        if (c->state != SP_STATE_PIPING)
            return;
    }
    start_reading(c, &c->client);
    start_reading(c, &c->target);
    arm_timer(c);
}

/* ---- connecting ---- */

static sp_end_reason connect_reason(int status)
{
    switch (status) {
    case UV_ECONNREFUSED: return SP_END_CONNECT_REFUSED;
    case UV_ETIMEDOUT: return SP_END_CONNECT_TIMEOUT;
    default: return SP_END_CONNECT_ERROR;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    sp_attempt *a = req->data;
    sp_conn *c = a->c;
    if (c->attempt != a)
        return; /* abandoned (timed out or the connection is closing); its close is under way */
    c->attempt = NULL;
    if (status < 0) {
        sp_debug("conn=%llu connect to %s:%s failed: %s", (unsigned long long)c->id, c->dest.host,
                 c->dest.port_text, uv_strerror(status));
        c->dest.last_error = connect_reason(status);
        close_handle(c, (uv_handle_t *)&a->tcp);
        connect_next(c);
        return;
    }
    c->target.tcp = &a->tcp; /* the attempt's memory now belongs to the target side */
    uv_tcp_nodelay(c->target.tcp, 1);
    start_piping(c);
}

static void try_address(sp_conn *c, const struct sockaddr *sa)
{
    sp_attempt *a = calloc(1, sizeof *a);
    if (!a) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    a->c = c;
    uv_tcp_init(&c->w->loop, &a->tcp);
    a->tcp.data = c;
    c->handles++;
    a->req.data = a;
    c->phase_started_ms = uv_now(&c->w->loop);
    int rc = uv_tcp_connect(&a->req, &a->tcp, sa, on_connect);
    if (rc != 0) {
        c->dest.last_error = connect_reason(rc);
        close_handle(c, (uv_handle_t *)&a->tcp);
        connect_next(c);
        return;
    }
    c->attempt = a;
    arm_timer(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sp_conn *c = req->data;
    c->resolving = false;
    if (c->state == SP_STATE_CLOSING) {
        if (res)
            uv_freeaddrinfo(res);
        maybe_free(c);
        return;
    }
    if (status < 0 || !res) {
        sp_warn("conn=%llu route=%s: cannot resolve target %s: %s", (unsigned long long)c->id,
                c->route->name, c->dest.host, uv_strerror(status));
        if (res)
            uv_freeaddrinfo(res);
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        connect_next(c);
        return;
    }
    c->addrs = res;
    c->next_addr = res;
    connect_next(c);
}

/* Tries the next address of the current target, else the next candidate target, else
 * gives up with the reason of the last failure. */
static void connect_next(sp_conn *c)
{
    while (c->next_addr) {
        struct addrinfo *ai = c->next_addr;
        c->next_addr = ai->ai_next;
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
            struct sockaddr_storage ss;
            memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in *)&ss)->sin_port = htons(c->dest.port); /* same offset in v6 */
            try_address(c, (struct sockaddr *)&ss);
            return;
        }
    }
    if (c->addrs) {
        uv_freeaddrinfo(c->addrs);
        c->addrs = c->next_addr = NULL;
    }
    const sp_route *r = c->route;
    if (c->candidates_tried == r->ntargets) {
        sp_end_reason why = c->dest.last_error;
        sp_info("conn=%llu route=%s: no target reachable, last %s:%s (%s)", (unsigned long long)c->id,
                r->name, c->dest.host ? c->dest.host : "-", c->dest.port_text, sp_end_reason_name(why));
        sp_conn_abort(c, why);
        return;
    }
    sp_end_reason last = c->dest.last_error;
    const sp_target *t = &r->targets[(((sp_route *)r)->rr_next++) % r->ntargets];
    c->candidates_tried++;
    sp_target_choice_clear(&c->dest);
    c->dest.last_error = last;
    char err[512];
    if (sp_target_choose(c->gen, t, &c->info, &c->dest, err, sizeof err) != 0) {
        sp_error("conn=%llu route=%s: %s", (unsigned long long)c->id, r->name, err);
        sp_conn_abort(c, SP_END_LUA_ERROR);
        return;
    }
    struct sockaddr_storage ss;
    if (sp_target_literal(&c->dest, &ss)) {
        try_address(c, (struct sockaddr *)&ss);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    int rc = uv_getaddrinfo(&c->w->loop, &c->gai, on_resolved, c->dest.host, NULL, &hints);
    if (rc != 0) {
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        connect_next(c);
        return;
    }
    c->resolving = true;
}

/* ---- accept and route ---- */

static void refuse(sp_worker *w, uv_stream_t *server, sp_refused_reason why)
{
    uv_tcp_t *tmp = malloc(sizeof *tmp);
    if (!tmp)
        return;
    uv_tcp_init(&w->loop, tmp);
    if (uv_accept(server, (uv_stream_t *)tmp) == 0) {
        /* RST rather than FIN: the client learns at once that it was not served */
        uv_tcp_close_reset(tmp, (uv_close_cb)free);
    } else {
        uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
    }
    sp_counter_add(&w->counters.refused[why], 1);
}

static void fill_info(sp_conn_info *info, uv_tcp_t *tcp, uint16_t port, uint64_t id)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    info->id = id;
    info->server_port = port;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0)
        sp_ip_from_sockaddr((struct sockaddr *)&ss, &info->client_ip, &info->client_port);
    len = sizeof ss;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) == 0)
        sp_ip_from_sockaddr((struct sockaddr *)&ss, &info->server_ip, NULL);
}

void sp_conn_accept(sp_worker *w, uv_stream_t *server, uint16_t port)
{
    sp_gen *g = w->gen;
    uint64_t max = g->settings.max_connections;
    if (max && atomic_load(&w->process->active) >= max) {
        refuse(w, server, SP_REFUSED_MAX_CONNECTIONS);
        return;
    }
    sp_conn *c = calloc(1, sizeof *c);
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (!c || !tcp) {
        free(c);
        free(tcp);
        refuse(w, server, SP_REFUSED_ACCEPT_ERROR);
        return;
    }
    uv_tcp_init(&w->loop, tcp);
    tcp->data = c;
    if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
        uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
        free(c);
        sp_counter_add(&w->counters.refused[SP_REFUSED_ACCEPT_ERROR], 1);
        return;
    }
    atomic_fetch_add(&w->process->active, 1);
    c->w = w;
    c->gen = g;
    sp_gen_ref(g);
    c->id = atomic_fetch_add(&w->process->next_conn_id, 1) + 1;
    c->client.tcp = tcp;
    c->handles = 2; /* client socket and timer */
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->started_ms = c->last_activity_ms = c->phase_started_ms = uv_now(&w->loop);
    c->state = SP_STATE_ACCEPTED;
    c->dest.last_error = SP_END_CONNECT_ERROR;
    sp_counter_add(&w->counters.by_state[SP_STATE_ACCEPTED], 1);
    sp_counter_add(&w->counters.total, 1);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;

    fill_info(&c->info, tcp, port, c->id);
    uv_tcp_nodelay(tcp, 1);

    const sp_route *r = sp_route_select(g, port, &c->info);
    if (!r) {
        sp_info("conn=%llu port=%u: no route matched, closing", (unsigned long long)c->id, port);
        sp_conn_abort(c, SP_END_NO_ROUTE);
        return;
    }
    c->route = r;
    c->info.route_name = r->name;
    if (r->action == SP_ACTION_BLOCK) {
        sp_conn_abort(c, SP_END_BLOCKED);
        return;
    }
    set_state(c, SP_STATE_CONNECTING);
    start_reading(c, &c->client);
    connect_next(c);
}
