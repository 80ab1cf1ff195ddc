/* config: the Lua configuration table compiled into an immutable C generation.
 *
 * A generation (sp_gen) is everything one load of the configuration produced: global
 * settings, the compiled routes, the port index, and the Lua state that owns the route
 * functions (target host/port functions, later handlers). Each worker compiles its own
 * generation from its own Lua state, so Lua references never cross threads; the main
 * thread compiles one too, to validate and to answer --check.
 *
 * A generation is reference counted by its owner thread only: the worker holds one
 * reference while it is current and every connection holds one while it lives. The last
 * release closes the Lua state and frees the routes; a reload never touches a live
 * connection's generation. */
#ifndef SP_CONFIG_CONFIG_H
#define SP_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <regex.h>

#include "http/path_pattern.h"
#include "http/template.h"
#include "route/domain_pattern.h"
#include "route/ip_pattern.h"

typedef struct lua_State lua_State;
typedef struct ssl_ctx_st SSL_CTX;

typedef enum { SP_ACTION_FORWARD = 0, SP_ACTION_BLOCK, SP_ACTION_SOCKET_HANDLER, SP_ACTION_REDIRECT } sp_action_type;
typedef enum { SP_KEEPALIVE_STANDARD = 0, SP_KEEPALIVE_EXTENDED, SP_KEEPALIVE_IMMORTAL } sp_keepalive;

typedef struct sp_port_range { uint16_t from, to; } sp_port_range;

typedef enum { SP_TLS_NONE = 0, SP_TLS_PASSTHROUGH, SP_TLS_TERMINATE, SP_TLS_REENCRYPT } sp_tls_mode;

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
    int index;                /* 1-based position in the file, for messages */
    int priority;
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
    unsigned rr_next;         /* round-robin cursor; per worker since generations are */
    struct sp_route_counter *counter; /* this route's shared figures, looked up once per worker */
    sp_route_nft nft;
} sp_route;

typedef struct sp_timeouts {
    uint64_t connect, initial_data, http_idle, upstream_response, proxy_header,
             inactivity, max_lifetime, graceful_shutdown,   /* milliseconds; 0 = none */
             upstream_idle,     /* how long an idle pooled upstream connection is kept */
             request_body,      /* an HTTP request body slower than this (and than
                                   request_body_min_rate) gets 408; see http/body_clock.h */
             lua_hog_warning,   /* a Lua resume running longer is logged as a warning */
             lua_budget,        /* ... and one running longer is stopped with an error */
             config_load;       /* loading the config may run this long */
} sp_timeouts;

/* acme = { ... } (SPEC 3): the ACME client of core/cert/. */
typedef struct sp_acme_settings {
    bool enabled;
    char *email;                   /* contact for the account, or NULL */
    char *directory;               /* the CA's directory URL */
    char *ca_file;                 /* trust this CA for the ACME server (e.g. pebble), or NULL */
    uint16_t challenge_port;       /* HTTP-01 answered here (default 80) */
    uint64_t renew_before_days;    /* renew this long before notAfter (default 30) */
    uint64_t renew_check_interval; /* seconds between expiry checks (default 43200) */
    uint64_t retry_interval;       /* seconds before the first retry of a failed order,
                                      doubling per failure up to 6 h (default 60) */
} sp_acme_settings;

typedef struct sp_settings {
    int workers;                   /* 0: number of CPUs */
    char **listen_addresses;
    size_t nlisten_addresses;
    sp_timeouts timeouts;
    sp_keepalive keepalive;
    unsigned inactivity_multiplier;
    uint64_t max_connections;      /* 0: unlimited */
    uint64_t max_connections_per_ip;
    uint64_t connection_rate_per_minute;
    uint64_t max_header_bytes;     /* HTTP request head: 431 above */
    uint64_t max_body_bytes;       /* HTTP request body: 413 above; 0: unlimited */
    uint64_t request_body_min_rate; /* bytes/s a body past timeouts.request_body must keep */
    uint64_t upstream_keepalive;   /* idle upstream connections kept per target per worker */
    uint64_t lua_memory;           /* bytes each Lua state may hold; 0: no cap */
    bool lua_jit;                  /* compile the user's Lua too (then lua_budget cannot stop a compiled loop) */
    int log_level;                 /* -1: not set in the file */
    int log_json;                  /* -1: not set */
    bool log_access;
    char *access_log;              /* file for access lines, NULL: stderr */
    char *metrics_listen;          /* "host:port" or NULL */
    char *metrics_token;           /* bearer token the admin endpoint requires, or NULL */
    sp_domain_pattern *metrics_hosts;  /* names (or IPs) Host and Origin may use for it */
    size_t nmetrics_hosts;
    sp_ip_list proxy_ips;          /* who may send us a PROXY header */
    sp_ip_list ip_allow_list, ip_block_list;  /* security: every connection, on accept */
    bool accept_proxy_protocol;    /* default: true when proxy_ips is set */
    sp_acme_settings acme;
    char *cert_store;              /* certificates.store, or NULL */
    int cert_provision;            /* certificates.provision: registry ref in the gen's L, or LUA_NOREF */
} sp_settings;

/* Routes that can be chosen for one listening port, best first. */
typedef struct sp_port_entry {
    uint16_t port;
    sp_route **routes;
    size_t nroutes;
    bool sniff;                    /* some route needs the first client bytes (SNI, version, HTTP) */
    bool http;                     /* some route works request by request */
    bool http_head;                /* plain bytes may be a request head that routes: some
                                      route without TLS is HTTP or has domains (Host) */
} sp_port_entry;

typedef struct sp_gen {
    int refs;
    uint64_t number;               /* config generation, 1 for the first load */
    lua_State *L;                  /* owns every function reference in the routes */
    char *file;                    /* config file name as given, for messages */
    sp_settings settings;
    sp_route *routes;
    size_t nroutes;
    sp_port_entry *ports;          /* sorted by port */
    size_t nports;
} sp_gen;

/* Compiles the table at the top of L's stack (the value the config chunk returned).
 * On success returns a generation with refs = 1 that takes ownership of L. On failure
 * returns NULL, leaves L to the caller and writes a message in the SPEC 10 form
 * ("proxy.lua: route \"api\" (#3): match.ports: expected ..., got ...") into err. */
sp_gen *sp_gen_compile(lua_State *L, const char *file, char *err, size_t errlen);

void sp_gen_ref(sp_gen *g);
void sp_gen_unref(sp_gen *g);

/* True when choosing this route needs the client's first bytes (a domain other than
 * "*", a TLS version). */
bool sp_route_needs_sniff(const sp_route *r);

/* The candidate routes for a port, best first, or NULL. */
const sp_port_entry *sp_gen_port(const sp_gen *g, uint16_t port);

/* The effective inactivity timeout for long-lived streams after keep-alive treatment
 * (0 = never). */
uint64_t sp_settings_stream_inactivity(const sp_settings *s);

/* "string \"abc\"", "number 5", "table", "nil" ... : a Lua value for error messages. */
void sp_config_describe(lua_State *L, int idx, char *out, size_t len);

/* Prints the --check summary: ports, routes and what they do. */
void sp_gen_print_summary(const sp_gen *g, FILE *out);

#endif
