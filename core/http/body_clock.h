/* body_clock: when a request body that arrives too slowly is cut (timeouts.request_body,
 * limits.request_body_min_rate), so that a client trickling a body cannot hold a client
 * and an upstream connection for the stream inactivity timeout.
 *
 * The clock runs from when the proxy starts waiting for the body (its head was written
 * to the target; with "Expect: 100-continue", from the 100 or the first body byte). Time
 * the proxy itself holds the client back (the target not reading what it was sent) is
 * not counted. The body times out once, on that clock, `limit_ms` has passed AND its
 * average rate (bytes received / time counted) is below `min_rate` bytes/s; min_rate 0:
 * at `limit_ms` whatever the rate; limit_ms 0: never. Pure: the caller gives the time. */
#ifndef SP_HTTP_BODY_CLOCK_H
#define SP_HTTP_BODY_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sp_body_clock {
    bool running, held;
    uint64_t started_ms;
    uint64_t held_ms;          /* time held in holds already over */
    uint64_t held_since_ms;    /* when the current hold began */
} sp_body_clock;

void sp_body_clock_start(sp_body_clock *k, uint64_t now_ms);
void sp_body_clock_stop(sp_body_clock *k);
/* The proxy holds the client back (held) or waits for it again (!held). */
void sp_body_clock_hold(sp_body_clock *k, bool held, uint64_t now_ms);

/* When the body times out if no further byte comes; UINT64_MAX: not while it is not
 * running or held, or when limit_ms is 0. More bytes move it later. */
uint64_t sp_body_clock_due(const sp_body_clock *k, uint64_t bytes, uint64_t limit_ms, uint64_t min_rate);

/* The time counted so far (for logs). */
uint64_t sp_body_clock_elapsed(const sp_body_clock *k, uint64_t now_ms);

#endif
