#include "route/router.h"

#include <limits.h>

/* The specificity of the best pattern of r matching the name; INT_MIN when none does, -1
 * for a route without domains (it takes any name, below even "*"). */
static int domain_score(const sp_route *r, const sp_conn_info *info)
{
    if (!r->ndomains)
        return -1;
    int best = INT_MIN;
    for (size_t i = 0; i < r->ndomains; i++)
        if (sp_domain_pattern_match(&r->domains[i], info->domain, info->domain_len)) {
            int s = sp_domain_pattern_specificity(&r->domains[i]);
            if (s > best)
                best = s;
        }
    return best;
}

static bool tls_version_ok(const sp_route *r, const sp_conn_info *info)
{
    for (size_t i = 0; i < r->ntls_versions; i++)
        if (r->tls_versions[i] == info->tls_offered)
            return true;
    return r->ntls_versions == 0;
}

const char *sp_route_mismatch(const sp_route *r, const sp_conn_info *info)
{
    if (r->client_ip.n && !sp_ip_list_match(&r->client_ip, &info->client_ip))
        return "match.client_ip";
    if (domain_score(r, info) == INT_MIN)
        return "match.domains";
    if (!tls_version_ok(r, info))
        return "match.tls_version";
    return NULL;
}

const sp_route *sp_route_select(const sp_gen *g, uint16_t port, const sp_conn_info *info)
{
    const sp_port_entry *e = sp_gen_port(g, port);
    if (!e)
        return NULL;
    const sp_route *best = NULL;
    int best_score = INT_MIN;
    /* candidates are sorted by priority, then file order */
    for (size_t i = 0; i < e->nroutes; i++) {
        const sp_route *r = e->routes[i];
        if (best && r->priority < best->priority)
            break;
        if (sp_route_mismatch(r, info))
            continue;
        int score = domain_score(r, info);
        if (!best || score > best_score) {
            best = r;
            best_score = score;
        }
    }
    return best;
}
