/* rate_limit: shared sliding-window request counters (see rate_limit.h). */
#include "http/rate_limit.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct rate_entry {
    struct rate_entry *next;
    uint64_t window_start, window_ms, cur, prev;
    size_t key_len;
    char key[];
} rate_entry;

#define RATE_BUCKETS 4096
#define RATE_SWEEP_AT 100000 /* entries before idle ones are dropped on insert */

struct sp_rate_table {
    uv_mutex_t lock;
    rate_entry *buckets[RATE_BUCKETS];
    size_t n;
};

sp_rate_table *sp_rate_table_new(void)
{
    sp_rate_table *t = calloc(1, sizeof *t);
    if (t && uv_mutex_init(&t->lock) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void sp_rate_table_free(sp_rate_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < RATE_BUCKETS; i++)
        for (rate_entry *e = t->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    uv_mutex_destroy(&t->lock);
    free(t);
}

static uint64_t hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

/* Moves e's windows forward to the one holding now. */
static void roll(rate_entry *e, uint64_t now)
{
    uint64_t start = now - now % e->window_ms;
    if (start == e->window_start)
        return;
    e->prev = start - e->window_start == e->window_ms ? e->cur : 0;
    e->cur = 0;
    e->window_start = start;
}

static void sweep(sp_rate_table *t, uint64_t now)
{
    for (size_t i = 0; i < RATE_BUCKETS; i++) {
        rate_entry **pp = &t->buckets[i];
        while (*pp) {
            rate_entry *e = *pp;
            if (now >= e->window_start + 2 * e->window_ms) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

int sp_rate_admit(sp_rate_table *t, const char *key, size_t key_len, uint64_t limit, uint64_t window_ms,
                  uint64_t now, uint64_t *retry_after_ms)
{
    uint64_t h = hash(key, key_len) % RATE_BUCKETS;
    uv_mutex_lock(&t->lock);
    rate_entry *e = t->buckets[h];
    while (e && !(e->key_len == key_len && e->window_ms == window_ms && memcmp(e->key, key, key_len) == 0))
        e = e->next;
    if (!e) {
        if (t->n >= RATE_SWEEP_AT)
            sweep(t, now);
        e = calloc(1, sizeof *e + key_len + 1);
        if (!e) {
            uv_mutex_unlock(&t->lock);
            return 0; /* out of memory: fail open rather than refuse everyone */
        }
        memcpy(e->key, key, key_len);
        e->key_len = key_len;
        e->window_ms = window_ms;
        e->window_start = now - now % window_ms;
        e->next = t->buckets[h];
        t->buckets[h] = e;
        t->n++;
    }
    roll(e, now);
    uint64_t elapsed = now - e->window_start;
    /* the previous window's requests still inside the sliding window, pro rata */
    double estimate = (double)e->prev * (double)(window_ms - elapsed) / (double)window_ms + (double)e->cur;
    int limited = estimate + 1 > (double)limit;
    if (!limited) {
        e->cur++;
    } else if (retry_after_ms) {
        /* when the weighted previous window will have shrunk enough, or the next window */
        uint64_t wait = window_ms - elapsed;
        if (e->cur < limit && e->prev > 0) {
            double need = (double)(limit - e->cur - 1); /* allowed share of prev */
            double frac = need / (double)e->prev;       /* (window - elapsed') / window */
            double at = (1.0 - frac) * (double)window_ms;
            if (at > (double)elapsed && at < (double)window_ms)
                wait = (uint64_t)(at - (double)elapsed) + 1;
        }
        *retry_after_ms = wait;
    }
    uv_mutex_unlock(&t->lock);
    return limited;
}
