/* nft: kernel NAT forwarding for routes with action.forwarding_engine = "nftables".
 *
 * The main thread's side of the feature, used by core/main.c (startup) and
 * core/cli/reload.c (reloads) only:
 *
 *   sp_nft_prepare    at every load (startup, --check, reload): resolves the targets once,
 *                     builds the rules (nft/rules.h) and dry-runs the batch in the kernel
 *                     (nft/netlink.h), so a missing CAP_NET_ADMIN or nf_tables feature is a
 *                     configuration error naming the route, never a silent fallback
 *   sp_nft_install    replaces the installed rules atomically (a ruleset without kernel
 *                     routes removes them); route counters carry over by route name
 *   sp_nft_uninstall  removes the tables on a graceful stop
 *   sp_nft_cleanup    --nft-cleanup: removes the tables a crashed process left behind
 *   sp_nft_stats_json / sp_nft_metrics_text: per-route packets and bytes read back from
 *                     the kernel's named counters at each request
 *
 * A generation without kernel routes never opens a netlink socket, so proxies that do
 * not use the feature need no privilege. Errors are values: -1 and a message. */
#ifndef SP_NFT_NFT_H
#define SP_NFT_NFT_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "nft/rules.h"
#include "util/buf.h"
#include "util/json.h"

typedef struct sp_nft sp_nft;

/* Prepares g's kernel rules. Returns 0 and *out (NULL when g has no kernel route), or -1
 * and a SPEC 10 message ("proxy.lua: route \"db\" (#2): action.forwarding_engine: ...")
 * in err. */
int sp_nft_prepare(const sp_gen *g, sp_nft_ruleset **out, char *err, size_t errlen);

void sp_nft_ruleset_destroy(sp_nft_ruleset *s);  /* frees a prepared ruleset (NULL is fine) */

/* For --check: the kernel rules of a prepared ruleset in nft's syntax (nothing for NULL). */
void sp_nft_print(const sp_nft_ruleset *s, FILE *out);

sp_nft *sp_nft_new(void);

/* Installs s (NULL: no kernel routes) in place of what is installed; on success takes
 * ownership of s. On failure the kernel keeps the old rules and s stays the caller's. */
int sp_nft_install(sp_nft *n, sp_nft_ruleset *s, char *err, size_t errlen);

/* Removes the tables when this process installed rules; logs a failure. */
void sp_nft_uninstall(sp_nft *n);

/* Frees the state (without touching the kernel). */
void sp_nft_free(sp_nft *n);

/* Writes "nftables": { "routes": { NAME: { "packets": N, "bytes": N } } } into an open
 * JSON object (an "error" key when the counters cannot be read). */
void sp_nft_stats_json(sp_nft *n, sp_json *j);

/* smartproxy_nftables_packets_total / _bytes_total {route="..."}. */
void sp_nft_metrics_text(sp_nft *n, sp_buf *b);

/* Removes `ip smartproxy` and `ip6 smartproxy`, present or not. */
int sp_nft_cleanup(char *err, size_t errlen);

#endif
