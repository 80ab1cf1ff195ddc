/* route_limits: live-connection counts per route name, shared by all workers and kept
 * across reloads (a route keeps its count when the configuration is reloaded), for
 * security.max_connections and security.max_connections_per_ip. */
#ifndef SP_NET_ROUTE_LIMITS_H
#define SP_NET_ROUTE_LIMITS_H

#include <stdint.h>

#include "route/ip_pattern.h"

typedef struct sp_route_limits sp_route_limits;
typedef struct sp_route_counter sp_route_counter;

sp_route_limits *sp_route_limits_new(void);
void sp_route_limits_free(sp_route_limits *l);

/* The counter of a route name, created on first use; NULL only when out of memory. */
sp_route_counter *sp_route_limits_get(sp_route_limits *l, const char *route);

/* Admits one connection from ip: 0, or 1 when the route has max_active connections, or
 * 2 when ip has max_per_ip on it (0 = no limit). */
int sp_route_counter_admit(sp_route_counter *rc, const sp_ip *ip, uint64_t max_active,
                           uint64_t max_per_ip, uint64_t now_ms);
void sp_route_counter_release(sp_route_counter *rc, const sp_ip *ip, uint64_t now_ms);

#endif
