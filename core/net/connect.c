/* connect: from a route's targets to a connected (and, when re-encrypting, TLS
 * established) target socket.
 *
 * Candidates are taken round-robin; a host name is resolved with uv_getaddrinfo and each
 * of its addresses tried in order; each attempt has timeouts.connect. A failure moves to
 * the next address, then the next candidate; when all are spent the client is closed
 * with the reason of the last failure. */
#include <stdlib.h>
#include <string.h>

#include "net/conn_impl.h"
#include "proto/proxy_protocol.h"
#include "util/log.h"

static sp_end_reason connect_reason(int status)
{
    switch (status) {
    case UV_ECONNREFUSED: return SP_END_CONNECT_REFUSED;
    case UV_ETIMEDOUT: return SP_END_CONNECT_TIMEOUT;
    default: return SP_END_CONNECT_ERROR;
    }
}

/* The upstream TLS leg of a re-encrypting route: SNI is upstream_sni, else the client's
 * SNI, else none; the certificate is checked against that name, else the target host.
 * Stays in "connecting" (and under its deadline) until the handshake completes. */
static void start_upstream_tls(sp_conn *c)
{
    const sp_route_tls *t = &c->route->tls;
    const char *sni = t->upstream_sni ? t->upstream_sni : c->info.domain_len ? c->info.domain : NULL;
    const char *verify = sni ? sni : c->dest.host;
    if (sp_tls_init_client(&c->target.tls, t->client_ctx, sni, verify) != 0) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    if (sp_pipe_tls_pump(c, &c->target)) /* writes the ClientHello */
        sp_pipe_start_reading(c, &c->target);
}

/* The route's PROXY header, before any other byte to the target: the real client (also
 * when it came to us in a PROXY header) and the address it connected to. */
static bool send_proxy_header(sp_conn *c)
{
    const sp_ip *dst = c->has_orig_dst ? &c->orig_dst : &c->info.server_ip;
    uint16_t dport = c->has_orig_dst ? c->orig_dst_port : c->info.server_port;
    void *buf = sp_bufpool_get(&c->w->pool);
    if (!buf) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return false;
    }
    size_t len;
    if (c->route->send_proxy_protocol == 1) {
        len = sp_proxy_write_v1(buf, SP_READ_BUF_SIZE, &c->info.client_ip, c->info.client_port, dst, dport);
    } else {
        sp_pp_tlvs tlvs = {
            .authority = c->info.domain_len ? c->info.domain : NULL,
            .alpn = c->info.alpn,
            .alpn_len = c->info.alpn ? strlen(c->info.alpn) : 0,
        };
        len = sp_proxy_write_v2(buf, SP_READ_BUF_SIZE, &c->info.client_ip, c->info.client_port, dst,
                                dport, &tlvs);
    }
    return sp_pipe_write(c, &c->target, buf, len);
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
        sp_conn_close_handle(c, (uv_handle_t *)&a->tcp);
        sp_connect_next(c);
        return;
    }
    sp_counters_observe_connect(&c->w->counters, uv_hrtime() - c->attempt_started_ns);
    c->target.tcp = &a->tcp; /* the attempt's memory now belongs to the target side */
    uv_tcp_nodelay(c->target.tcp, 1);
    if (c->route->send_proxy_protocol && !send_proxy_header(c))
        return;
    if (c->route->tls.mode == SP_TLS_REENCRYPT) {
        start_upstream_tls(c);
        return;
    }
    c->target_ready = true;
    sp_pipe_start(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

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
    c->attempt_started_ns = uv_hrtime();
    int rc = uv_tcp_connect(&a->req, &a->tcp, sa, on_connect);
    if (rc != 0) {
        c->dest.last_error = connect_reason(rc);
        sp_conn_close_handle(c, (uv_handle_t *)&a->tcp);
        sp_connect_next(c);
        return;
    }
    c->attempt = a;
    sp_conn_arm_timer(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sp_conn *c = req->data;
    c->resolving = false;
    c->lookups--;
    if (c->state == SP_STATE_CLOSING) {
        if (res)
            uv_freeaddrinfo(res);
        sp_conn_release(c);
        return;
    }
    if (status < 0 || !res) {
        sp_warn("conn=%llu route=%s: cannot resolve target %s: %s", (unsigned long long)c->id,
                c->route->name, c->dest.host, uv_strerror(status));
        if (res)
            uv_freeaddrinfo(res);
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        sp_connect_next(c);
        return;
    }
    c->addrs = res;
    c->next_addr = res;
    sp_connect_next(c);
}

void sp_connect_timed_out(sp_conn *c)
{
    if (c->attempt) { /* this attempt took too long: try the next address or target */
        sp_debug("conn=%llu connect to %s:%s timed out", (unsigned long long)c->id, c->dest.host,
                 c->dest.port_text);
        sp_conn_close_handle(c, (uv_handle_t *)&c->attempt->tcp);
        c->attempt = NULL;
        c->dest.last_error = SP_END_CONNECT_TIMEOUT;
        sp_connect_next(c);
    } else if (c->target.tls.ssl && !c->target.tls.established) {
        c->target.tls.failure = SP_TLSFAIL_TIMEOUT;
        sp_conn_tls_failed(c, &c->target);
    }
}

/* Every candidate failed: the client is closed (streams), or the application answers
 * (HTTP: 502/504). */
static void give_up(sp_conn *c, sp_end_reason why)
{
    if (c->app && c->app->target_failed)
        c->app->target_failed(c, why);
    else
        sp_conn_abort(c, why);
}

int sp_connect_choose(sp_conn *c, const sp_conn_info *info)
{
    const sp_route *r = c->route;
    sp_end_reason last = c->dest.last_error;
    const sp_target *t = sp_route_next_target(c->route_states, r);
    c->candidates_tried++;
    sp_target_choice_clear(&c->dest);
    c->dest.last_error = last;
    char err[512];
    if (sp_target_choose(c->gen, t, info, &c->dest, err, sizeof err) != 0) {
        sp_error("conn=%llu route=%s: %s", (unsigned long long)c->id, r->name, err);
        return -1;
    }
    return 0;
}

bool sp_connect_dest(sp_conn *c)
{
    struct sockaddr_storage ss;
    if (sp_target_literal(&c->dest, &ss)) {
        try_address(c, (struct sockaddr *)&ss);
        return c->state != SP_STATE_CLOSING;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    int rc = uv_getaddrinfo(&c->w->loop, &c->gai, on_resolved, c->dest.host, NULL, &hints);
    if (rc != 0) {
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        sp_connect_next(c);
        return c->state != SP_STATE_CLOSING;
    }
    c->resolving = true;
    c->lookups++;
    return true;
}

void sp_connect_next(sp_conn *c)
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
    if (c->candidates_tried >= r->ntargets) {
        sp_end_reason why = c->dest.last_error;
        sp_info("conn=%llu route=%s: no target reachable, last %s:%s (%s)", (unsigned long long)c->id,
                r->name, c->dest.host ? c->dest.host : "-", c->dest.port_text, sp_end_reason_name(why));
        give_up(c, why);
        return;
    }
    if (sp_connect_choose(c, &c->info) != 0) {
        give_up(c, SP_END_LUA_ERROR);
        return;
    }
    sp_connect_dest(c);
}
