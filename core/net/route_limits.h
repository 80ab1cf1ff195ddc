/* route_limits: per-route figures by route name, shared by all workers and kept across
 * reloads (a route keeps its counts when the configuration is reloaded): live and total
 * connections and bytes, for metrics, and the live counts behind
 * security.max_connections and security.max_connections_per_ip.
 *
 * Looking a name up takes a lock; each worker's copy of a route caches its counter, so
 * the data path only touches atomics. */
#ifndef SP_NET_ROUTE_LIMITS_H
#define SP_NET_ROUTE_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "pattern/ip_pattern.h"

typedef struct sp_route_limits sp_route_limits;
typedef struct sp_route_counter sp_route_counter;

/* Upper bounds (seconds) of the HTTP request duration histogram; +Inf is implied. */
#define SP_HTTP_DURATION_BUCKETS 11
extern const double sp_http_duration_bounds[SP_HTTP_DURATION_BUCKETS];

typedef struct sp_route_figures {
    const char *name;
    uint64_t active, total, bytes_from_clients, bytes_from_targets;
    uint64_t http_responses[6];    /* by status class (index status / 100) */
    uint64_t http_duration_buckets[SP_HTTP_DURATION_BUCKETS + 1], http_duration_sum_us;
} sp_route_figures;

sp_route_limits *sp_route_limits_new(void);
void sp_route_limits_free(sp_route_limits *l);

/* The counter of a route name, created on first use; NULL only when out of memory. */
sp_route_counter *sp_route_limits_get(sp_route_limits *l, const char *route);

/* Admits one connection from ip: 0, or 1 when the route has max_active connections, or
 * 2 when ip has max_per_ip on it (0 = no limit). */
int sp_route_counter_admit(sp_route_counter *rc, const sp_ip *ip, uint64_t max_active,
                           uint64_t max_per_ip, uint64_t now_ms);
/* The connection admitted for ip ended, having moved these bytes. per_ip: whether it was
 * admitted with a per-IP limit. */
void sp_route_counter_release(sp_route_counter *rc, const sp_ip *ip, bool per_ip,
                              uint64_t bytes_from_client, uint64_t bytes_from_target, uint64_t now_ms);

/* One HTTP request answered on this route: its status and how long it took (from the
 * complete request head to the end of the response). */
void sp_route_counter_http(sp_route_counter *rc, int status, uint64_t duration_us);

/* Calls fn for every route name seen so far. */
void sp_route_limits_each(sp_route_limits *l, void (*fn)(void *ud, const sp_route_figures *f), void *ud);

#endif
