/* admit: the global IP policy and the per-IP table, before routing. */
#include "session/admit.h"

#include "net/conn_impl.h"
#include "net/ip_table.h"

/* Every route of the connection's port reads plain HTTP requests: refusals can be
 * answered in HTTP without reading anything first. */
static bool plain_http_port(const sp_conn *c)
{
    const sp_port_entry *e = sp_gen_port(c->gen, c->info.server_port);
    if (!e || !e->http)
        return false;
    for (size_t i = 0; i < e->nroutes; i++)
        if (!e->routes[i]->is_http || e->routes[i]->tls.mode != SP_TLS_NONE)
            return false;
    return true;
}

/* The per-IP table refused the connection (v: 1 too many connections, 2 too high a
 * rate): HTTP clients get told why, others a close. */
static void refuse_per_ip(sp_conn *c, int v)
{
    sp_counter_add(&c->w->counters.refused[v == 1 ? SP_REFUSED_MAX_CONNECTIONS_PER_IP
                                                  : SP_REFUSED_CONNECTION_RATE], 1);
    sp_end_reason why = v == 1 ? SP_END_MAX_CONNECTIONS_PER_IP : SP_END_CONNECTION_RATE;
    if (!plain_http_port(c)) {
        sp_conn_abort(c, why);
        return;
    }
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 24\r\nConnection: close\r\n\r\n503 Service Unavailable\n";
    static const char rate[] = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
                               "Retry-After: 60\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
                               "429 Too Many Requests\n";
    if (sp_pipe_send_bytes(c, &c->client, v == 1 ? busy : rate, v == 1 ? sizeof busy - 1 : sizeof rate - 1))
        sp_conn_close(c, why); /* flushed, then a lingering close drains the request */
}

bool sp_session_admit(sp_conn *c)
{
    const sp_settings *st = &c->gen->settings;
    sp_ip_verdict ip = sp_ip_policy(&st->ip_allow_list, &st->ip_block_list, &c->info.client_ip);
    if (ip != SP_IP_ADMITTED) {
        bool blocked = ip == SP_IP_BLOCKED;
        sp_counter_add(&c->w->counters.refused[blocked ? SP_REFUSED_IP_BLOCKED : SP_REFUSED_IP_NOT_ALLOWED], 1);
        sp_conn_abort(c, blocked ? SP_END_IP_BLOCKED : SP_END_IP_NOT_ALLOWED);
        return false;
    }
    /* per real client: after the PROXY header, across all workers; always counted, for
     * the busiest-clients metric, refused only when a limit is set */
    int v = sp_ip_table_admit(c->w->process->ips, &c->info.client_ip, st->max_connections_per_ip,
                              st->connection_rate_per_minute, uv_now(&c->w->loop));
    if (v != 0) {
        refuse_per_ip(c, v);
        return false;
    }
    c->ip_admitted = true;
    return true;
}
