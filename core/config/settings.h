/* config/settings: the global settings of a configuration (everything but `routes`).
 *
 * settings.c reads workers, listen_addresses, timeouts, keep_alive, limits, security,
 * log, metrics, acme, certificates, proxy_ips and accept_proxy_protocol, over the
 * defaults of sp_settings_defaults. Errors are SPEC 10 messages raised through
 * config/schema.h. */
#ifndef SP_CONFIG_SETTINGS_H
#define SP_CONFIG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pattern/domain_pattern.h"
#include "pattern/ip_pattern.h"

struct cfg_cx;

typedef enum { SP_KEEPALIVE_STANDARD = 0, SP_KEEPALIVE_EXTENDED, SP_KEEPALIVE_IMMORTAL } sp_keepalive;

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

/* The values a configuration that says nothing gets (SPEC 3). */
void sp_settings_defaults(sp_settings *s);

/* For config.c: reads every top-level key but `routes` of the configuration table at
 * index top into the generation's settings. */
void cfg_compile_settings(struct cfg_cx *cx, int top);

/* Frees what the settings own (not the struct). */
void sp_settings_free(sp_settings *s);

/* The effective inactivity timeout for long-lived streams after keep-alive treatment
 * (0 = never). */
uint64_t sp_settings_stream_inactivity(const sp_settings *s);

#endif
