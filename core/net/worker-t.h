/* worker-t: the types of a worker thread that net/ and the layers above share.
 *
 * A worker is one thread with one uv loop; its connections, listeners, read buffers and
 * counters are touched by that thread alone. The functions that run a worker (its
 * mailbox, loading generations, the graceful stop) are in worker/worker.h, above every
 * layer that serves connections; the types live here, below them, so net/ can reach its
 * loop and counters without including anything above it (HAProxy keeps such types in
 * its *-t.h headers). */
#ifndef SP_NET_WORKER_T_H
#define SP_NET_WORKER_T_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "net/bufpool.h"
#include "net/registry.h"

struct sp_source_set;
typedef struct ssl_ctx_st SSL_CTX;

typedef struct sp_listener sp_listener;
typedef struct sp_conn sp_conn;

/* Route sets sent by Lua's sp.update_routes, for the main thread to load (latest wins). */
typedef struct sp_routes_mailbox {
    uv_mutex_t lock;
    char *pending;                    /* "return {...}", or NULL */
    uv_async_t wake;                  /* on the main loop */
} sp_routes_mailbox;

/* Process-wide figures shared by all workers (atomics only). */
typedef struct sp_process {
    _Atomic uint64_t active;          /* live proxied connections, for limits.max_connections */
    _Atomic uint64_t next_conn_id;
    struct sp_ip_table *ips;          /* per-client figures, for the per-IP limits */
    struct sp_route_limits *routes;   /* per-route live counts, for route security limits */
    sp_counters **counters;           /* every worker's, for sp.stats */
    struct sp_shared *shared;         /* sp.shared, the dictionary all workers see */
    struct sp_rate_table *rates;      /* security.rate_limit windows */
    struct sp_challenges *challenges; /* ACME HTTP-01 answers, served before routing */
    SSL_CTX *lua_tls[2];              /* sp.connect TLS: [0] no verification, [1] system CAs */
    sp_routes_mailbox *updates;       /* sp.update_routes -> the main thread */
    int nworkers;
} sp_process;

typedef struct sp_worker {
    int id;
    const char *file;                 /* config file name, for messages */
    sp_process *process;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;

    uv_mutex_t lock;                  /* guards the mailbox below */
    struct sp_source_set *mail_sources; /* a generation to load, or NULL */
    uint64_t mail_number;
    bool mail_stop;
    uint64_t mail_drain_ms;

    sp_gen *gen;                      /* current generation (one reference) */
    sp_listener *listeners;
    sp_conn *conns;                   /* live connections, for shutdown */
    uint64_t nconns;
    sp_counters counters;
    sp_bufpool pool;
    struct sp_http_pool *http_pool;   /* idle upstream HTTP connections (created on first use) */
    bool stopping;
    uv_timer_t drain_timer;

    uv_timer_t heartbeat;             /* stamps heartbeat_ms while the loop runs */
    _Atomic uint64_t heartbeat_ms;    /* coarse ms of the last stamp, read by the main thread */
    char name[24];                    /* "worker N", for reports */

    uv_sem_t ready;                   /* posted once the first generation is serving */
    int start_status;                 /* 0, 1 config error, 2 bind error */
    _Atomic int exited;               /* set when the loop has ended */
    void (*exit_hook)(void *arg);     /* then called from the worker thread */
    void *exit_hook_arg;
    /* Called by net/ once a connection has ended and been freed (nconns counts it
     * down), so the worker can finish a graceful stop. */
    void (*conn_gone)(struct sp_worker *w);
} sp_worker;

#endif
