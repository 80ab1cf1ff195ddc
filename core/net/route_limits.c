#include "net/route_limits.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net/ip_table.h"

struct sp_route_counter {
    sp_route_counter *next;
    _Atomic uint64_t active, total, bytes_from_clients, bytes_from_targets;
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

void sp_route_limits_each(sp_route_limits *l, void (*fn)(void *ud, const sp_route_figures *f), void *ud)
{
    pthread_mutex_lock(&l->lock);
    for (sp_route_counter *rc = l->counters; rc; rc = rc->next) {
        sp_route_figures f = {
            .name = rc->name, .active = atomic_load(&rc->active), .total = atomic_load(&rc->total),
            .bytes_from_clients = atomic_load(&rc->bytes_from_clients),
            .bytes_from_targets = atomic_load(&rc->bytes_from_targets),
        };
        fn(ud, &f);
    }
    pthread_mutex_unlock(&l->lock);
}
