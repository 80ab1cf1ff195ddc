/* The --check summary; see print.h. */
#include "config/print.h"

#include "config/describe.h"
#include "proto/client_hello.h"

static void print_target(const sp_target *target, FILE *out)
{
    sp_target_desc t;
    sp_target_describe(target, &t);
    fprintf(out, t.host_is_ipv6 ? "[%s]" : "%s", t.host);
    if (t.port_kind == SP_PORT_FIXED)
        fprintf(out, ":%u", t.port);
    else
        fprintf(out, t.port_kind == SP_PORT_PRESERVE ? ":<%s>" : ":%s", t.port_word);
}

void sp_gen_print_summary(const sp_gen *g, FILE *out)
{
    fprintf(out, "%s: configuration OK: %zu route(s) on %zu port(s)\n", g->file, g->nroutes, g->nports);
    fputs("ports:", out);
    for (size_t i = 0; i < g->nports; i++) {
        /* print runs of consecutive ports as ranges */
        size_t j = i;
        while (j + 1 < g->nports && g->ports[j + 1].port == g->ports[j].port + 1)
            j++;
        if (j > i)
            fprintf(out, " %u-%u", g->ports[i].port, g->ports[j].port);
        else
            fprintf(out, " %u", g->ports[i].port);
        i = j;
    }
    if (g->settings.accept_proxy_protocol)
        fprintf(out, "\nPROXY protocol accepted from %zu pattern(s)", g->settings.proxy_ips.n);
    fputs("\nlisten addresses:", out);
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        fprintf(out, " %s", g->settings.listen_addresses[i]);
    fputs("\nroutes:\n", out);
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        sp_route_desc d;
        sp_route_describe(r, &d);
        fprintf(out, "  #%d %s (priority %d%s) ports", d.index, d.name, d.priority, r->disabled ? ", disabled" : "");
        for (size_t k = 0; k < d.nports; k++) {
            if (d.ports[k].from == d.ports[k].to)
                fprintf(out, "%s%u", k ? "," : " ", d.ports[k].from);
            else
                fprintf(out, "%s%u-%u", k ? "," : " ", d.ports[k].from, d.ports[k].to);
        }
        if (r->client_ip.n)
            fprintf(out, " client_ip(%zu pattern%s)", r->client_ip.n, r->client_ip.n > 1 ? "s" : "");
        char name[258];
        for (size_t k = 0; k < r->ndomains; k++)
            fprintf(out, "%s%s", k ? "," : " domains ", sp_domain_pattern_format(&r->domains[k], name, sizeof name));
        for (size_t k = 0; k < r->ntls_versions; k++)
            fprintf(out, "%s%s", k ? "," : " tls_version ", sp_tls_version_name(r->tls_versions[k]));
        if (r->http.has_path)
            fprintf(out, " path %s", r->http.path.text);
        if (r->http.nmatch_headers)
            fprintf(out, " headers(%zu)", r->http.nmatch_headers);
        fprintf(out, " -> %s", d.action_name);
        if (d.action == SP_ACTION_BLOCK) {
            fputs(d.http ? " (http 403)\n" : "\n", out);
            continue;
        }
        if (d.action == SP_ACTION_REDIRECT) {
            fprintf(out, " %d %s\n", r->http.redirect_status, r->http.redirect_to.text);
            continue;
        }
        if (d.action == SP_ACTION_SOCKET_HANDLER) {
            static const char *const hmodes[] = {"", " (tls passthrough)", " (tls terminate)", " (tls terminate)"};
            fprintf(out, "%s\n", hmodes[r->tls.mode]);
            continue;
        }
        fputs(d.kernel ? " in the kernel (nftables)" : d.http ? " http" : "", out);
        for (size_t k = 0; k < d.ntargets; k++) {
            fputs(k ? ", " : " ", out);
            print_target(&d.targets[k], out);
        }
        static const char *const modes[] = {"", " tls passthrough", " tls terminate", " tls terminate-and-reencrypt"};
        fputs(modes[r->tls.mode], out);
        if (r->tls.cert_auto)
            fputs(" (certificate auto)", out);
        if (r->send_proxy_protocol)
            fprintf(out, " send-proxy-v%d", r->send_proxy_protocol);
        if (r->nft.enabled)
            fprintf(out, " %s%s%s", r->nft.protocols == SP_NFT_TCP ? "tcp" : r->nft.protocols == SP_NFT_UDP ? "udp" : "tcp+udp",
                    r->nft.preserve_source_ip ? " preserve-source-ip" : " masquerade",
                    r->nft.max_rate ? " max-rate" : "");
        fputs(r->half_open ? " (half-open)\n" : "\n", out);
    }
}
