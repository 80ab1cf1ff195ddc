/* Likely mistakes in a configuration; see lint.h. */
#include "config/lint.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Every port of b is a port of a. */
static bool ports_cover(const sp_route *a, const sp_route *b)
{
    for (size_t i = 0; i < b->nports; i++) {
        unsigned p = b->ports[i].from;
        while (p <= b->ports[i].to) {
            size_t k = 0;
            while (k < a->nports && !(a->ports[k].from <= p && p <= a->ports[k].to))
                k++;
            if (k == a->nports)
                return false;
            p = a->ports[k].to + 1u;
        }
    }
    return true;
}

/* p matches every name d matches. */
static bool pattern_covers(const sp_domain_pattern *p, const sp_domain_pattern *d)
{
    if (p->kind == SP_DOMAIN_ANY)
        return true;
    if (d->kind == SP_DOMAIN_ANY || (p->kind == SP_DOMAIN_EXACT && d->kind != SP_DOMAIN_EXACT))
        return false;
    if (p->kind == d->kind && p->len == d->len && memcmp(p->name, d->name, p->len) == 0)
        return true;
    if (p->kind == SP_DOMAIN_GLOB)
        return d->kind == SP_DOMAIN_EXACT && sp_domain_pattern_match(p, d->name, d->len);
    /* a wildcard covers a name below its suffix, and a wildcard of a deeper suffix */
    return p->kind == SP_DOMAIN_WILDCARD && d->len > p->len + 1 &&
           d->name[d->len - p->len - 1] == '.' && memcmp(d->name + d->len - p->len, p->name, p->len) == 0;
}

/* a is chosen over b for a name b's pattern d (score: its specificity) matches, given
 * that a's pattern p matches it too: the router's order is priority, domain score, path
 * score, file order (route/router.c). a has no path of its own here. */
static bool wins(const sp_route *a, int a_score, const sp_route *b, int b_score)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    if (a_score != b_score)
        return a_score > b_score;
    return !b->http.has_path && a->index < b->index;
}

/* Every connection or request b matches, a matches too and is chosen over b. */
static bool shadows(const sp_route *a, const sp_route *b)
{
    if (a == b || a->nft.enabled || b->nft.enabled || a->disabled || b->disabled || a->is_http != b->is_http || a->tls.mode != b->tls.mode)
        return false;
    if (a->client_ip.n || a->ntls_versions || a->http.has_path || a->http.nmatch_headers)
        return false; /* a condition of its own may let b through */
    if (a->priority < b->priority || !ports_cover(a, b))
        return false;
    if (!b->ndomains) { /* b takes every name, and no name: only "*" or no domains do too */
        if (!a->ndomains)
            return wins(a, -1, b, -1);
        for (size_t i = 0; i < a->ndomains; i++)
            if (a->domains[i].kind == SP_DOMAIN_ANY)
                return wins(a, 0, b, -1);
        return false;
    }
    for (size_t k = 0; k < b->ndomains; k++) {
        const sp_domain_pattern *d = &b->domains[k];
        int d_score = sp_domain_pattern_specificity(d);
        bool beaten = !a->ndomains && wins(a, -1, b, d_score);
        for (size_t i = 0; i < a->ndomains && !beaten; i++)
            beaten = pattern_covers(&a->domains[i], d) &&
                     wins(a, sp_domain_pattern_specificity(&a->domains[i]), b, d_score);
        if (!beaten)
            return false;
    }
    return true;
}

/* The first plain-text stream route of `port` chosen before a plain-text HTTP route
 * there, with that route in *http; NULL when there is none. */
static const sp_route *stream_before_http(const sp_gen *g, uint16_t port, const sp_route **http)
{
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *s = &g->routes[i];
        if (s->is_http || s->tls.mode != SP_TLS_NONE || s->nft.enabled || s->disabled || !sp_route_on_port(s, port))
            continue;
        for (size_t k = 0; k < g->nroutes; k++) {
            const sp_route *h = &g->routes[k];
            if (!h->is_http || h->tls.mode != SP_TLS_NONE || h->disabled || !sp_route_on_port(h, port))
                continue;
            if (s->priority > h->priority || (s->priority == h->priority && s->index < h->index)) {
                *http = h;
                return s;
            }
        }
    }
    return NULL;
}

size_t sp_config_lint(const sp_gen *g, void (*each)(const sp_lint_warning *w, void *ud), void *ud)
{
    size_t n = 0;
    sp_lint_warning w;
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *b = &g->routes[i];
        for (size_t k = 0; k < g->nroutes; k++) {
            const sp_route *a = &g->routes[k];
            if (!shadows(a, b))
                continue;
            w.route = b;
            snprintf(w.message, sizeof w.message,
                     "route \"%s\" (#%d) never wins: route \"%s\" (#%d, priority %d) matches everything it "
                     "matches and is chosen first", b->name, b->index, a->name, a->index, a->priority);
            each(&w, ud);
            n++;
            break;
        }
    }
    for (size_t i = 0; i < g->nports; i++) {
        const sp_route *http = NULL;
        const sp_route *s = stream_before_http(g, g->ports[i].port, &http);
        if (!s)
            continue;
        w.route = s;
        snprintf(w.message, sizeof w.message,
                 "port %u: stream route \"%s\" (#%d, priority %d) is chosen before HTTP route \"%s\" (#%d, "
                 "priority %d) for the requests it matches, and then keeps the whole connection; give the "
                 "HTTP routes a higher priority if requests should reach them",
                 g->ports[i].port, s->name, s->index, s->priority, http->name, http->index, http->priority);
        each(&w, ud);
        n++;
    }
    return n;
}
