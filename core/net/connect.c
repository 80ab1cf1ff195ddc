/* connect: from a route's targets to a connected (and, when re-encrypting, TLS
 * established) target socket.
 *
 * Candidates are taken round-robin; each is dialed (net/dial.c: the host resolved, its
 * addresses tried in order, each attempt within timeouts.connect, the route's PROXY
 * header first, the upstream handshake of a re-encrypting route last). A failed connect
 * moves to the next candidate; when all are spent the client is closed (or the
 * application answers) with the reason of the last failure. A failed handshake ends
 * there: the target answered. */
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

/* The route's PROXY header, before any other byte to the target: the real client (also
 * when it came to us in a PROXY header) and the address it connected to. Written into
 * buf; returns its length (0 when it does not fit). */
static size_t proxy_header(const sp_conn *c, uint8_t *buf, size_t cap)
{
    const sp_ip *dst = c->has_orig_dst ? &c->orig_dst : &c->info.server_ip;
    uint16_t dport = c->has_orig_dst ? c->orig_dst_port : c->info.server_port;
    if (c->route->send_proxy_protocol == 1)
        return sp_proxy_write_v1((char *)buf, cap, &c->info.client_ip, c->info.client_port, dst, dport);
    sp_pp_tlvs tlvs = {
        .authority = c->info.domain_len ? c->info.domain : NULL,
        .alpn = c->info.alpn,
        .alpn_len = c->info.alpn ? strlen(c->info.alpn) : 0,
    };
    return sp_proxy_write_v2(buf, cap, &c->info.client_ip, c->info.client_port, dst, dport,
                             &tlvs);
}

static void on_attempt_started(sp_dial *d) { sp_conn_arm_timer(d->owner); }

static void on_attempt_failed(sp_dial *d, int status)
{
    sp_conn *c = d->owner;
    sp_debug("conn=%llu connect to %s:%s failed: %s", (unsigned long long)c->id, c->dest.host,
             c->dest.port_text, uv_strerror(status));
}

static void on_dialed(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp)
{
    sp_conn *c = d->owner;
    if (d->connect_ns)
        sp_counters_observe_connect(&c->w->counters, d->connect_ns);
    switch (r) {
    case SP_DIAL_CONNECTED:
        c->target.tcp = tcp;
        tcp->data = c;
        sp_dial_take_tls(d, &c->target.tls);
        c->target_ready = true;
        sp_pipe_start(c);
        return;
    case SP_DIAL_RESOLVE_FAILED:
        sp_warn("conn=%llu route=%s: cannot resolve target %s: %s", (unsigned long long)c->id,
                c->route->name, c->dest.host, uv_strerror(status));
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        break;
    case SP_DIAL_RESOLVE_NOT_STARTED:
        c->dest.last_error = SP_END_RESOLVE_FAILED;
        break;
    case SP_DIAL_CONNECT_FAILED:
        if (status < 0)
            c->dest.last_error = connect_reason(status);
        break;
    case SP_DIAL_TLS_FAILED:
        if (status < 0) { /* writing the handshake failed */
            sp_conn_abort(c, sp_pipe_error_reason(c, &c->target, status));
            return;
        }
        c->target.tls.failure = d->tls_failure;
        sp_conn_tls_failed(c, &c->target); /* no other candidate: the target answered */
        return;
    case SP_DIAL_PREAMBLE_FAILED:
        sp_conn_abort(c, status == UV_ENOMEM ? SP_END_INTERNAL_ERROR
                                             : sp_pipe_error_reason(c, &c->target, status));
        return;
    case SP_DIAL_TLS_NOT_STARTED:
    case SP_DIAL_OUT_OF_MEMORY:
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    sp_connect_next(c);
}

static const sp_dial_ops dial_ops = {
    .done = on_dialed, .attempt_started = on_attempt_started, .attempt_failed = on_attempt_failed};

void sp_connect_init(sp_conn *c)
{
    sp_dial_init(&c->dial, &c->w->loop, &dial_ops, &sp_conn_dial_keeper, c, c);
}

uint64_t sp_connect_deadline(const sp_conn *c) { return sp_dial_deadline(&c->dial); }

void sp_connect_timed_out(sp_conn *c)
{
    if (sp_dial_attempting(&c->dial)) /* this attempt took too long: try the next address or target */
        sp_debug("conn=%llu connect to %s:%s timed out", (unsigned long long)c->id, c->dest.host,
                 c->dest.port_text);
    sp_dial_timed_out(&c->dial); /* or the upstream handshake did: it fails */
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

/* The upstream TLS leg of a re-encrypting route: SNI is upstream_sni, else the client's
 * SNI, else none; the certificate is checked against that name, else the target host. */
static sp_dial_tls upstream_tls(const sp_conn *c)
{
    const sp_route_tls *t = &c->route->tls;
    const char *sni = t->upstream_sni ? t->upstream_sni : c->info.domain_len ? c->info.domain : NULL;
    return (sp_dial_tls){.ctx = t->client_ctx, .sni = sni, .verify_host = sni ? sni : c->dest.host};
}

bool sp_connect_dest(sp_conn *c)
{
    uint8_t header[SP_PP_V2_MAX_TLV + 16];
    size_t len = c->route->send_proxy_protocol ? proxy_header(c, header, sizeof header) : 0;
    sp_dial_tls tls = upstream_tls(c);
    sp_dial_start(&c->dial, c->dest.host, c->dest.port, c->gen->settings.timeouts.connect, header, len,
                  c->route->tls.mode == SP_TLS_REENCRYPT ? &tls : NULL);
    /* a dial may end at once (no address, every candidate refused): the connection may
     * have ended with it */
    return c->state != SP_STATE_CLOSING;
}

void sp_connect_next(sp_conn *c)
{
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
