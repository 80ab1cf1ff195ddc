#include "net/ip_table.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64
#define BUCKETS_PER_STRIPE 256
#define WINDOW_MS 60000

typedef struct entry {
    struct entry *next;
    sp_ip ip;
    uint64_t active;
    uint64_t window_start;     /* start of the current one-minute window */
    uint64_t in_window, in_previous;
} entry;

typedef struct stripe {
    pthread_mutex_t lock;
    entry *buckets[BUCKETS_PER_STRIPE];
} stripe;

struct sp_ip_table {
    stripe stripes[STRIPES];
};

static uint32_t hash_ip(const sp_ip *ip)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ ip->b[i]) * 16777619u;
    return h;
}

sp_ip_table *sp_ip_table_new(void)
{
    sp_ip_table *t = calloc(1, sizeof *t);
    if (t)
        for (int i = 0; i < STRIPES; i++)
            pthread_mutex_init(&t->stripes[i].lock, NULL);
    return t;
}

void sp_ip_table_free(sp_ip_table *t)
{
    if (!t)
        return;
    for (int i = 0; i < STRIPES; i++) {
        for (int b = 0; b < BUCKETS_PER_STRIPE; b++)
            for (entry *e = t->stripes[i].buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        pthread_mutex_destroy(&t->stripes[i].lock);
    }
    free(t);
}

/* Rolls the entry's windows forward to now. */
static void roll(entry *e, uint64_t now)
{
    if (now < e->window_start + WINDOW_MS)
        return;
    bool adjacent = now < e->window_start + 2 * WINDOW_MS;
    e->in_previous = adjacent ? e->in_window : 0;
    e->in_window = 0;
    e->window_start = now - (now - e->window_start) % WINDOW_MS;
}

/* Connections in the last minute: this window plus the overlapping part of the last. */
static uint64_t rate(const entry *e, uint64_t now)
{
    uint64_t elapsed = now - e->window_start;
    return e->in_window + e->in_previous * (WINDOW_MS - elapsed) / WINDOW_MS;
}

static entry **find(stripe *s, uint32_t h, const sp_ip *ip)
{
    entry **pp = &s->buckets[(h / STRIPES) % BUCKETS_PER_STRIPE];
    while (*pp && memcmp(&(*pp)->ip, ip, sizeof *ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

int sp_ip_table_admit(sp_ip_table *t, const sp_ip *ip, uint64_t max_active, uint64_t per_minute,
                      uint64_t now_ms)
{
    uint32_t h = hash_ip(ip);
    stripe *s = &t->stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    entry **pp = find(s, h, ip);
    entry *e = *pp;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&s->lock);
            return 0; /* out of memory: admit rather than refuse everyone */
        }
        e->ip = *ip;
        e->window_start = now_ms;
        *pp = e;
    }
    roll(e, now_ms);
    int verdict = 0;
    if (max_active && e->active >= max_active)
        verdict = 1;
    else if (per_minute && rate(e, now_ms) >= per_minute)
        verdict = 2;
    else {
        e->active++;
        e->in_window++;
    }
    if (e->active == 0 && e->in_window == 0 && e->in_previous == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&s->lock);
    return verdict;
}

void sp_ip_table_release(sp_ip_table *t, const sp_ip *ip, uint64_t now_ms)
{
    uint32_t h = hash_ip(ip);
    stripe *s = &t->stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    entry **pp = find(s, h, ip);
    entry *e = *pp;
    if (e) {
        if (e->active)
            e->active--;
        roll(e, now_ms);
        /* without a rate limit the windows only keep an idle entry for a minute */
        if (e->active == 0 && rate(e, now_ms) == 0) {
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void sp_ip_table_sweep(sp_ip_table *t, uint64_t now_ms)
{
    for (int i = 0; i < STRIPES; i++) {
        stripe *s = &t->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (int b = 0; b < BUCKETS_PER_STRIPE; b++)
            for (entry **pp = &s->buckets[b]; *pp;) {
                entry *e = *pp;
                roll(e, now_ms);
                if (e->active == 0 && rate(e, now_ms) == 0) {
                    *pp = e->next;
                    free(e);
                } else {
                    pp = &e->next;
                }
            }
        pthread_mutex_unlock(&s->lock);
    }
}

size_t sp_ip_table_top(sp_ip_table *t, sp_ip_count *out, size_t n)
{
    size_t have = 0;
    for (int i = 0; i < STRIPES && n; i++) {
        stripe *s = &t->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (int b = 0; b < BUCKETS_PER_STRIPE; b++)
            for (entry *e = s->buckets[b]; e; e = e->next) {
                if (!e->active)
                    continue;
                /* insertion into a small sorted array: n is a handful (top N) */
                size_t pos = have < n ? have : n;
                while (pos > 0 && out[pos - 1].active < e->active)
                    pos--;
                if (pos >= n)
                    continue;
                size_t last = have < n ? have : n - 1;
                memmove(&out[pos + 1], &out[pos], (last - pos) * sizeof *out);
                out[pos] = (sp_ip_count){.ip = e->ip, .active = e->active};
                if (have < n)
                    have++;
            }
        pthread_mutex_unlock(&s->lock);
    }
    return have;
}
