#include "cli/reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/listener.h"

static bool listens_on(const sp_gen *g, const char *addr, uint16_t port)
{
    if (!g || !sp_gen_port(g, port))
        return false;
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        if (strcmp(g->settings.listen_addresses[i], addr) == 0)
            return true;
    return false;
}

/* A port the new generation adds must be bindable, or the reload is refused whole. */
static int check_new_ports(const sp_gen *old, const sp_gen *g, char *err, size_t errlen)
{
    for (size_t a = 0; a < g->settings.nlisten_addresses; a++)
        for (size_t p = 0; p < g->nports; p++) {
            const char *addr = g->settings.listen_addresses[a];
            uint16_t port = g->ports[p].port;
            if (listens_on(old, addr, port))
                continue;
            int fd = sp_bind_tcp(addr, port, true);
            if (fd < 0) {
                snprintf(err, errlen, "cannot listen on %s port %u: %s", addr, port, strerror(-fd));
                return -1;
            }
            close(fd);
        }
    return 0;
}

/* The admin endpoint keeps the address it started on. A reload naming another one (or
 * none) is refused rather than ignored: its token and hosts would be checked against a
 * place the endpoint is not (a token dropped for 127.0.0.1 while it listens on 0.0.0.0). */
static int check_admin_listen(const sp_serving *now, const sp_gen *g, char *err, size_t errlen)
{
    const char *cur = now->gen->settings.metrics_listen, *next = g->settings.metrics_listen;
    if (cur == next || (cur && next && strcmp(cur, next) == 0))
        return 0;
    snprintf(err, errlen, "%s: metrics.listen: the admin endpoint stays %s%s%s until a restart; "
             "a reload cannot change it to %s%s%s", now->file,
             cur ? "on \"" : "off", cur ? cur : "", cur ? "\"" : "",
             next ? "\"" : "none", next ? next : "", next ? "\"" : "");
    return -1;
}

/* The one rollback: drops whatever prepare had readied. */
static void roll_back(sp_reload *r, sp_nft_ruleset *kernel)
{
    sp_access_log_discard(&r->access_log);
    sp_nft_ruleset_destroy(kernel);
    if (r->gen)
        sp_gen_unref(r->gen);
    sp_source_set_unref(r->sources);
    *r = (sp_reload){0};
}

int sp_reload_prepare(sp_reload *r, const sp_serving *now, const char *routes_text, char *err, size_t errlen)
{
    *r = (sp_reload){0};
    sp_nft_ruleset *kernel = NULL;
    r->gen = routes_text ? sp_config_load_routes(now->file, now->sources, routes_text, &r->sources, err, errlen)
                         : sp_config_load(now->file, NULL, &r->sources, err, errlen);
    /* the kernel rules go in last: installed atomically before any worker sees the
     * generation, and after them nothing can fail */
    if (!r->gen || check_new_ports(now->gen, r->gen, err, errlen) != 0 ||
        check_admin_listen(now, r->gen, err, errlen) != 0 || sp_nft_prepare(r->gen, &kernel, err, errlen) != 0 ||
        sp_access_log_open(r->gen->settings.access_log, &r->access_log, err, errlen) != 0 ||
        sp_nft_install(now->nft, kernel, err, errlen) != 0) {
        roll_back(r, kernel);
        return -1;
    }
    return 0; /* kernel: installed, now->nft owns it */
}

void sp_reload_commit(sp_reload *r, const sp_serving *now, uint64_t number)
{
    sp_access_log_switch(&r->access_log);
    r->gen->number = number;
    for (int i = 0; i < now->nworkers; i++)
        sp_worker_post_generation(&now->workers[i], r->sources, number);
    sp_config_load_bounds(r->gen->settings.timeouts.config_load, r->gen->settings.lua_memory);
    sp_certmgr_sync(now->certs, r->gen);
}
