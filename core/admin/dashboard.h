/* dashboard: the page GET / serves on the admin endpoint (core/admin/dashboard.html,
 * compiled into the binary by CMake).
 *
 * The page holds no figures: its script reads /stats, /metrics and /routes with the
 * token the user types, so it is served without the token. Its inline <script> and
 * <style> are allowed by their SHA-256 in a Content-Security-Policy that allows nothing
 * else but requests back to the endpoint itself. */
#ifndef SP_ADMIN_DASHBOARD_H
#define SP_ADMIN_DASHBOARD_H

#include <stddef.h>

typedef struct sp_dashboard {
    const char *body;   /* the page (static storage) */
    size_t len;
    char csp[1024];     /* the Content-Security-Policy header's value */
    char etag[24];      /* "..." : the first 64 bits of the page's SHA-256, quoted */
} sp_dashboard;

/* Fills d from the embedded page; -1 and a message in err when the page cannot be
 * described (more inline elements than the policy has room for). */
int sp_dashboard_init(sp_dashboard *d, char *err, size_t errlen);

#endif
