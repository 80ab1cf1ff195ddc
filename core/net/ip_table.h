/* ip_table: per-client-address figures shared by all workers: live connections (for
 * limits.max_connections_per_ip) and new connections per minute (for
 * limits.connection_rate_per_minute), plus the busiest addresses for metrics.
 *
 * The only structure on the data path shared across workers: 64 lock stripes keyed by
 * a hash of the address, so two workers contend only when their clients hash alike, and
 * a lock is held for a few instructions. An address is forgotten once it has no live
 * connection and its rate window has passed. */
#ifndef SP_NET_IP_TABLE_H
#define SP_NET_IP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pattern/ip_pattern.h"

typedef struct sp_ip_table sp_ip_table;

typedef struct sp_ip_count {
    sp_ip ip;
    uint64_t active;
} sp_ip_count;

sp_ip_table *sp_ip_table_new(void);
void sp_ip_table_free(sp_ip_table *t);

/* Admits one new connection from ip: counts it in the rate window and as live. Returns
 * 0, or 1 when ip already has max_active live connections, or 2 when it opened
 * per_minute connections in the last minute (sliding window); a refused connection is
 * counted in neither. 0 for a limit means none. */
int sp_ip_table_admit(sp_ip_table *t, const sp_ip *ip, uint64_t max_active, uint64_t per_minute,
                      uint64_t now_ms);
/* A connection admitted for ip ended. */
void sp_ip_table_release(sp_ip_table *t, const sp_ip *ip, uint64_t now_ms);

/* Forgets addresses with no live connection and an empty rate window (the main thread
 * calls it every minute so that many one-off clients do not accumulate). */
void sp_ip_table_sweep(sp_ip_table *t, uint64_t now_ms);

/* The n addresses with the most live connections, busiest first; returns how many. */
size_t sp_ip_table_top(sp_ip_table *t, sp_ip_count *out, size_t n);

#endif
