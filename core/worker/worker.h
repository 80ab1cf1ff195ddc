/* worker: one thread, one uv loop, its own listeners and its own Lua state per
 * configuration generation.
 *
 * The main thread talks to a worker only through its mailbox (a mutex-protected slot
 * and a uv_async wake-up): "load this source set as generation N" and "stop, draining
 * for up to T ms". Everything else a worker owns is touched by its thread alone. */
#ifndef SP_WORKER_WORKER_H
#define SP_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "config/load.h"
#include "lua/budget.h"
#include "net/registry.h"

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

/* A free list of fixed-size read buffers, so the pipe does not hit malloc per read. */
typedef struct sp_bufpool {
    void **free;
    size_t n, cap;
} sp_bufpool;

#define SP_READ_BUF_SIZE (64 * 1024)

typedef struct sp_worker {
    int id;
    const char *file;                 /* config file name, for messages */
    sp_process *process;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;

    uv_mutex_t lock;                  /* guards the mailbox below */
    sp_source_set *mail_sources;      /* a generation to load, or NULL */
    uint64_t mail_number;
    bool mail_stop;
    uint64_t mail_drain_ms;

    sp_gen *gen;                      /* current generation (one reference) */
    struct sp_route_states *route_states; /* the state of gen's routes (one reference) */
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
    sp_lua_budget budget;             /* timeouts.lua_budget for this thread's Lua */
    char name[24];                    /* "worker N", for reports */

    uv_sem_t ready;                   /* posted once the first generation is serving */
    int start_status;                 /* 0, 1 config error, 2 bind error */
    _Atomic int exited;               /* set when the loop has ended */
    void (*exit_hook)(void *arg);     /* then called from the worker thread */
    void *exit_hook_arg;
} sp_worker;

/* Starts the thread; it loads `sources` as generation 1 and opens its listeners, then
 * posts w->ready. Returns non-zero if the thread could not start. */
int sp_worker_start(sp_worker *w, int id, const char *file, sp_process *process,
                    sp_source_set *sources);
/* Asks the worker to load a new generation; it keeps its own reference to sources. */
void sp_worker_post_generation(sp_worker *w, sp_source_set *sources, uint64_t number);
/* Asks the worker to stop accepting and drain its connections for up to drain_ms. */
void sp_worker_post_stop(sp_worker *w, uint64_t drain_ms);
void sp_worker_join(sp_worker *w);

/* How often a worker's loop stamps its heartbeat. */
#define SP_HEARTBEAT_MS 250
/* Milliseconds since the worker's loop last ran (its heartbeat), for the main thread. */
uint64_t sp_worker_silence_ms(const sp_worker *w);

/* Called by connections: a connection ended and was freed. */
void sp_worker_conn_gone(sp_worker *w);

void *sp_bufpool_get(sp_bufpool *p);
void sp_bufpool_put(sp_bufpool *p, void *buf);

#endif
