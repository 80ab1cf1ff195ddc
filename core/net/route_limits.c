#include "net/route_limits.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net/ip_table.h"

struct sp_route_counter {
    sp_route_counter *next;
    _Atomic uint64_t active, total, bytes_from_clients, bytes_from_targets;
    _Atomic uint64_t http_responses[6];
    _Atomic uint64_t http_duration[SP_HTTP_DURATION_BUCKETS + 1], http_duration_sum_us;
    sp_ip_table *ips;
    char name[];
};

struct sp_route_limits {
    pthread_mutex_t lock;          /* guards the list; counters are atomics */
    sp_route_counter *counters;
};

sp_route_limits *sp_route_limits_new(void)
{
    sp_route_limits *l = calloc(1, sizeof *l);
    if (l)
        pthread_mutex_init(&l->lock, NULL);
    return l;
}

void sp_route_limits_free(sp_route_limits *l)
{
    if (!l)
        return;
    while (l->counters) {
        sp_route_counter *rc = l->counters;
        l->counters = rc->next;
        sp_ip_table_free(rc->ips);
        free(rc);
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

sp_route_counter *sp_route_limits_get(sp_route_limits *l, const char *route)
{
    pthread_mutex_lock(&l->lock);
    sp_route_counter *rc = l->counters;
    while (rc && strcmp(rc->name, route) != 0)
        rc = rc->next;
    if (!rc && (rc = calloc(1, sizeof *rc + strlen(route) + 1))) {
        strcpy(rc->name, route);
        if (!(rc->ips = sp_ip_table_new())) {
            free(rc);
            rc = NULL;
        } else {
            rc->next = l->counters;
            l->counters = rc;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

int sp_route_counter_admit(sp_route_counter *rc, const sp_ip *ip, uint64_t max_active,
                           uint64_t max_per_ip, uint64_t now_ms)
{
    uint64_t n = atomic_fetch_add(&rc->active, 1);
    if (max_active && n >= max_active) {
        atomic_fetch_sub(&rc->active, 1);
        return 1;
    }
    if (max_per_ip && sp_ip_table_admit(rc->ips, ip, max_per_ip, 0, now_ms) != 0) {
        atomic_fetch_sub(&rc->active, 1);
        return 2;
    }
    atomic_fetch_add(&rc->total, 1);
    return 0;
}

void sp_route_counter_release(sp_route_counter *rc, const sp_ip *ip, bool per_ip,
                              uint64_t bytes_from_client, uint64_t bytes_from_target, uint64_t now_ms)
{
    atomic_fetch_sub(&rc->active, 1);
    atomic_fetch_add(&rc->bytes_from_clients, bytes_from_client);
    atomic_fetch_add(&rc->bytes_from_targets, bytes_from_target);
    if (per_ip)
        sp_ip_table_release(rc->ips, ip, now_ms);
}

const double sp_http_duration_bounds[SP_HTTP_DURATION_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void sp_route_counter_http(sp_route_counter *rc, int status, uint64_t duration_us)
{
    int i = 0;
    while (i < SP_HTTP_DURATION_BUCKETS && (double)duration_us / 1e6 > sp_http_duration_bounds[i])
        i++;
    atomic_fetch_add_explicit(&rc->http_duration[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rc->http_duration_sum_us, duration_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&rc->http_responses[(status / 100) % 6], 1, memory_order_relaxed);
}

void sp_route_limits_each(sp_route_limits *l, void (*fn)(void *ud, const sp_route_figures *f), void *ud)
{
    pthread_mutex_lock(&l->lock);
    for (sp_route_counter *rc = l->counters; rc; rc = rc->next) {
        sp_route_figures f = {
            .name = rc->name, .active = atomic_load(&rc->active), .total = atomic_load(&rc->total),
            .bytes_from_clients = atomic_load(&rc->bytes_from_clients),
            .bytes_from_targets = atomic_load(&rc->bytes_from_targets),
            .http_duration_sum_us = atomic_load(&rc->http_duration_sum_us),
        };
        for (int i = 0; i < 6; i++)
            f.http_responses[i] = atomic_load(&rc->http_responses[i]);
        for (int i = 0; i <= SP_HTTP_DURATION_BUCKETS; i++)
            f.http_duration_buckets[i] = atomic_load(&rc->http_duration[i]);
        fn(ud, &f);
    }
    pthread_mutex_unlock(&l->lock);
}
