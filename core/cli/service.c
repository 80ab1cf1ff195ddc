#include "cli/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "util/log.h"

static void notify(const sp_service *s, const char *state)
{
    if (!s->notify)
        return;
    int rc = sd_notify(0, state);
    if (rc < 0)
        sp_debug("sd_notify: %s", strerror(-rc));
}

static void on_watchdog(uv_timer_t *t)
{
    notify(t->data, "WATCHDOG=1");
}

void sp_service_init(sp_service *s, uv_loop_t *loop)
{
    const char *socket = getenv("NOTIFY_SOCKET");
    *s = (sp_service){.notify = socket && *socket};
    uv_timer_init(loop, &s->watchdog);
    s->watchdog.data = s;
    uint64_t usec = 0;
    if (s->notify && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t every_ms = usec / 2000 ? usec / 2000 : 1; /* half the interval, as systemd advises */
        uv_timer_start(&s->watchdog, on_watchdog, 0, every_ms);
        uv_unref((uv_handle_t *)&s->watchdog); /* the pings never keep the loop alive */
        sp_info("systemd watchdog: pinging every %llu ms", (unsigned long long)every_ms);
    }
}

static void send_status(sp_service *s, const char *prefix, const char *error)
{
    char state[1024];
    snprintf(state, sizeof state, "%sSTATUS=generation %llu, %llu connection(s)%s%s", prefix,
             (unsigned long long)s->generation, (unsigned long long)s->connections,
             error ? "; last reload refused: " : "", error ? error : "");
    /* one line: a newline in the error would start another assignment */
    for (char *c = state + strlen(prefix); *c; c++)
        if (*c == '\n')
            *c = ' ';
    notify(s, state);
    s->reported = true;
}

void sp_service_ready(sp_service *s, uint64_t generation, uint64_t connections)
{
    s->generation = generation;
    s->connections = connections;
    send_status(s, "READY=1\n", NULL);
}

void sp_service_reloading(sp_service *s)
{
    if (s->stopping)
        return; /* a reload refused while stopping is no news: systemd waits for the exit */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char state[128];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000);
    notify(s, state);
}

void sp_service_reloaded(sp_service *s, uint64_t generation, const char *error)
{
    if (s->stopping)
        return;
    s->generation = generation;
    send_status(s, "READY=1\n", error);
}

void sp_service_stopping(sp_service *s)
{
    s->stopping = true;
    notify(s, "STOPPING=1\nSTATUS=stopping: draining connections");
}

void sp_service_status(sp_service *s, uint64_t generation, uint64_t connections)
{
    if (s->reported && generation == s->generation && connections == s->connections)
        return;
    s->generation = generation;
    s->connections = connections;
    send_status(s, "", NULL);
}

void sp_service_close(sp_service *s)
{
    uv_close((uv_handle_t *)&s->watchdog, NULL);
}
