/* config/routes: a route as compiled from one entry of `routes` (match, action, security).
 *
 * routes.c reads the route list of the configuration table into sp_route values: name,
 * priority, match (ports, client_ip, domains, tls_version, path, headers), the action
 * (through config/route_action.h: type, targets, TLS, PROXY header out, HTTP fields,
 * kernel forwarding), security; then the checks that span routes (duplicate names,
 * kernel ports, certificate = "auto") and the implicit ACME challenge route. Errors are
 * SPEC 10 messages raised through config/schema.h.
 *
 * A compiled route is immutable once its generation is loaded; what a worker changes
 * per route (the round-robin cursor, its shared figures) lives in net/route_state.h,
 * indexed by the route's index. */
#ifndef SP_CONFIG_ROUTES_H
#define SP_CONFIG_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <regex.h>

#include "pattern/path_pattern.h"
#include "pattern/template.h"
#include "pattern/domain_pattern.h"
#include "pattern/ip_pattern.h"

typedef struct lua_State lua_State;
typedef struct ssl_ctx_st SSL_CTX;
struct cfg_cx;

typedef enum { SP_ACTION_FORWARD = 0, SP_ACTION_BLOCK, SP_ACTION_SOCKET_HANDLER, SP_ACTION_REDIRECT } sp_action_type;

typedef struct sp_port_range { uint16_t from, to; } sp_port_range;

typedef enum { SP_TLS_NONE = 0, SP_TLS_PASSTHROUGH, SP_TLS_TERMINATE, SP_TLS_REENCRYPT } sp_tls_mode;

typedef enum { SP_CLIENT_AUTH_NONE = 0, SP_CLIENT_AUTH_OPTIONAL, SP_CLIENT_AUTH_REQUIRED } sp_client_auth;

#define SP_TLS_DEFAULT_GROUPS "X25519:P-256:P-384"

/* action.tls. Contexts are built once by the main thread (core/tls/context.c) and shared
 * by every worker's copy of the route; OpenSSL contexts are safe to share once set up. */
typedef struct sp_route_tls {
    sp_tls_mode mode;
    char *cert, *key;          /* file paths or inline PEM ("-----BEGIN ..."); NULL when auto */
    bool cert_auto;            /* certificate = "auto": core/cert/ supplies it per name */
    int min_version;           /* TLS1_2_VERSION unless set */
    bool upstream_verify;
    char *upstream_sni;        /* NULL: the client's SNI, else the target host */
    char *upstream_ca_file;    /* implies upstream_verify */
    char *groups;              /* key exchange groups, OpenSSL's list syntax; NULL: SP_TLS_DEFAULT_GROUPS */
    char *sigalgs;             /* signature algorithms; NULL: OpenSSL's */
    /* client_auth: clients present a certificate that ca signed (mutual TLS) */
    sp_client_auth client_auth;
    char *client_ca;           /* file path or inline PEM */
    char *client_crl;          /* or NULL: a CRL file checked for the leaf */
    char *upstream_cert, *upstream_key; /* re-encrypt: what we present to the target, or NULL */
    SSL_CTX *server_ctx;       /* terminate, re-encrypt */
    SSL_CTX *client_ctx;       /* re-encrypt */
} sp_route_tls;

/* Port of a target: a number, the port the client connected to, or a Lua function. */
typedef enum { SP_PORT_FIXED = 0, SP_PORT_PRESERVE, SP_PORT_FUNCTION } sp_port_kind;

typedef struct sp_target {
    char *host;         /* NULL when chosen by host_fn */
    int host_fn;        /* LUA_NOREF or a registry reference in the generation's state */
    sp_port_kind port_kind;
    uint16_t port;
    int port_fn;
} sp_target;

/* match.headers: a field that must be present with this value, or match the pattern. */
typedef struct sp_header_match {
    char *name;
    char *value;               /* exact (case-sensitive), or NULL when `re` is used */
    regex_t re;                /* "/re/": POSIX extended */
} sp_header_match;

/* action.headers.request / .response: set (replace) a field to the template's value. */
typedef struct sp_header_set {
    char *name;
    sp_template value;
} sp_header_set;

typedef enum { SP_RATE_KEY_IP = 0, SP_RATE_KEY_ROUTE, SP_RATE_KEY_HEADER } sp_rate_key;

/* What an HTTP route (protocol = "http") adds; see core/http/. */
typedef struct sp_route_http {
    bool has_path;
    sp_path_pattern path;
    sp_header_match *match_headers;
    size_t nmatch_headers;
    sp_header_set *request_headers, *response_headers;
    size_t nrequest_headers, nresponse_headers;
    bool has_rewrite;
    sp_template rewrite_path;
    bool has_redirect;
    sp_template redirect_to;   /* type = "redirect" */
    int redirect_status;
    bool websocket;            /* forward Upgrade requests (default true) */
    char *auth_realm;          /* security.basic_auth, NULL when none */
    char **auth_credentials;   /* "user:password" each */
    size_t nauth;
    uint64_t rate_requests, rate_window_ms;   /* security.rate_limit; 0: none */
    sp_rate_key rate_key;
    char *rate_header;         /* key = "header:NAME" */
} sp_route_http;

/* action.forwarding_engine = "nftables": the kernel forwards this route with NAT rules
 * the main thread installs (core/nft/); no listener, no connection in user space. */
typedef struct sp_route_nft {
    bool enabled;
    bool preserve_source_ip;  /* no masquerade: the target sees the client's address */
    uint8_t protocols;        /* SP_NFT_TCP | SP_NFT_UDP */
    uint64_t max_rate;        /* bytes per second, both directions together; 0: none */
} sp_route_nft;
#define SP_NFT_TCP 1
#define SP_NFT_UDP 2

typedef struct sp_route {
    char *name;
    int index;                /* 1-based place in the generation's routes (the file's order, then
                                 the implicit ACME route): for messages and per-route tables */
    int priority;
    char *description;        /* or NULL: for people, shown by --check and /routes */
    char **tags;              /* for people and GET /routes?tag= */
    size_t ntags;
    bool disabled;            /* enabled = false: validated, listed, never chosen */
    sp_port_range *ports;
    size_t nports;
    sp_ip_list client_ip;     /* empty: any client */
    sp_domain_pattern *domains;  /* empty: any name, even none */
    size_t ndomains;
    uint16_t *tls_versions;   /* empty: any; else the client's highest offered version */
    size_t ntls_versions;
    sp_route_tls tls;
    /* security: block wins over allow; limits counted across workers and reloads */
    sp_ip_list ip_allow_list, ip_block_list;
    uint64_t max_connections, max_connections_per_ip;
    sp_action_type action;
    /* forward: candidates tried round-robin; a failing one is skipped for the next */
    sp_target *targets;
    size_t ntargets;
    bool half_open;
    int handler;              /* socket-handler: registry reference of function(sock, ctx) */
    int send_proxy_protocol;  /* 0: no; 1 or 2: that version, before any byte to the target */
    bool is_http;             /* request by request (protocol = "http", or an HTTP-only field) */
    sp_route_http http;
    sp_route_nft nft;
} sp_route;

/* True when `port` is one of the route's match.ports. */
bool sp_route_on_port(const sp_route *r, unsigned port);

/* True when one of the route's tags is `tag`. */
bool sp_route_has_tag(const sp_route *r, const char *tag);

/* Forwarded by the kernel now: nftables rules are built for it (not when disabled). */
static inline bool sp_route_in_kernel(const sp_route *r) { return r->nft.enabled && !r->disabled; }

/* True when choosing this route needs the client's first bytes (a domain other than
 * "*", a TLS version). */
bool sp_route_needs_sniff(const sp_route *r);

/* For config.c: compiles the `routes` list of the configuration table at index top into
 * the generation, then the checks across routes and the implicit ACME route. */
void cfg_compile_routes(struct cfg_cx *cx, int top);

/* Frees what the route owns (not the route itself). unref_in: the Lua state whose
 * registry references (target and handler functions) to drop, or NULL when that state is
 * closed anyway or never received them. */
void sp_route_free(sp_route *r, lua_State *unref_in);

#endif
