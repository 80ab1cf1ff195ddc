/* route: sniff -> route -> act. */
#include "session/route.h"

#include <ctype.h>
#include <string.h>

#include "http/proxy.h"
#include "lua/task.h"
#include "net/conn_impl.h"
#include "proto/client_hello.h"
#include "session/admit.h"
#include "util/log.h"

/* The dial, with the bytes read while routing held for the target (passthrough and
 * plain streams); HTTP routes get their session instead. */
static void connect_target(sp_conn *c)
{
    if (c->route->is_http) { /* after the client's TLS handshake: requests follow */
        sp_http_begin_tls(c);
        return;
    }
    sp_conn_set_state(c, SP_STATE_CONNECTING);
    sp_conn_arm_timer(c);
    if (c->sniffed.len) {
        /* passthrough and plain streams: the target gets the bytes read while routing */
        void *buf = sp_bufpool_get(&c->w->pool);
        if (!buf || !sp_pipe_hold_early(c, buf, c->sniffed.len)) {
            sp_bufpool_put(&c->w->pool, buf);
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return;
        }
        memcpy(buf, c->sniffed.data, c->sniffed.len);
    }
    sp_buf_free(&c->sniffed);
    sp_pipe_start_reading(c, &c->client);
    sp_connect_next(c);
}

/* The client's TLS handshake first for terminating routes: the target is chosen and
 * connected once it is done, so a client that fails it never reaches a target, a target
 * that speaks first cannot speak into a handshake, and Lua sees the negotiated version
 * and ALPN. */
static void start_handshake(sp_conn *c, const sp_route *r)
{
    sp_conn_set_state(c, SP_STATE_HANDSHAKE);
    if (sp_tls_init_server(&c->client.tls, r->tls.server_ctx) != 0) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    sp_conn_arm_timer(c); /* the handshake deadline */
    c->info.tls = true;
    sp_pipe_start_reading(c, &c->client);
    sp_buf hello = c->sniffed; /* the ClientHello is for us, not for the target */
    sp_buf_init(&c->sniffed);
    if (hello.len)
        sp_pipe_tls_input(c, &c->client, hello.data, hello.len);
    sp_buf_free(&hello);
}

/* The chosen route's action, once the route is known. */
static void act(sp_conn *c)
{
    const sp_route *r = c->route;
    c->info.route_name = r->name;
    if (!sp_conn_admit_route(c, r, true))
        return;
    if (r->action == SP_ACTION_BLOCK) {
        sp_conn_abort(c, SP_END_BLOCKED);
        return;
    }
    if (r->action == SP_ACTION_SOCKET_HANDLER) { /* the config refuses them behind termination */
        sp_task_start(c);
        return;
    }
    if (r->tls.mode == SP_TLS_TERMINATE || r->tls.mode == SP_TLS_REENCRYPT) {
        start_handshake(c, r);
        return;
    }
    connect_target(c);
}

static void route(sp_conn *c)
{
    c->route = sp_route_select(c->gen, c->info.server_port, &c->info);
    if (!c->route) {
        char client[SP_IP_STRLEN];
        sp_ip_format(&c->info.client_ip, client, sizeof client);
        sp_info("conn=%llu port=%u client=%s sni=%s: no route matched, closing", (unsigned long long)c->id,
                c->info.server_port, client, c->info.domain_len ? c->info.domain : "-");
        sp_conn_abort(c, SP_END_NO_ROUTE);
        return;
    }
    act(c);
}

void sp_session_sniffed(sp_conn *c)
{
    if (c->sniffed.oom) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    sp_client_hello ch;
    sp_ch_status st = sp_client_hello_parse((const uint8_t *)c->sniffed.data, c->sniffed.len, &ch);
    switch (st) {
    case SP_CH_NEED_MORE:
        return; /* the parser bounds the input: SP_CH_TOO_LARGE past its limit */
    case SP_CH_OK:
        for (size_t i = 0; i < ch.sni_len; i++)
            c->domain[i] = (char)tolower((unsigned char)ch.sni[i]);
        c->domain[ch.sni_len] = 0;
        c->info.domain = c->domain;
        c->info.domain_len = ch.sni_len;
        c->info.tls_offered = ch.max_version;
        break;
    case SP_CH_NOT_TLS: {
        const sp_port_entry *e = sp_gen_port(c->gen, c->info.server_port);
        if (e && e->http_head) { /* a request head: Host (and path, headers) route it */
            sp_http_sniffed(c);
            return;
        }
        break; /* routes without domains take it */
    }
    default:
        sp_info("conn=%llu port=%u: unusable TLS ClientHello (%s), closing", (unsigned long long)c->id,
                c->info.server_port, st == SP_CH_TOO_LARGE ? "too large" : "malformed");
        sp_conn_abort(c, SP_END_BAD_CLIENT_HELLO);
        return;
    }
    route(c);
}

void sp_session_begin(sp_conn *c)
{
    if (!sp_session_admit(c))
        return;
    const sp_port_entry *e = sp_gen_port(c->gen, c->info.server_port);
    if (e && e->sniff) {
        sp_conn_set_state(c, SP_STATE_SNIFFING);
        sp_conn_arm_timer(c);
        sp_pipe_start_reading(c, &c->client);
        if (c->sniffed.len)
            sp_session_sniffed(c); /* bytes that came with the PROXY header */
        return;
    }
    route(c);
}

void sp_session_handshake_done(sp_conn *c) { connect_target(c); }

void sp_session_route_stream(sp_conn *c, const sp_route *r)
{
    c->route = r;
    act(c);
}
