#include "cli/explain.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "config/describe.h"
#include "proto/http_message.h"
#include "pattern/path_pattern.h"
#include "pattern/ip_pattern.h"
#include "route/router.h"

/* --host/--path/--header make it an HTTP request: parsed by the real message parser, so
 * what is explained is what a request with those fields would meet. */
int sp_explain(const sp_gen *g, sp_explain_args *x)
{
    char domain[256];
    const char *name = x->host ? x->host : x->sni;
    size_t dl = 0;
    for (; name[dl] && name[dl] != ':' && dl < sizeof domain - 1; dl++)
        domain[dl] = (char)tolower((unsigned char)name[dl]);
    domain[dl] = 0;
    sp_conn_info info = {.server_port = (uint16_t)x->port, .domain = domain, .domain_len = dl,
                         .tls_offered = x->sni[0] ? 0x0304 : 0, .tls = x->sni[0] != 0};
    if (sp_ip_parse(x->client_ip, &info.client_ip) != 0) {
        fprintf(stderr, "--client-ip: not an IP address: %s\n", x->client_ip);
        return 1;
    }
    sp_http_msg msg;
    sp_http_msg_init(&msg, true, 65536);
    char norm[4096];
    bool http = x->host || x->path || x->headers.len;
    if (http) {
        sp_buf req;
        sp_buf_init(&req);
        sp_buf_appendf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", x->path ? x->path : "/", x->host ? x->host : domain);
        if (x->headers.len)
            sp_buf_append(&req, x->headers.data, x->headers.len);
        sp_buf_append(&req, "\r\n", 2);
        size_t used;
        sp_msg_event ev = req.oom ? SP_MSG_ERROR : sp_http_msg_feed(&msg, req.data, req.len, &used);
        sp_buf_free(&req);
        const char *path = x->path ? x->path : "/";
        size_t plen = strcspn(path, "?");
        long n = plen < sizeof norm ? sp_path_normalize(path, plen, norm) : -1;
        if (ev != SP_MSG_DONE || n < 0) {
            fprintf(stderr, "smartproxy: --explain: not a valid HTTP request: %s\n",
                    ev == SP_MSG_ERROR && msg.error ? msg.error : "bad path");
            sp_http_msg_free(&msg);
            return 1;
        }
        norm[n] = 0;
        info.http = &msg.head;
        info.path = norm;
        info.path_len = (size_t)n;
    }
    const sp_port_entry *e = sp_gen_port(g, (uint16_t)x->port);
    const sp_route *winner = sp_route_select(g, (uint16_t)x->port, &info);
    if (!e) {
        printf("port %d: no route listens on this port\n", x->port);
        sp_http_msg_free(&msg);
        return 0;
    }
    printf("port %d, client %s, sni %s", x->port, x->client_ip, x->sni[0] ? x->sni : "(none)");
    if (http)
        printf(", host %s, path %s", x->host ? x->host : dl ? domain : "(none)", x->path ? x->path : "/");
    printf(": %s\n", winner ? "matched" : http ? "no route matched (HTTP: 404)" : "no route matched (the connection would be closed)");
    for (size_t i = 0; i < e->nroutes; i++) {
        const sp_route *r = e->routes[i];
        const char *why = sp_route_mismatch(r, &info);
        sp_route_desc d;
        sp_route_describe(r, &d);
        if (r == winner)
            printf("  -> route \"%s\" (#%d, priority %d): wins\n", d.name, d.index, d.priority);
        else if (why)
            printf("     route \"%s\" (#%d, priority %d): %s does not match\n", d.name, d.index, d.priority, why);
        else
            printf("     route \"%s\" (#%d, priority %d): matches, but a better route wins\n", d.name, d.index, d.priority);
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        if (r->disabled && sp_route_on_port(r, (unsigned)x->port))
            printf("     route \"%s\" (#%d, priority %d): disabled (enabled = false)\n", r->name, r->index,
                   r->priority);
    }
    sp_http_msg_free(&msg);
    return 0;
}
