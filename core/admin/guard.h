/* guard: what keeps a web page from driving the admin endpoint through a browser (pure).
 *
 * A page can make a browser send requests to the endpoint's address (a form POST, an
 * image, a no-cors fetch), or, after DNS rebinding, send them under its own name and
 * read the answers as same-origin. Three checks answer that:
 * - Host must name the endpoint: its listen address, "localhost" when it listens on
 *   loopback or on every address, any IP literal when it listens on every address (0.0.0.0
 *   or ::, which config only allows with a token), or a name in metrics.hosts. A
 *   rebinding page's requests carry the attacker's name. The port is not compared: it says
 *   nothing about who sent the request, and the endpoint may be reached through a
 *   forward (the quickstart's 8080) or a TLS front on 443.
 * - An Origin header, when there is one, must name the endpoint the same way ("null"
 *   never does).
 * - A state change (any method but GET and HEAD) must be a request no browser sends
 *   cross-origin without a CORS preflight, which the endpoint never grants: a
 *   Content-Type of application/json, or an X-Smartproxy-Admin header. */
#ifndef SP_ADMIN_GUARD_H
#define SP_ADMIN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pattern/domain_pattern.h"
#include "pattern/ip_pattern.h"

/* The custom header that marks a state change as sent on purpose (any value). */
#define SP_ADMIN_HEADER "X-Smartproxy-Admin"


/* Who the endpoint is, for the Host and Origin checks: its address and the names in
 * metrics.hosts (exact names or IP literals). */
typedef struct sp_admin_names {
    const sp_ip_endpoint *listen;
    const sp_domain_pattern *hosts;
    size_t nhosts;
} sp_admin_names;

/* host: a Host header value (name[:port]), NULL when there was none (never allowed). */
bool sp_admin_host_ok(const sp_admin_names *n, const char *host);

/* origin: an Origin header value, NULL when there was none (allowed). */
bool sp_admin_origin_ok(const sp_admin_names *n, const char *origin);

/* True when a browser could not send this cross-origin without a preflight:
 * content_type (NULL when absent) is application/json, or has_admin_header. */
bool sp_admin_request_is_deliberate(const char *content_type, bool has_admin_header);

#endif
