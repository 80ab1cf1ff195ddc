/* registry: counts connections by state and ended ones by termination reason.
 *
 * Each worker owns one sp_counters and is its only writer (relaxed atomics, no locks on
 * the data path); readers such as /stats sum all workers. Tests use it to prove that
 * every connection that began also ended: active returns to zero. sp_counts_metrics
 * describes each counter for the readers: /stats, /metrics and sp.stats(). */
#ifndef SP_NET_REGISTRY_H
#define SP_NET_REGISTRY_H

#include <stdatomic.h>
#include <stdint.h>

#include "tls/failure.h"
#include "util/metric.h"

typedef enum {
    SP_STATE_ACCEPTED = 0,   /* counted, not yet routed */
    SP_STATE_PROXY_HEADER,   /* reading the PROXY header of a trusted proxy */
    SP_STATE_SNIFFING,       /* waiting for the first bytes that routing needs */
    SP_STATE_HANDSHAKE,      /* terminating the client's TLS, before choosing a target */
    SP_STATE_CONNECTING,     /* resolving and connecting to a target */
    SP_STATE_PIPING,         /* bytes flow both ways */
    SP_STATE_LUA,            /* a socket handler runs */
    SP_STATE_HTTP,           /* HTTP request by request: reading a head or in an exchange */
    SP_STATE_CLOSING,        /* flushing what is queued, closing handles */
    SP_STATE_COUNT
} sp_conn_state;

typedef enum {
    SP_END_CLIENT_CLOSED = 0, SP_END_TARGET_CLOSED, SP_END_CLIENT_RESET, SP_END_TARGET_RESET,
    SP_END_CLIENT_ERROR, SP_END_TARGET_ERROR,
    SP_END_CONNECT_REFUSED, SP_END_CONNECT_TIMEOUT, SP_END_CONNECT_ERROR, SP_END_RESOLVE_FAILED,
    SP_END_NO_ROUTE, SP_END_BLOCKED, SP_END_INITIAL_DATA_TIMEOUT, SP_END_INACTIVITY_TIMEOUT,
    SP_END_MAX_LIFETIME, SP_END_LUA_ERROR, SP_END_SHUTDOWN, SP_END_INTERNAL_ERROR,
    SP_END_BAD_CLIENT_HELLO, SP_END_TLS_HANDSHAKE_FAILED, SP_END_TLS_ERROR,
    SP_END_UPSTREAM_TLS_FAILED, SP_END_BAD_PROXY_HEADER, SP_END_PROXY_HEADER_TIMEOUT,
    SP_END_MAX_CONNECTIONS_PER_IP, SP_END_CONNECTION_RATE, SP_END_HANDLER_DONE,
    SP_END_IP_BLOCKED, SP_END_IP_NOT_ALLOWED, SP_END_ROUTE_MAX_CONNECTIONS,
    SP_END_ROUTE_MAX_CONNECTIONS_PER_IP,
    SP_END_HTTP_BAD_REQUEST, SP_END_HTTP_DONE, SP_END_HTTP_IDLE_TIMEOUT,
    SP_END_UPSTREAM_TIMEOUT, SP_END_BAD_RESPONSE, SP_END_REQUEST_BODY_TIMEOUT,
    SP_END_LUA_BUDGET, SP_END_LUA_MEMORY,
    SP_END_COUNT
} sp_end_reason;

/* Connections refused before they became connections (closed at accept). */
typedef enum {
    SP_REFUSED_MAX_CONNECTIONS = 0, SP_REFUSED_ACCEPT_ERROR,
    SP_REFUSED_MAX_CONNECTIONS_PER_IP, SP_REFUSED_CONNECTION_RATE,   /* closed once the real client is known */
    SP_REFUSED_IP_BLOCKED, SP_REFUSED_IP_NOT_ALLOWED,                 /* a route's security */
    SP_REFUSED_ROUTE_MAX_CONNECTIONS, SP_REFUSED_ROUTE_MAX_CONNECTIONS_PER_IP,
    SP_REFUSED_COUNT
} sp_refused_reason;

/* Answers the proxy gives itself (not from a target), counted by cause. */
typedef enum {
    SP_HTTP_LOCAL_BAD_REQUEST = 0, SP_HTTP_LOCAL_NO_ROUTE, SP_HTTP_LOCAL_BLOCKED,
    SP_HTTP_LOCAL_UNAUTHORIZED, SP_HTTP_LOCAL_RATE_LIMITED, SP_HTTP_LOCAL_REDIRECT,
    SP_HTTP_LOCAL_TOO_LARGE, SP_HTTP_LOCAL_HEAD_TOO_LARGE, SP_HTTP_LOCAL_BAD_GATEWAY,
    SP_HTTP_LOCAL_GATEWAY_TIMEOUT, SP_HTTP_LOCAL_UNAVAILABLE, SP_HTTP_LOCAL_ACME,
    SP_HTTP_LOCAL_REQUEST_BODY_TIMEOUT,
    SP_HTTP_LOCAL_COUNT
} sp_http_local;

/* Upper bounds (seconds) of the upstream connect duration histogram; +Inf is implied. */
#define SP_CONNECT_BUCKETS 12
extern const double sp_connect_bucket_bounds[SP_CONNECT_BUCKETS];

/* The counters, declared once for the workers' atomic copies (sp_counters) and for the
 * readers' sum (sp_counts), so sp_counters_sum adds them all without naming them. A new
 * counter is a field here and a descriptor in sp_counts_metrics (registry.c). */
#define SP_COUNTER_FIELDS(T)                                                              \
    T by_state[SP_STATE_COUNT];                                                           \
    T ended[SP_END_COUNT];                                                                \
    T refused[SP_REFUSED_COUNT];                                                          \
    T accept_pauses;   /* a listener stopped accepting for a while (out of fds) */        \
    T total;                                                                              \
    T bytes_from_clients, bytes_from_targets;                                             \
    T bytes_to_clients, bytes_to_targets;  /* whatever produced them: pipe, HTTP, Lua */  \
    T tls_handshakes, tls_resumed;                                                        \
    T proxy_headers_accepted, proxy_headers_rejected;                                     \
    T tls_failures[SP_TLSFAIL_COUNT];          /* client side */                          \
    T upstream_tls_failures[SP_TLSFAIL_COUNT]; /* re-encrypt leg */                       \
    T connect_buckets[SP_CONNECT_BUCKETS + 1]; /* last: above every bound */              \
    T connect_sum_ns;                                                                     \
    /* HTTP: requests, responses by status class (index status / 100, 0: none sent),      \
     * local answers by status, upstream connections opened and reused */                 \
    T http_requests, http_responses[6];                                                   \
    T http_local[SP_HTTP_LOCAL_COUNT];                                                    \
    T http_upstream_new, http_upstream_reused, http_upstream_retried;

typedef struct sp_counters {
    SP_COUNTER_FIELDS(_Atomic uint64_t)
} sp_counters;

/* Records one successful TCP connect to a target that took ns nanoseconds. */
void sp_counters_observe_connect(sp_counters *c, uint64_t ns);

const char *sp_state_name(sp_conn_state s);
const char *sp_end_reason_name(sp_end_reason r);
const char *sp_refused_name(sp_refused_reason r);
const char *sp_tls_failure_name(sp_tls_failure f);
const char *sp_http_local_name(sp_http_local l);
/* "1xx" .. "5xx" for a status class (status / 100). */
const char *sp_http_class_name(int status_class);

static inline void sp_counter_add(_Atomic uint64_t *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

static inline uint64_t sp_counter_get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Sum of several workers' counters, for readers. */
typedef struct sp_counts {
    SP_COUNTER_FIELDS(uint64_t)
    uint64_t active;   /* the sum of by_state */
} sp_counts;

/* What /stats, /metrics and sp.stats() show of sp_counts (see util/metric.h). */
extern const sp_metric sp_counts_metrics[];
extern const size_t sp_counts_nmetrics;

void sp_counters_sum(sp_counters *const *workers, int n, sp_counts *out);

#endif
