/* body_clock: the request body timeout rule (see body_clock.h). */
#include "http/body_clock.h"

void sp_body_clock_start(sp_body_clock *k, uint64_t now_ms)
{
    *k = (sp_body_clock){.running = true, .started_ms = now_ms};
}

void sp_body_clock_stop(sp_body_clock *k) { *k = (sp_body_clock){0}; }

void sp_body_clock_hold(sp_body_clock *k, bool held, uint64_t now_ms)
{
    if (!k->running || held == k->held)
        return;
    k->held = held;
    if (held)
        k->held_since_ms = now_ms;
    else
        k->held_ms += now_ms - k->held_since_ms;
}

uint64_t sp_body_clock_due(const sp_body_clock *k, uint64_t bytes, uint64_t limit_ms, uint64_t min_rate)
{
    if (!k->running || k->held || !limit_ms)
        return UINT64_MAX;
    uint64_t after = limit_ms;
    if (min_rate) {
        /* the rate bytes * 1000 / t falls below min_rate once t > bytes * 1000 / min_rate */
        if (bytes > UINT64_MAX / 1000)
            return UINT64_MAX;
        uint64_t slow_from = bytes * 1000 / min_rate + 1;
        if (slow_from > after)
            after = slow_from;
    }
    return k->started_ms + k->held_ms + after;
}

uint64_t sp_body_clock_elapsed(const sp_body_clock *k, uint64_t now_ms)
{
    if (!k->running)
        return 0;
    uint64_t held = k->held_ms + (k->held ? now_ms - k->held_since_ms : 0);
    return now_ms - k->started_ms - held;
}
