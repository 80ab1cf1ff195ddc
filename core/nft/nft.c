/* The main thread's kernel forwarding state; see nft.h. */
#include "nft/nft.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nft/netlink.h"
#include "pattern/domain_pattern.h"
#include "util/log.h"
#include "util/metric.h"

struct sp_nft {
    sp_nft_ruleset *cur;   /* what is installed, NULL: nothing */
};

typedef struct figures {
    uint64_t packets, bytes;
    bool seen;
} figures;

static const sp_route *first_kernel_route(const sp_gen *g)
{
    for (size_t i = 0; i < g->nroutes; i++)
        if (sp_route_in_kernel(&g->routes[i]))
            return &g->routes[i];
    return NULL;
}

static const sp_route *route_by_index(const sp_gen *g, int index)
{
    for (size_t i = 0; i < g->nroutes; i++)
        if (g->routes[i].index == index)
            return &g->routes[i];
    return NULL;
}

/* A literal address, else the first address the name resolves to (once, at load). */
static int resolve(const char *host, sp_ip *out, char *why, size_t whylen)
{
    if (sp_ip_parse(host, out) == 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = sp_name_is_invalid(host) ? EAI_NONAME : getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "%s", gai_strerror(rc));
        return -1;
    }
    rc = -1;
    for (struct addrinfo *ai = res; ai && rc != 0; ai = ai->ai_next)
        rc = sp_ip_from_sockaddr(ai->ai_addr, out, NULL);
    freeaddrinfo(res);
    if (rc != 0)
        snprintf(why, whylen, "no IPv4 or IPv6 address");
    return rc;
}

void sp_nft_ruleset_destroy(sp_nft_ruleset *s)
{
    if (s) {
        sp_nft_ruleset_free(s);
        free(s);
    }
}

int sp_nft_prepare(const sp_gen *g, sp_nft_ruleset **out, char *err, size_t errlen)
{
    *out = NULL;
    const sp_route *first = first_kernel_route(g);
    if (!first)
        return 0;
    sp_ip *targets = calloc(g->nroutes, sizeof *targets);
    sp_nft_ruleset *s = calloc(1, sizeof *s);
    char msg[1200];
    if (!targets || !s) {
        free(targets);
        free(s);
        snprintf(err, errlen, "%s: out of memory", g->file);
        return -1;
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        if (!sp_route_in_kernel(r))
            continue;
        if (resolve(r->targets[0].host, &targets[i], msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: route \"%s\" (#%d): action.target.host: cannot resolve \"%s\" "
                     "for kernel forwarding: %s", g->file, r->name, r->index, r->targets[0].host, msg);
            free(targets);
            free(s);
            return -1;
        }
    }
    int rc = sp_nft_build(g, targets, s, msg, sizeof msg);
    free(targets);
    if (rc != 0) {
        snprintf(err, errlen, "%s: route \"%s\" (#%d): action.forwarding_engine: %s", g->file, first->name,
                 first->index, msg);
        free(s);
        return -1;
    }
    int bad = -1;
    if (sp_nft_netlink_apply(s, false, &bad, msg, sizeof msg) != 0) {
        const sp_route *r = bad >= 0 ? route_by_index(g, s->routes[bad].index) : NULL;
        if (!r)
            r = first;
        snprintf(err, errlen, "%s: route \"%s\" (#%d): action.forwarding_engine: \"nftables\" cannot be "
                 "set up: %s", g->file, r->name, r->index, msg);
        sp_nft_ruleset_destroy(s);
        return -1;
    }
    *out = s;
    return 0;
}

void sp_nft_print(const sp_nft_ruleset *s, FILE *out)
{
    if (!s)
        return;
    fprintf(out, "kernel rules (nftables, checked by the kernel in a dry run):\n");
    for (size_t i = 0; i < s->nrules; i++) {
        char text[600];
        const sp_nft_rule *r = &s->rules[i];
        sp_nft_rule_format(s, r, text, sizeof text);
        fprintf(out, "  %s %s %s: %s\n", sp_nft_family_name(s->routes[r->route].family), SP_NFT_TABLE,
                sp_nft_chain_name(r->chain), text);
    }
}

sp_nft *sp_nft_new(void)
{
    return calloc(1, sizeof(sp_nft));
}

typedef struct read_cx {
    const sp_nft_ruleset *s;
    sp_nft_family family;
    figures *out;      /* one per route of s */
} read_cx;

static void on_counter(void *ud, const char *name, uint64_t packets, uint64_t bytes)
{
    read_cx *cx = ud;
    for (size_t i = 0; i < cx->s->nroutes; i++)
        if (cx->s->routes[i].family == cx->family && strcmp(cx->s->routes[i].counter, name) == 0) {
            cx->out[i] = (figures){.packets = packets, .bytes = bytes, .seen = true};
            return;
        }
}

/* The kernel's counters of every route of s, or NULL (err filled). */
static figures *read_counters(const sp_nft_ruleset *s, char *err, size_t errlen)
{
    figures *f = calloc(s->nroutes ? s->nroutes : 1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int fam = 0; fam < 2; fam++) {
        if (!s->has_family[fam])
            continue;
        read_cx cx = {.s = s, .family = (sp_nft_family)fam, .out = f};
        if (sp_nft_netlink_counters((sp_nft_family)fam, on_counter, &cx, err, errlen) != 0) {
            free(f);
            return NULL;
        }
    }
    return f;
}

static int forwarding_enabled(sp_nft_family f)
{
    const char *path = f == SP_NFT_V6 ? "/proc/sys/net/ipv6/conf/all/forwarding" : "/proc/sys/net/ipv4/ip_forward";
    FILE *fp = fopen(path, "r");
    int v = -1;
    if (fp) {
        if (fscanf(fp, "%d", &v) != 1)
            v = -1;
        fclose(fp);
    }
    return v;
}

int sp_nft_install(sp_nft *n, sp_nft_ruleset *s, char *err, size_t errlen)
{
    if (!s && !n->cur)
        return 0; /* never installed anything: no netlink at all */
    if (s && n->cur) {
        /* carry each route's counter over by name (what moves between the read and the
         * commit below is lost: microseconds of traffic) */
        char why[300];
        figures *old = read_counters(n->cur, why, sizeof why);
        if (!old) {
            sp_warn("nftables: route counters restart from zero: %s", why);
        } else {
            for (size_t i = 0; i < s->nroutes; i++)
                for (size_t k = 0; k < n->cur->nroutes; k++)
                    if (old[k].seen && strcmp(s->routes[i].name, n->cur->routes[k].name) == 0) {
                        s->routes[i].packets = old[k].packets;
                        s->routes[i].bytes = old[k].bytes;
                    }
            free(old);
        }
    }
    sp_nft_ruleset empty = {0};
    if (sp_nft_netlink_apply(s ? s : &empty, true, NULL, err, errlen) != 0)
        return -1;
    sp_nft_ruleset_destroy(n->cur);
    n->cur = s;
    if (s) {
        for (int f = 0; f < 2; f++)
            if (s->has_family[f] && forwarding_enabled((sp_nft_family)f) == 0)
                sp_warn("nftables: %s forwarding is off in this network namespace (sysctl %s): only targets "
                        "on this host can be reached", f == SP_NFT_V6 ? "IPv6" : "IPv4",
                        f == SP_NFT_V6 ? "net.ipv6.conf.all.forwarding" : "net.ipv4.ip_forward");
        sp_info("nftables: %zu kernel route(s), %zu rule(s) installed in table(s)%s%s", s->nroutes, s->nrules,
                s->has_family[0] ? " ip smartproxy" : "", s->has_family[1] ? " ip6 smartproxy" : "");
    } else {
        sp_info("nftables: kernel routes removed");
    }
    return 0;
}

void sp_nft_uninstall(sp_nft *n)
{
    if (!n || !n->cur)
        return;
    char err[1024];
    if (sp_nft_install(n, NULL, err, sizeof err) != 0)
        sp_error("nftables: cannot remove the kernel routes (run smartproxy --nft-cleanup): %s", err);
}

void sp_nft_free(sp_nft *n)
{
    if (n) {
        sp_nft_ruleset_destroy(n->cur);
        free(n);
    }
}

int sp_nft_cleanup(char *err, size_t errlen)
{
    return sp_nft_netlink_remove(err, errlen);
}

void sp_nft_stats_json(sp_nft *n, sp_json *j)
{
    sp_json_key(j, "nftables");
    sp_json_obj_open(j);
    const sp_nft_ruleset *s = n ? n->cur : NULL;
    char err[512];
    figures *f = s ? read_counters(s, err, sizeof err) : NULL;
    if (s && !f) {
        sp_json_key(j, "error");
        sp_json_str(j, err);
    }
    sp_json_key(j, "rules");
    sp_json_uint(j, s ? s->nrules : 0);
    sp_json_key(j, "routes");
    sp_json_obj_open(j);
    for (size_t i = 0; s && f && i < s->nroutes; i++) {
        sp_json_key(j, s->routes[i].name);
        sp_json_obj_open(j);
        sp_json_key(j, "packets");
        sp_json_uint(j, f[i].packets);
        sp_json_key(j, "bytes");
        sp_json_uint(j, f[i].bytes);
        sp_json_obj_close(j);
    }
    sp_json_obj_close(j);
    sp_json_obj_close(j);
    free(f);
}


void sp_nft_metrics_text(sp_nft *n, sp_buf *b)
{
    const sp_nft_ruleset *s = n ? n->cur : NULL;
    char err[512];
    figures *f = s ? read_counters(s, err, sizeof err) : NULL;
    if (s && !f)
        sp_warn("nftables: cannot read the route counters: %s", err);
    static const char *const names[2] = {"smartproxy_nftables_packets_total", "smartproxy_nftables_bytes_total"};
    static const char *const help[2] = {"Packets forwarded in the kernel (nftables), both directions, by route.",
                                        "Bytes forwarded in the kernel (nftables), both directions, by route."};
    for (int m = 0; m < 2; m++) {
        sp_metric_head(b, names[m], SP_METRIC_COUNTER, help[m]);
        for (size_t i = 0; s && f && i < s->nroutes; i++) {
            sp_buf_appendf(b, "%s{route=\"", names[m]);
            sp_buf_append_label(b, s->routes[i].name);
            sp_buf_appendf(b, "\"} %llu\n", (unsigned long long)(m ? f[i].bytes : f[i].packets));
        }
    }
    free(f);
}
