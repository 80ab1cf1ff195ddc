/* conn: accept and a trusted proxy's PROXY header, then the session layer above
 * (net/app.h) decides; the timers, and the one cleanup path. */
#include "net/conn_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/ip_table.h"
#include "net/route_limits.h"
#include "proto/proxy_protocol.h"
#include "util/access_log.h"
#include "util/hostport.h"
#include "util/log.h"

static void on_handle_closed(uv_handle_t *h);
static void on_timer(uv_timer_t *timer);

static const sp_session_hooks *session; /* set once at startup, read by every worker */

void sp_conn_install_session(const sp_session_hooks *hooks) { session = hooks; }

/* ---- state and cleanup ---- */

void sp_conn_set_state(sp_conn *c, sp_conn_state s)
{
    if (!c->background) {
        sp_counter_add(&c->w->counters.by_state[c->state], -1);
        sp_counter_add(&c->w->counters.by_state[s], 1);
    }
    c->state = s;
    c->phase_started_ms = uv_now(&c->w->loop);
}

void sp_conn_release(sp_conn *c)
{
    if (c->handles > 0 || c->lookups > 0)
        return;
    sp_worker *w = c->w;
    if (!c->background) {
        sp_counter_add(&w->counters.by_state[c->state], -1);
        sp_counter_add(&w->counters.ended[c->reason], 1);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    for (int i = 0; i < c->nearly; i++)
        sp_bufpool_put(&w->pool, c->early[i]);
    sp_tls_free(&c->client.tls);
    sp_tls_free(&c->target.tls);
    sp_buf_free(&c->sniffed);
    sp_target_choice_clear(&c->dest);
    if (c->app)
        c->app->release(c); /* before the generation: a Lua task holds references in its state */
    if (c->ip_admitted)
        sp_ip_table_release(w->process->ips, &c->info.client_ip, uv_now(&w->loop));
    if (c->route_counter)
        sp_route_counter_release(c->route_counter, &c->info.client_ip, c->route_counted_per_ip,
                                 c->client.bytes_read, c->target.bytes_read, uv_now(&w->loop));
    sp_route_states_unref(c->route_states);
    sp_gen_unref(c->gen);
    bool counted = !c->background;
    free(c);
    if (counted) {
        atomic_fetch_sub(&w->process->active, 1);
        w->nconns--;
        if (w->conn_gone)
            w->conn_gone(w);
    }
}

void sp_conn_close_handle(sp_conn *c, uv_handle_t *h)
{
    if (h && !uv_is_closing(h)) {
        h->data = c;
        uv_close(h, on_handle_closed);
    }
}

static void keep_dial_handle(void *ctx, uv_handle_t *h)
{
    sp_conn *c = ctx;
    c->handles++;
}

static void close_dial_handle(void *ctx, uv_handle_t *h) { sp_conn_close_handle(ctx, h); }

static void keep_dial_lookup(void *ctx, bool started)
{
    sp_conn *c = ctx;
    if (started) {
        c->lookups++;
        return;
    }
    c->lookups--;
    if (c->state == SP_STATE_CLOSING)
        sp_conn_release(c); /* it may have waited for this lookup */
}

/* A dial's bytes (a PROXY header, a handshake) are the target side's. */
static void count_dial_bytes(void *ctx, size_t read, size_t written)
{
    sp_conn *c = ctx;
    if (read)
        sp_side_count_read(c, &c->target, read);
    if (written)
        sp_side_count_written(c, &c->target, written);
}

const sp_dial_keeper sp_conn_dial_keeper = {
    .adopt = keep_dial_handle, .close = close_dial_handle,
    .lookup = keep_dial_lookup, .count = count_dial_bytes,
};

static void close_side(sp_conn *c, sp_side *s)
{
    if (s->tcp) {
        sp_conn_close_handle(c, (uv_handle_t *)s->tcp);
        s->tcp = NULL;
    }
}

static void log_end(sp_conn *c)
{
    if (!c->gen->settings.log_access || c->background)
        return;
    char client[SP_IP_STRLEN], target[300], time[32];
    sp_ip_format(&c->info.client_ip, client, sizeof client);
    if (c->dest.host)
        sp_hostport_format(target, sizeof target, c->dest.host, c->dest.port_text);
    sp_access_entry e = {
        .id = c->id, .route = c->route ? c->route->name : NULL, .client_ip = client,
        .client_port = c->info.client_port, .via = c->info.proxied_by, .port = c->info.server_port,
        .sni = c->info.domain_len ? c->info.domain : NULL, .tls_version = c->info.tls_version,
        .target = c->dest.host ? target : NULL, .bytes_in = c->client.bytes_read,
        .bytes_out = c->client.bytes_written, .duration_ms = uv_now(&c->w->loop) - c->started_ms,
        .end = sp_end_reason_name(c->reason),
    };
    sp_buf line;
    sp_buf_init(&line);
    sp_log_time(time);
    sp_access_format(&line, &e, time, sp_log_json());
    sp_access_log_write(&line);
    sp_buf_free(&line);
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
 * cancelled (their callbacks free their buffers); memory goes in sp_conn_release once
 * the last close callback and any DNS lookup have come back. */
void sp_conn_abort(sp_conn *c, sp_end_reason reason)
{
    record_end(c, reason);
    if (c->state != SP_STATE_CLOSING)
        sp_conn_set_state(c, SP_STATE_CLOSING);
    sp_dial_cancel(&c->dial);
    if (c->app && c->app->abort)
        c->app->abort(c);
    close_side(c, &c->client);
    close_side(c, &c->target);
    sp_conn_close_handle(c, (uv_handle_t *)&c->timer);
}

void sp_conns_abort_all(sp_worker *w, sp_end_reason reason)
{
    for (sp_conn *c = w->conns; c; c = c->next)
        sp_conn_abort(c, reason); /* frees nothing synchronously: close callbacks come later */
}

void sp_conn_tls_failed(sp_conn *c, sp_side *s)
{
    bool client = s == &c->client;
    sp_tls_failure f = s->tls.failure;
    sp_counter_add(client ? &c->w->counters.tls_failures[f] : &c->w->counters.upstream_tls_failures[f], 1);
    sp_debug("conn=%llu route=%s: %s TLS handshake failed: %s", (unsigned long long)c->id,
             c->route ? c->route->name : "-", client ? "client" : "upstream", sp_tls_failure_name(f));
    if (!client && c->app && c->app->target_failed) {
        c->app->target_failed(c, SP_END_UPSTREAM_TLS_FAILED); /* HTTP: 502 for this request */
        return;
    }
    sp_conn_abort(c, client ? SP_END_TLS_HANDSHAKE_FAILED : SP_END_UPSTREAM_TLS_FAILED);
}

static void finish_if_closed(sp_conn *c)
{
    if (!c->client.tcp && !c->target.tcp)
        sp_conn_close_handle(c, (uv_handle_t *)&c->timer);
}

static void on_linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sp_conn *c = h->data;
    buf->base = sp_bufpool_get(&c->w->pool);
    buf->len = buf->base ? SP_READ_BUF_SIZE : 0;
}

/* Lingering close: what the client still sends after our FIN is read and dropped until
 * it closes too (or the deadline), because closing a socket with unread bytes makes the
 * kernel send a reset, which can destroy the response before the client has read it. */
static void on_linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sp_conn *c = stream->data;
    sp_bufpool_put(&c->w->pool, buf->base);
    if (nread < 0) {
        close_side(c, &c->client);
        finish_if_closed(c);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    sp_conn *c = req->data;
    uv_tcp_t *tcp = (uv_tcp_t *)req->handle;
    free(req);
    /* The side is flushed (or failed). The client lingers; the target closes now. */
    if (c->client.tcp == tcp) {
        if (status == 0 && !c->client.eof &&
            uv_read_start((uv_stream_t *)tcp, on_linger_alloc, on_linger_read) == 0) {
            uint64_t linger = uv_now(&c->w->loop) + SP_LINGER_MS;
            if (linger < c->closing_deadline_ms)
                c->closing_deadline_ms = linger;
            sp_conn_arm_timer(c);
            return;
        }
        close_side(c, &c->client);
    } else if (c->target.tcp == tcp) {
        close_side(c, &c->target);
    }
    finish_if_closed(c);
}

void sp_conn_close(sp_conn *c, sp_end_reason reason)
{
    record_end(c, reason);
    if (c->state == SP_STATE_CLOSING)
        return;
    if (c->app && c->app->closing)
        c->app->closing(c); /* an idle upstream connection outlives its client */
    sp_dial_cancel(&c->dial); /* a target still being dialed has nothing to flush */
    sp_conn_set_state(c, SP_STATE_CLOSING);
    c->closing_deadline_ms = uv_now(&c->w->loop) + SP_FLUSH_LIMIT_MS;
    sp_side *sides[2] = {&c->client, &c->target};
    for (int i = 0; i < 2; i++) {
        sp_side *s = sides[i];
        if (!s->tcp)
            continue;
        uv_read_stop((uv_stream_t *)s->tcp);
        s->reading = false;
        if (s->tls.ssl && s->tls.established && !s->shut) {
            sp_tls_shutdown(&s->tls); /* close_notify, flushed with the rest */
            if (!sp_pipe_flush_tls(c, s))
                return; /* the peer was gone: that write aborted (and closed) everything */
        }
        /* queued: our pipe's writes; the write queue: also a handler's, not yet sent.
         * The client always gets a FIN first, then a lingering close. */
        bool pending = s->queued || uv_stream_get_write_queue_size((uv_stream_t *)s->tcp) > 0;
        bool shut = !s->shut && (pending || (s == &c->client && !s->eof));
        uv_shutdown_t *req = shut ? malloc(sizeof *req) : NULL;
        if (req && uv_shutdown(req, (uv_stream_t *)s->tcp, on_shutdown) == 0) {
            req->data = c;
            s->shut = true;
        } else {
            free(req);
            close_side(c, s);
        }
    }
    if (!c->client.tcp && !c->target.tcp)
        sp_conn_close_handle(c, (uv_handle_t *)&c->timer);
    else
        sp_conn_arm_timer(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    sp_conn *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        free(h); /* client sockets and dial attempts are separate allocations; tcp comes first */
    c->handles--;
    sp_conn_release(c);
}

/* ---- timers ---- */

static uint64_t stream_inactivity(const sp_conn *c)
{
    return sp_settings_stream_inactivity(&c->gen->settings);
}

/* The client's TLS handshake, when we terminate it, must finish within initial_data. */
static uint64_t handshake_deadline(const sp_conn *c)
{
    const sp_timeouts *t = &c->gen->settings.timeouts;
    if (c->client.tls.ssl && !c->client.tls.established && t->initial_data)
        return c->started_ms + t->initial_data;
    return UINT64_MAX;
}

uint64_t sp_conn_stream_deadline(sp_conn *c)
{
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t due = UINT64_MAX;
    if (stream_inactivity(c))
        due = c->last_activity_ms + stream_inactivity(c);
    if (t->max_lifetime && c->started_ms + t->max_lifetime < due)
        due = c->started_ms + t->max_lifetime;
    return due;
}

void sp_conn_stream_timeout(sp_conn *c)
{
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t now = uv_now(&c->w->loop);
    if (t->max_lifetime && now >= c->started_ms + t->max_lifetime) {
        sp_conn_abort(c, SP_END_MAX_LIFETIME);
        return;
    }
    if (stream_inactivity(c) && now >= c->last_activity_ms + stream_inactivity(c)) {
        sp_conn_abort(c, SP_END_INACTIVITY_TIMEOUT);
        return;
    }
    sp_conn_arm_timer(c);
}

/* One timer per connection, armed for the nearest deadline of the current state (the
 * application's own, while it drives the connection). Activity does not re-arm it: when
 * it fires early relative to the latest activity it is simply armed again for the
 * remainder, which keeps the hot path free of timer calls. */
void sp_conn_arm_timer(sp_conn *c)
{
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t now = uv_now(&c->w->loop), due = UINT64_MAX;
    if (sp_app_active(c))
        due = c->app->deadline(c);
    else switch (c->state) {
    case SP_STATE_CONNECTING:
        due = sp_connect_deadline(c);
        break;
    case SP_STATE_SNIFFING:
        if (t->initial_data)
            due = c->started_ms + t->initial_data;
        break;
    case SP_STATE_PROXY_HEADER:
        if (t->proxy_header)
            due = c->started_ms + t->proxy_header;
        break;
    case SP_STATE_PIPING:
        due = sp_conn_stream_deadline(c);
        break;
    case SP_STATE_CLOSING:
        due = c->closing_deadline_ms;
        break;
    default:
        break;
    }
    if (c->state != SP_STATE_CLOSING && handshake_deadline(c) < due)
        due = handshake_deadline(c);
    if (due == UINT64_MAX)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *timer)
{
    sp_conn *c = timer->data;
    uint64_t now = uv_now(&c->w->loop);
    if (c->state != SP_STATE_CLOSING && now >= handshake_deadline(c)) {
        c->client.tls.failure = SP_TLSFAIL_TIMEOUT;
        sp_conn_tls_failed(c, &c->client);
        return;
    }
    if (sp_app_active(c)) {
        c->app->timeout(c);
        return;
    }
    switch (c->state) {
    case SP_STATE_CONNECTING:
        if (now >= sp_connect_deadline(c))
            sp_connect_timed_out(c);
        else
            sp_conn_arm_timer(c);
        return;
    case SP_STATE_SNIFFING:
        sp_conn_abort(c, SP_END_INITIAL_DATA_TIMEOUT);
        return;
    case SP_STATE_PROXY_HEADER:
        sp_conn_proxy_header_failed(c, "no complete header within timeouts.proxy_header",
                                    SP_END_PROXY_HEADER_TIMEOUT);
        return;
    case SP_STATE_PIPING:
        sp_conn_stream_timeout(c);
        return;
    case SP_STATE_CLOSING:
        sp_conn_abort(c, c->reason);
        return;
    default:
        return;
    }
}

/* ---- the session layer above ---- */

const sp_session_hooks *sp_conn_session(void) { return session; }

void sp_conn_route_stream(sp_conn *c, const sp_route *r) { session->route_stream(c, r); }

/* ---- the PROXY protocol, from trusted senders only ---- */

void sp_conn_proxy_header_failed(sp_conn *c, const char *why, sp_end_reason reason)
{
    char peer[SP_IP_STRLEN];
    sp_ip_format(&c->info.client_ip, peer, sizeof peer);
    sp_counter_add(&c->w->counters.proxy_headers_rejected, 1);
    sp_warn("conn=%llu port=%u: PROXY header from trusted %s refused: %s", (unsigned long long)c->id,
            c->info.server_port, peer, why);
    sp_conn_abort(c, reason);
}

void sp_conn_proxy_header_input(sp_conn *c)
{
    sp_proxy_header h;
    const char *why = "invalid";
    sp_pp_status st = sp_proxy_parse((const uint8_t *)c->sniffed.data, c->sniffed.len, &h, &why);
    if (st == SP_PP_NEED_MORE)
        return; /* the parser bounds the header size */
    if (st == SP_PP_OK && h.datagram) {
        st = SP_PP_INVALID;
        why = "a UDP header on a TCP connection";
    }
    if (st != SP_PP_OK) {
        sp_conn_proxy_header_failed(c, why, SP_END_BAD_PROXY_HEADER);
        return;
    }
    sp_counter_add(&c->w->counters.proxy_headers_accepted, 1);
    if (!h.local && h.family != AF_UNIX) {
        /* from here on the real client drives routing, limits, Lua and logs */
        sp_ip_format(&c->info.client_ip, c->proxied_by, sizeof c->proxied_by);
        c->info.proxied_by = c->proxied_by;
        c->info.client_ip = h.src;
        c->info.client_port = h.src_port;
        c->orig_dst = h.dst;
        c->orig_dst_port = h.dst_port;
        c->has_orig_dst = true;
    }
    /* what follows the header is the first application data */
    memmove(c->sniffed.data, c->sniffed.data + h.length, c->sniffed.len - h.length);
    c->sniffed.len -= h.length;
    session->begin(c);
}

/* ---- accept ---- */

/* Closes an accepted socket that does not become a connection with a RST rather than a
 * FIN: the client learns at once that it was not served. */
static void refuse(sp_worker *w, int fd, sp_refused_reason why)
{
    struct linger rst = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    close(fd);
    sp_counter_add(&w->counters.refused[why], 1);
}

static void fill_info(sp_conn_info *info, uv_tcp_t *tcp, const struct sockaddr *peer, uint16_t port,
                      uint64_t id, const sp_ip *local)
{
    info->id = id;
    info->server_port = port;
    info->domain = "";
    sp_ip_from_sockaddr(peer, &info->client_ip, &info->client_port);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (local)
        info->server_ip = *local;
    else if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) == 0)
        sp_ip_from_sockaddr((struct sockaddr *)&ss, &info->server_ip, NULL);
}

void sp_conn_accept(sp_worker *w, int fd, const struct sockaddr *peer, uint16_t port, const sp_ip *local)
{
    sp_gen *g = w->gen;
    uint64_t max = g->settings.max_connections;
    if (max && atomic_load(&w->process->active) >= max) {
        refuse(w, fd, SP_REFUSED_MAX_CONNECTIONS);
        return;
    }
    sp_conn *c = calloc(1, sizeof *c);
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (!c || !tcp) {
        free(c);
        free(tcp);
        refuse(w, fd, SP_REFUSED_ACCEPT_ERROR);
        return;
    }
    uv_tcp_init(&w->loop, tcp);
    tcp->data = c;
    if (uv_tcp_open(tcp, fd) != 0) {
        uv_close((uv_handle_t *)tcp, (uv_close_cb)free); /* it does not own fd */
        free(c);
        refuse(w, fd, SP_REFUSED_ACCEPT_ERROR);
        return;
    }
    atomic_fetch_add(&w->process->active, 1);
    c->w = w;
    c->gen = g;
    sp_gen_ref(g);
    c->route_states = sp_route_states_ref(w->route_states);
    c->id = atomic_fetch_add(&w->process->next_conn_id, 1) + 1;
    c->client.tcp = tcp;
    c->handles = 2; /* client socket and timer */
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    sp_connect_init(c);
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

    fill_info(&c->info, tcp, peer, port, c->id, local);
    uv_tcp_nodelay(tcp, 1);

    const sp_settings *st = &g->settings;
    if (st->accept_proxy_protocol && sp_ip_list_match(&st->proxy_ips, &c->info.client_ip)) {
        /* a trusted proxy must say whom it relays, within timeouts.proxy_header */
        sp_conn_set_state(c, SP_STATE_PROXY_HEADER);
        sp_conn_arm_timer(c);
        sp_pipe_start_reading(c, &c->client);
        return;
    }
    session->begin(c);
}

/* ---- background tasks ---- */

sp_conn *sp_conn_new_background(sp_worker *w, sp_gen *g, const sp_route *route)
{
    sp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    c->gen = g;
    sp_gen_ref(g);
    c->background = true;
    c->id = atomic_fetch_add(&w->process->next_conn_id, 1) + 1;
    c->route = route;
    c->info.route_name = route->name;
    c->info.domain = "";
    c->handles = 1; /* the timer */
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->started_ms = c->last_activity_ms = c->phase_started_ms = uv_now(&w->loop);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    return c;
}

void sp_conns_stop_idle(sp_worker *w)
{
    for (sp_conn *c = w->conns; c; c = c->next)
        if (sp_app_active(c) && c->app->worker_stopping)
            c->app->worker_stopping(c);
}

void sp_conns_end_background(sp_worker *w, const sp_gen *keep)
{
    for (sp_conn *c = w->conns; c; c = c->next)
        if (c->background && c->gen != keep && c->state != SP_STATE_CLOSING)
            sp_conn_abort(c, SP_END_SHUTDOWN);
}
