/* The pure rule builder; see rules.h. */
#include "nft/rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

const char *sp_nft_chain_name(sp_nft_chain c)
{
    static const char *const names[] = {"prerouting", "output", "postrouting", "count_in", "count_out"};
    return c < SP_NFT_CHAINS ? names[c] : "?";
}

const char *sp_nft_family_name(sp_nft_family f)
{
    return f == SP_NFT_V6 ? "ip6" : "ip";
}

static size_t addr_len(sp_nft_family f)
{
    return f == SP_NFT_V6 ? 16 : 4;
}

/* One address condition of a list, or none (has = false: any address). */
typedef struct cond {
    bool has;
    sp_nft_addr_cond c;
} cond;

typedef struct cond_list {
    cond *items;
    size_t n;
    bool present;   /* the list was given (an allow list then needs its trailing drop) */
} cond_list;

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* The patterns of l that can match an address of family f, as conditions. An absent
 * list is one "any" entry; a list of which nothing applies has no entries. */
static int make_conds(const sp_ip_list *l, sp_nft_family f, cond_list *out)
{
    *out = (cond_list){.present = l->n > 0};
    out->items = calloc(l->n ? l->n : 1, sizeof *out->items);
    if (!out->items)
        return -1;
    if (l->n == 0) {
        out->n = 1;
        return 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        const sp_ip_pattern *p = &l->items[i];
        cond c = {.has = true};
        if (f == SP_NFT_V4) {
            bool applies = true;
            for (int k = 0; k < 12; k++)
                applies &= (v4_mapped_prefix[k] & p->mask[k]) == p->value[k];
            if (!applies)
                continue;
            memcpy(c.c.value, p->value + 12, 4);
            memcpy(c.c.mask, p->mask + 12, 4);
            c.has = !all_zero(c.c.mask, 4);
        } else {
            bool v4_only = true;
            for (int k = 0; k < 12; k++)
                v4_only &= p->mask[k] == 0xff && p->value[k] == v4_mapped_prefix[k];
            if (v4_only)
                continue;
            memcpy(c.c.value, p->value, 16);
            memcpy(c.c.mask, p->mask, 16);
            c.has = !all_zero(c.c.mask, 16);
        }
        if (!c.has) { /* matches every address: the list means "anyone" */
            out->items[0] = c;
            out->n = 1;
            return 0;
        }
        out->items[out->n++] = c;
    }
    return 0;
}

typedef struct builder {
    sp_nft_ruleset *s;
    size_t cap;
    char *err;
    size_t errlen;
    bool failed;
} builder;

static sp_nft_rule *add_rule(builder *b, const sp_nft_rule *proto, const cond *c1, const cond *c2)
{
    if (b->failed)
        return NULL;
    if (b->s->nrules >= SP_NFT_MAX_RULES) {
        snprintf(b->err, b->errlen, "more than %d kernel rules (fewer ports, ranges or address patterns?)",
                 SP_NFT_MAX_RULES);
        b->failed = true;
        return NULL;
    }
    if (b->s->nrules == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        sp_nft_rule *r = realloc(b->s->rules, cap * sizeof *r);
        if (!r) {
            snprintf(b->err, b->errlen, "out of memory");
            b->failed = true;
            return NULL;
        }
        b->s->rules = r;
        b->cap = cap;
    }
    sp_nft_rule *r = &b->s->rules[b->s->nrules++];
    *r = *proto;
    r->nsaddr = 0;
    if (c1 && c1->has)
        r->saddr[r->nsaddr++] = c1->c;
    if (c2 && c2->has)
        r->saddr[r->nsaddr++] = c2->c;
    return r;
}

static int route_order(const void *a, const void *b)
{
    const sp_route *x = *(const sp_route *const *)a, *y = *(const sp_route *const *)b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->index - y->index;
}

static void build_route(builder *b, const sp_route *r, size_t ri)
{
    const sp_nft_route *nr = &b->s->routes[ri];
    cond_list clients, allow, block;
    bool ok = make_conds(&r->client_ip, nr->family, &clients) == 0;
    ok &= make_conds(&r->ip_allow_list, nr->family, &allow) == 0;
    ok &= make_conds(&r->ip_block_list, nr->family, &block) == 0;
    if (!ok) {
        snprintf(b->err, b->errlen, "out of memory");
        b->failed = true;
    }
    static const uint8_t protos[2] = {IPPROTO_TCP, IPPROTO_UDP};
    for (int pi = 0; pi < 2; pi++) {
        if (!(r->nft.protocols & (1 << pi)))
            continue;
        for (size_t k = 0; k < r->nports; k++) {
            sp_nft_rule base = {.route = ri, .l4proto = protos[pi], .port_from = r->ports[k].from,
                                .port_to = r->ports[k].to, .fib_local = true};
            for (sp_nft_chain ch = SP_NFT_PREROUTING; ch <= SP_NFT_OUTPUT; ch++) {
                base.chain = ch;
                base.action = SP_NFT_DROP;
                if (block.present)
                    for (size_t c = 0; c < clients.n; c++)
                        for (size_t x = 0; x < block.n; x++)
                            add_rule(b, &base, &clients.items[c], &block.items[x]);
                base.action = SP_NFT_DNAT;
                for (size_t c = 0; c < clients.n; c++)
                    for (size_t x = 0; x < allow.n; x++)
                        add_rule(b, &base, &clients.items[c], &allow.items[x]);
                base.action = SP_NFT_DROP;
                if (allow.present && !(allow.n == 1 && !allow.items[0].has)) /* "*" allows all */
                    for (size_t c = 0; c < clients.n; c++)
                        add_rule(b, &base, &clients.items[c], NULL);
            }
            sp_nft_rule cnt = {.route = ri, .l4proto = protos[pi], .port_from = r->ports[k].from,
                               .port_to = r->ports[k].to, .ct_dnat = true, .ct_reply_target = true};
            for (sp_nft_chain ch = SP_NFT_COUNT_IN; ch <= SP_NFT_COUNT_OUT; ch++) {
                cnt.chain = ch;
                cnt.not_loopback = ch == SP_NFT_COUNT_IN;
                if (nr->max_rate) {
                    cnt.action = SP_NFT_LIMIT_DROP;
                    add_rule(b, &cnt, NULL, NULL);
                }
                cnt.action = SP_NFT_COUNT;
                add_rule(b, &cnt, NULL, NULL);
            }
            if (!r->nft.preserve_source_ip && (nr->target_port == 0 || k == 0)) {
                sp_nft_rule m = {.chain = SP_NFT_POSTROUTING, .route = ri, .l4proto = protos[pi],
                                 .ct_dnat = true, .daddr_target = true, .action = SP_NFT_MASQUERADE,
                                 .port_from = nr->target_port ? nr->target_port : r->ports[k].from,
                                 .port_to = nr->target_port ? nr->target_port : r->ports[k].to};
                add_rule(b, &m, NULL, NULL);
            }
        }
    }
    free(clients.items);
    free(allow.items);
    free(block.items);
}

int sp_nft_build(const sp_gen *g, const sp_ip *targets, sp_nft_ruleset *out, char *err, size_t errlen)
{
    *out = (sp_nft_ruleset){0};
    builder b = {.s = out, .err = err, .errlen = errlen};
    size_t n = 0;
    for (size_t i = 0; i < g->nroutes; i++)
        n += sp_route_in_kernel(&g->routes[i]);
    if (n == 0)
        return 0;
    const sp_route **order = calloc(n, sizeof *order);
    out->routes = calloc(n, sizeof *out->routes);
    if (!order || !out->routes) {
        snprintf(err, errlen, "out of memory");
        free(order);
        sp_nft_ruleset_free(out);
        return -1;
    }
    for (size_t i = 0, k = 0; i < g->nroutes; i++)
        if (sp_route_in_kernel(&g->routes[i]))
            order[k++] = &g->routes[i];
    qsort(order, n, sizeof *order, route_order);
    for (size_t k = 0; k < n; k++) {
        const sp_route *r = order[k];
        size_t gi = (size_t)(r - g->routes);
        sp_nft_route *nr = &out->routes[out->nroutes++];
        nr->name = strdup(r->name);
        if (!nr->name) {
            snprintf(err, errlen, "out of memory");
            b.failed = true;
            break;
        }
        nr->index = r->index;
        const sp_ip *t = &targets[gi];
        nr->family = sp_ip_is_v4(t) ? SP_NFT_V4 : SP_NFT_V6;
        memcpy(nr->target, nr->family == SP_NFT_V4 ? t->b + 12 : t->b, addr_len(nr->family));
        nr->target_port = r->targets[0].port_kind == SP_PORT_FIXED ? r->targets[0].port : 0;
        nr->max_rate = r->nft.max_rate;
        snprintf(nr->counter, sizeof nr->counter, "c%d", r->index);
        snprintf(nr->limit, sizeof nr->limit, "l%d", r->index);
        out->has_family[nr->family] = true;
        build_route(&b, r, out->nroutes - 1);
        if (b.failed)
            break;
    }
    free(order);
    if (b.failed) {
        sp_nft_ruleset_free(out);
        return -1;
    }
    return 0;
}

void sp_nft_ruleset_free(sp_nft_ruleset *s)
{
    for (size_t i = 0; i < s->nroutes; i++)
        free(s->routes[i].name);
    free(s->routes);
    free(s->rules);
    *s = (sp_nft_ruleset){0};
}

/* ---- text ---- */

typedef struct out {
    char *buf;
    size_t len, pos;
} out;

__attribute__((format(printf, 2, 3)))
static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + (o->pos < o->len ? o->pos : o->len),
                      o->pos < o->len ? o->len - o->pos : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->pos += (size_t)n;
}

static void put_addr(out *o, sp_nft_family f, const uint8_t *a)
{
    char text[INET6_ADDRSTRLEN];
    inet_ntop(f == SP_NFT_V6 ? AF_INET6 : AF_INET, a, text, sizeof text);
    put(o, "%s", text);
}

/* The prefix length of a mask made of leading ones, or -1. */
static int prefix_len(const uint8_t *m, size_t n)
{
    int bits = 0;
    size_t i = 0;
    for (; i < n && m[i] == 0xff; i++)
        bits += 8;
    if (i < n) {
        uint8_t b = m[i];
        while (b & 0x80) {
            bits++;
            b = (uint8_t)(b << 1);
        }
        if (b)
            return -1;
        for (i++; i < n; i++)
            if (m[i])
                return -1;
    }
    return bits;
}

static const char *proto_name(uint8_t p)
{
    return p == IPPROTO_TCP ? "tcp" : p == IPPROTO_UDP ? "udp" : "?";
}

static void put_ports(out *o, uint16_t from, uint16_t to)
{
    if (from == to)
        put(o, "%u", from);
    else
        put(o, "%u-%u", from, to);
}

size_t sp_nft_rule_format(const sp_nft_ruleset *s, const sp_nft_rule *r, char *buf, size_t len)
{
    out o = {.buf = buf, .len = len};
    if (len)
        buf[0] = 0;
    const sp_nft_route *nr = &s->routes[r->route];
    const char *fam = sp_nft_family_name(nr->family);
    size_t al = addr_len(nr->family);
    if (r->not_loopback)
        put(&o, "meta iiftype != loopback ");
    if (r->fib_local)
        put(&o, "fib daddr type local ");
    if (r->ct_dnat)
        put(&o, "ct status dnat ");
    if (r->chain == SP_NFT_COUNT_IN || r->chain == SP_NFT_COUNT_OUT) {
        put(&o, "ct original protocol %s ct original proto-dst ", proto_name(r->l4proto));
        put_ports(&o, r->port_from, r->port_to);
        put(&o, " ");
    } else {
        put(&o, "meta l4proto %s ", proto_name(r->l4proto));
    }
    if (r->daddr_target) {
        put(&o, "%s daddr ", fam);
        put_addr(&o, nr->family, nr->target);
        put(&o, " ");
    }
    if (r->chain != SP_NFT_COUNT_IN && r->chain != SP_NFT_COUNT_OUT) {
        put(&o, "th dport ");
        put_ports(&o, r->port_from, r->port_to);
        put(&o, " ");
    }
    for (size_t i = 0; i < r->nsaddr; i++) {
        const sp_nft_addr_cond *c = &r->saddr[i];
        int pl = prefix_len(c->mask, al);
        put(&o, "%s saddr ", fam);
        if (pl < 0) {
            put(&o, "& ");
            put_addr(&o, nr->family, c->mask);
            put(&o, " == ");
        }
        put_addr(&o, nr->family, c->value);
        if (pl >= 0 && (size_t)pl != al * 8)
            put(&o, "/%d", pl);
        put(&o, " ");
    }
    if (r->ct_reply_target) {
        put(&o, "ct reply %s saddr ", fam);
        put_addr(&o, nr->family, nr->target);
        put(&o, " ");
        if (nr->target_port)
            put(&o, "ct reply proto-src %u ", nr->target_port);
    }
    switch (r->action) {
    case SP_NFT_DNAT:
        put(&o, "dnat %s to ", fam);
        if (nr->family == SP_NFT_V6 && nr->target_port)
            put(&o, "[");
        put_addr(&o, nr->family, nr->target);
        if (nr->target_port)
            put(&o, "%s:%u", nr->family == SP_NFT_V6 ? "]" : "", nr->target_port);
        break;
    case SP_NFT_DROP: put(&o, "drop"); break;
    case SP_NFT_MASQUERADE: put(&o, "masquerade"); break;
    case SP_NFT_LIMIT_DROP: put(&o, "limit name \"%s\" drop", nr->limit); break;
    case SP_NFT_COUNT: put(&o, "counter name \"%s\" accept", nr->counter); break;
    }
    return o.pos < len ? o.pos : (len ? len - 1 : 0);
}
