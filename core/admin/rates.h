/* rates: connections, HTTP requests and bytes per second over the last RATE_WINDOW
 * seconds, for /stats and /metrics.
 *
 * The main thread samples the summed counters once a second into a ring; a rate is the
 * difference between the oldest and the newest sample over the time between them, so
 * it needs no lock and no work on the data path. */
#ifndef SP_ADMIN_RATES_H
#define SP_ADMIN_RATES_H

#include <stdint.h>

#include "net/registry.h"

#define SP_RATE_WINDOW 10   /* seconds the rates cover */

typedef struct sp_rates {
    double connections, from_clients, from_targets, http_requests;
} sp_rates;

typedef struct sp_rate_window {
    struct { uint64_t ms, total, from_clients, from_targets, http_requests; } samples[SP_RATE_WINDOW + 1];
    unsigned nsamples, next_sample;
} sp_rate_window;

/* Records the totals of c at now_ms (a monotonic clock), replacing the oldest sample. */
void sp_rate_window_sample(sp_rate_window *w, uint64_t now_ms, const sp_counts *c);
/* The rates between the oldest and the newest sample; zeros before there are two. */
void sp_rate_window_rates(const sp_rate_window *w, sp_rates *out);

#endif
