/* nft/netlink: the kernel side of core/nft, with libnftnl + libmnl (never the nft tool).
 *
 * Every change is one nfnetlink batch, so the kernel applies it whole or not at all. A
 * batch starts with "add table; delete table" for both `ip smartproxy` and
 * `ip6 smartproxy` (adding an existing table is a no-op, so the delete always finds one),
 * then creates the tables a ruleset needs: a reload replaces the old rules atomically and
 * nothing outside these two tables is ever touched.
 *
 * A dry run sends the same batch without its end marker: the kernel checks every message
 * (permissions, expressions it lacks, objects) and then aborts, as `nft --check` does.
 * Netlink handles a batch synchronously inside sendmsg, so every answer is queued when
 * the send returns and nothing here blocks.
 *
 * Main thread only. Errors are values: -1 and a message in err naming what the kernel
 * refused ("adding a rule to ip smartproxy prerouting for route \"db\" (#2): ..."). */
#ifndef SP_NFT_NETLINK_H
#define SP_NFT_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nft/rules.h"

/* Replaces both tables with the ruleset (an empty ruleset removes them); with commit
 * false, a dry run that changes nothing. On failure, *route (when not NULL) is the index
 * in s->routes of the route whose object or rule the kernel refused, else -1. */
int sp_nft_netlink_apply(const sp_nft_ruleset *s, bool commit, int *route, char *err, size_t errlen);

/* Removes both tables, when present. */
int sp_nft_netlink_remove(char *err, size_t errlen);

/* Reads the named counters of one family's table: each(ud, name, packets, bytes). No
 * table: 0 and no call. */
int sp_nft_netlink_counters(sp_nft_family f, void (*each)(void *ud, const char *name, uint64_t packets,
                                                          uint64_t bytes),
                            void *ud, char *err, size_t errlen);

#endif
