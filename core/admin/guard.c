#include "admin/guard.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool in_hosts(const sp_admin_names *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->nhosts; i++)
        if (sp_domain_pattern_match(&n->hosts[i], name, len))
            return true;
    return false;
}

/* hostport: "name", "name:port", "[v6]" or "[v6]:port", not NUL-terminated. */
static bool names_endpoint(const sp_admin_names *n, const char *hostport, size_t len)
{
    const char *name;
    size_t nl = sp_host_without_port(hostport, len, &name);
    char text[256];
    if (nl == 0 || nl >= sizeof text || memchr(name, '\0', nl))
        return false;
    memcpy(text, name, nl);
    text[nl] = 0;
    const sp_ip_endpoint *l = n->listen;
    sp_ip ip;
    if (sp_ip_parse(text, &ip) == 0) {
        /* An IP literal cannot be a rebound name. On a wildcard listen the endpoint is
         * every local address, and config requires a token there. */
        if (l->wildcard || memcmp(ip.b, l->ip.b, 16) == 0)
            return true;
    } else if ((l->loopback || l->wildcard) &&
               (strcasecmp(text, "localhost") == 0 || strcasecmp(text, "localhost.") == 0)) {
        return true;
    }
    return in_hosts(n, text, nl);
}

bool sp_admin_host_ok(const sp_admin_names *n, const char *host)
{
    return host && names_endpoint(n, host, strlen(host));
}

bool sp_admin_origin_ok(const sp_admin_names *n, const char *origin)
{
    if (!origin)
        return true;
    const char *rest;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return false; /* "null" (sandboxed frames, file: pages, redirects) or junk */
    return names_endpoint(n, rest, strlen(rest));
}

bool sp_admin_request_is_deliberate(const char *content_type, bool has_admin_header)
{
    if (has_admin_header)
        return true;
    if (!content_type)
        return false;
    static const char json[] = "application/json";
    const char *t = content_type + strspn(content_type, " \t");
    size_t n = strcspn(t, "; \t");
    return n == sizeof json - 1 && strncasecmp(t, json, n) == 0;
}
