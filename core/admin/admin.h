/* admin: the admin and metrics HTTP endpoint, served by the main thread's loop.
 *
 * GET /healthz, GET /metrics (Prometheus text), GET /stats (JSON), GET /routes (the
 * compiled routes), POST /reload; HEAD wherever GET is. Every path but /healthz checks
 * Host and Origin and the token; POST needs a deliberate request (see guard.h).
 * One request per connection (Connection: close); heads are parsed with llhttp and
 * bounded in size and time. It reads figures only through the callbacks below, so it
 * knows nothing of workers or generations. */
#ifndef SP_ADMIN_ADMIN_H
#define SP_ADMIN_ADMIN_H

#include <uv.h>

#include "admin/guard.h"
#include "util/json.h"

/* What the endpoint accepts now: the current generation's metrics section. */
typedef struct sp_admin_access {
    const char *token;               /* the bearer token every path but /healthz needs, or NULL */
    const sp_domain_pattern *hosts;  /* metrics.hosts: more names Host and Origin may carry */
    size_t nhosts;
} sp_admin_access;

typedef struct sp_admin_hooks {
    void *ud;
    /* Each writes one JSON object; query is what followed '?' in the URL, or NULL. */
    void (*stats_json)(void *ud, const char *query, sp_json *j);
    void (*routes_json)(void *ud, const char *query, sp_json *j); /* ?tag=T: those tagged T */
    void (*metrics_text)(void *ud, sp_buf *out);  /* Prometheus text exposition */
    void (*access)(void *ud, sp_admin_access *out);
    /* Reloads now; returns 0 on success, else fills err. */
    int (*reload)(void *ud, char *err, size_t errlen);
} sp_admin_hooks;

typedef struct sp_admin sp_admin;

/* Listens on "host:port"; returns NULL and a message in err when it cannot. */
sp_admin *sp_admin_start(uv_loop_t *loop, const char *listen, const sp_admin_hooks *hooks,
                         char *err, size_t errlen);
/* Closes the listener and every open admin connection; frees itself when done. */
void sp_admin_stop(sp_admin *a);

#endif
