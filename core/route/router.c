#include "route/router.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include "proto/http_message.h"

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

static bool header_ok(const sp_header_match *m, const sp_http_head *h)
{
    for (size_t i = 0; i < h->nfields; i++) {
        const sp_http_field *f = &h->fields[i];
        if (!sp_http_name_is(h, f, m->name))
            continue;
        const char *v = sp_http_value(h, f);
        if (m->value ? strcmp(v, m->value) == 0 : regexec(&m->re, v, 0, NULL, 0) == 0)
            return true;
    }
    return false;
}

static bool terminates(const sp_route *r)
{
    return r->tls.mode == SP_TLS_TERMINATE || r->tls.mode == SP_TLS_REENCRYPT;
}

const char *sp_route_mismatch(const sp_route *r, const sp_conn_info *info)
{
    if (info->per_request && !r->is_http)
        return "action.protocol";
    /* an HTTP route reads requests: plain ones, or out of the TLS it terminates; a TLS
     * route's domains are SNI, never the Host of a plain request */
    if (r->is_http && terminates(r) != (info->tls_offered != 0))
        return "action.tls";
    if (!r->is_http && r->tls.mode != SP_TLS_NONE && info->tls_offered == 0 && info->domain_len)
        return "action.tls";
    if (r->client_ip.n && !sp_ip_list_match(&r->client_ip, &info->client_ip))
        return "match.client_ip";
    if (domain_score(r, info) == INT_MIN)
        return "match.domains";
    if (!tls_version_ok(r, info))
        return "match.tls_version";
    if (info->http) {
        if (r->http.has_path && !sp_path_pattern_match(&r->http.path, info->path, info->path_len, NULL, NULL))
            return "match.path";
        for (size_t i = 0; i < r->http.nmatch_headers; i++)
            if (!header_ok(&r->http.match_headers[i], info->http))
                return "match.headers";
    }
    return NULL;
}

static int path_score(const sp_route *r) { return r->http.has_path ? r->http.path.specificity : -1; }

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
        if (!best || score > best_score || (score == best_score && path_score(r) > path_score(best))) {
            best = r;
            best_score = score;
        }
    }
    return best;
}
