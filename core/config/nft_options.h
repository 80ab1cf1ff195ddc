/* config/nft_options: what the configuration says about kernel forwarding, checked.
 *
 * The route compiler (config/route_action.c, config/routes.c) calls these three hooks and
 * turns a non-zero return into a SPEC 10 message ("file: route \"x\" (#i): FIELD: MESSAGE"):
 *
 *   sp_nft_parse_action  action.forwarding_engine and the action.nftables table
 *   sp_nft_check_route   what a kernel-forwarded route cannot have (domains, TLS, handler,
 *                        a Lua target, per-connection limits ...)
 *   sp_nft_check_ports   a kernel route's TCP ports must not also be served in user space
 *
 * Pure apart from reading the Lua table: no netlink here (see nft/nft.h for the probe). */
#ifndef SP_CONFIG_NFT_OPTIONS_H
#define SP_CONFIG_NFT_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Reads action.forwarding_engine ("node" | "nftables") and action.nftables =
 * { preserve_source_ip = bool, protocol = "tcp" | "udp" | "all", max_rate = "10mbps" }
 * of the action table at index t into *out. Returns 0, or -1 with the field path in
 * field and the message (what was expected, what was found) in msg. */
int sp_nft_parse_action(lua_State *L, int t, sp_route_nft *out, char *field, size_t fieldlen,
                        char *msg, size_t msglen);

/* For a route with nft.enabled: 0, or -1 with field and msg for what cannot apply to
 * kernel NAT. Routes in user space always pass. */
int sp_nft_check_route(const sp_route *r, char *field, size_t fieldlen, char *msg, size_t msglen);

/* Over a generation's routes: 0, or -1 with *bad (the kernel route at fault), field and
 * msg when a port a kernel route takes TCP on is also a port of a user-space route. */
int sp_nft_check_ports(const sp_gen *g, const sp_route **bad, char *field, size_t fieldlen,
                       char *msg, size_t msglen);

/* Parses a rate: a whole number and a unit, "bps" "kbps" "mbps" "gbps" (bits per second,
 * powers of 1000) or "bytes" "kbytes" "mbytes" "gbytes" (bytes per second, powers of
 * 1024, as nft writes them); an optional "/s" or "/second" may follow. Returns 0 and the
 * rate in bytes per second (at least 1), or -1. */
int sp_nft_parse_rate(const char *s, uint64_t *bytes_per_second);

#endif
