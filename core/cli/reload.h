/* reload: the reload transaction that SIGHUP, POST /reload, --watch and sp.update_routes
 * run on the main thread.
 *
 * It is two steps, so that a refused reload changes nothing:
 *
 *   sp_reload_prepare  does everything that can fail: loads the generation (from the file,
 *                      or from the serving sources with the routes sp.update_routes sent),
 *                      checks that every port it adds can be bound and that the admin
 *                      address stays, prepares its nftables rules (a kernel dry run),
 *                      opens its access log without writing to it, and last installs the
 *                      kernel rules, which is atomic: refused, the old rules stay. Any
 *                      failure goes through one rollback that drops all of it.
 *   sp_reload_commit   cannot fail: access lines go to the new file, every worker gets the
 *                      generation, the Lua load bounds and the certificate manager follow.
 *
 * The caller owns the serving state and swaps in r->gen and r->sources after the commit. */
#ifndef SP_CLI_RELOAD_H
#define SP_CLI_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "cert/manager.h"
#include "config/config.h"
#include "lua/config_load.h"
#include "nft/nft.h"
#include "util/access_log.h"
#include "worker/worker.h"

/* What serves now: what a reload is checked against and what its commit reaches. */
typedef struct sp_serving {
    const char *file;             /* the configuration file */
    const sp_gen *gen;            /* the generation serving new connections */
    const sp_source_set *sources; /* its recorded sources (sp.update_routes builds on them) */
    sp_nft *nft;                  /* the kernel rules installed */
    sp_worker *workers;
    int nworkers;
    sp_certmgr *certs;
} sp_serving;

/* A reload that passed every check; only its kernel rules are in use yet. */
typedef struct sp_reload {
    sp_gen *gen;
    sp_source_set *sources;
    sp_access_log_file access_log; /* opened, not yet written to */
} sp_reload;

/* Prepares a reload from now->file (routes_text NULL) or from now->sources with the Lua
 * source routes_text returns. Returns 0, or -1 with a SPEC 10 message in err and nothing
 * changed. */
int sp_reload_prepare(sp_reload *r, const sp_serving *now, const char *routes_text, char *err, size_t errlen);

/* Puts a prepared reload in service as generation `number`. r->gen and r->sources are the
 * caller's references afterwards. */
void sp_reload_commit(sp_reload *r, const sp_serving *now, uint64_t number);

#endif
