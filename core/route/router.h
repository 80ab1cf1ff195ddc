/* router: picks the route for a connection from a generation's port index.
 *
 * The listening port gives the candidates (already ordered: priority, then file order);
 * the first whose conditions all hold wins. Conditions known at accept time: the client
 * address. Later stages (SNI, Host, path) add their own conditions here. */
#ifndef SP_ROUTE_ROUTER_H
#define SP_ROUTE_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "pattern/ip_pattern.h"

/* What routing, Lua callbacks and logs know about a connection. */
typedef struct sp_conn_info {
    uint64_t id;
    sp_ip client_ip, server_ip;
    uint16_t client_port, server_port;
    const char *route_name;
    const char *domain;        /* SNI (lowercased) or, later, Host; "" when none */
    size_t domain_len;
    uint16_t tls_offered;      /* highest version the ClientHello offered; 0: not TLS */
    bool tls;                  /* we terminate TLS for this connection */
    const char *tls_version;   /* negotiated, once the handshake is done */
    const char *alpn;          /* negotiated ALPN protocol, or NULL */
    const char *proxied_by;    /* the trusted proxy that sent a PROXY header, or NULL */
    /* HTTP: the request being routed (NULL before one is parsed: path and header
     * conditions then count as met) and its normalised path. */
    const struct sp_http_head *http;
    const char *path;
    size_t path_len;
    const struct sp_path_pattern *path_pattern;  /* the chosen route's, for ctx.params */
    bool per_request;          /* routing one request of an HTTP connection: HTTP routes only,
                                  terminating TLS exactly when this connection's TLS is ours */
} sp_conn_info;

/* Why a route did not match ("match.client_ip", "match.domains", ...), for --explain and
 * debug logs; NULL when it matched. */
const char *sp_route_mismatch(const sp_route *r, const sp_conn_info *info);

/* The winner among the port's routes that match: highest priority, then the most
 * specific domain pattern that matched (exact > longer wildcard > shorter > "*" > none),
 * then file order. */
const sp_route *sp_route_select(const sp_gen *g, uint16_t port, const sp_conn_info *info);

#endif
