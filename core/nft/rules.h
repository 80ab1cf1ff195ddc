/* nft/rules: the pure builder from a generation's kernel routes to a rule description.
 *
 * No netlink, no allocation besides the ruleset itself, no I/O: core/nft/netlink.c turns a
 * ruleset into one netlink batch, tests/unit/test_nft_rules.c checks it as text.
 *
 * The proxy owns two tables, `ip smartproxy` and `ip6 smartproxy` (a route goes into the
 * table of its target's family), each with five base chains:
 *
 *   prerouting   nat    hook prerouting  priority -100  DNAT of packets from outside
 *   output       nat    hook output      priority -100  DNAT of connections made on this host
 *   postrouting  nat    hook postrouting priority  100  masquerade (unless preserve_source_ip)
 *   count_in     filter hook prerouting  priority  -90  max_rate and the route's counter
 *   count_out    filter hook output      priority  -90  the same for locally made packets
 *
 * NAT chains see the first packet of a connection only; the count chains see every packet
 * of both directions and recognise a route's flows by their conntrack entry (destination
 * NAT done, original protocol and destination port, reply source = the target). Per route
 * and family the table holds a named counter "c<N>" and, with max_rate, a named limit
 * "l<N>" (N = the route's index in the file) shared by the rules of both count chains.
 *
 * Per route, in priority order (then file order), for each protocol and port range:
 *   - a drop rule per (block pattern x client_ip pattern): blocked clients go nowhere
 *   - a dnat rule per (client_ip pattern x ip_allow_list pattern)
 *   - with an allow list, a drop rule per client_ip pattern (matched, not allowed)
 * DNAT only applies to packets addressed to this host (fib daddr type local), never to
 * traffic routed through it. Address patterns become `saddr & mask == value`, so CIDRs
 * and globs ("10.*.*.1") both work; patterns of the other family are left out. */
#ifndef SP_NFT_RULES_H
#define SP_NFT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define SP_NFT_TABLE "smartproxy"
#define SP_NFT_MAX_RULES 20000

typedef enum { SP_NFT_V4 = 0, SP_NFT_V6 = 1 } sp_nft_family;

typedef enum {
    SP_NFT_PREROUTING = 0, SP_NFT_OUTPUT, SP_NFT_POSTROUTING, SP_NFT_COUNT_IN, SP_NFT_COUNT_OUT,
    SP_NFT_CHAINS
} sp_nft_chain;

typedef enum {
    SP_NFT_DNAT = 0,      /* dnat to the route's target (and port, unless preserved) */
    SP_NFT_DROP,
    SP_NFT_MASQUERADE,
    SP_NFT_LIMIT_DROP,    /* limit name "l<N>" (over max_rate) drop */
    SP_NFT_COUNT,         /* counter name "c<N>" accept */
} sp_nft_action;

/* `saddr & mask == value`, 4 bytes used for IPv4, 16 for IPv6. */
typedef struct sp_nft_addr_cond {
    uint8_t value[16], mask[16];
} sp_nft_addr_cond;

typedef struct sp_nft_rule {
    sp_nft_chain chain;
    size_t route;                 /* index into the ruleset's routes */
    uint8_t l4proto;              /* IPPROTO_TCP or IPPROTO_UDP */
    uint16_t port_from, port_to;  /* th dport (nat chains), ct original proto-dst (count) */
    bool not_loopback;            /* meta iiftype != loopback (count_in: lo is counted on output) */
    bool fib_local;               /* fib daddr type local */
    bool ct_dnat;                 /* ct status dnat */
    bool ct_reply_target;         /* ct reply saddr == target (and proto-src == its port) */
    bool daddr_target;            /* daddr == target, th dport == its port(s) (postrouting) */
    size_t nsaddr;
    sp_nft_addr_cond saddr[2];    /* all must hold */
    sp_nft_action action;
} sp_nft_rule;

typedef struct sp_nft_route {
    char *name;
    int index;                    /* 1-based, as in messages; names the counter and limit */
    sp_nft_family family;
    uint8_t target[16];           /* 4 bytes for IPv4 */
    uint16_t target_port;         /* 0: the port matched (preserve) */
    uint64_t max_rate;            /* bytes per second, 0: none */
    uint64_t packets, bytes;      /* the counter's starting values (kept across reloads) */
    char counter[16], limit[16];
} sp_nft_route;

typedef struct sp_nft_ruleset {
    sp_nft_route *routes;
    size_t nroutes;
    sp_nft_rule *rules;
    size_t nrules;
    bool has_family[2];           /* some route went into this family's table */
} sp_nft_ruleset;

/* Builds the rules of g's kernel routes (nft.enabled); targets[i] is the address
 * g->routes[i]'s target host resolved to (read for kernel routes only). Returns 0, or -1
 * with a message in err (too many rules, out of memory). A generation without kernel
 * routes gives an empty ruleset. */
int sp_nft_build(const sp_gen *g, const sp_ip *targets, sp_nft_ruleset *out, char *err, size_t errlen);

void sp_nft_ruleset_free(sp_nft_ruleset *s);

/* The rule in nft's syntax (close to what `nft list ruleset` prints), for logs, --check
 * and tests. Returns the length written (cut short, NUL-terminated, when len is small). */
size_t sp_nft_rule_format(const sp_nft_ruleset *s, const sp_nft_rule *r, char *buf, size_t len);

const char *sp_nft_chain_name(sp_nft_chain c);
const char *sp_nft_family_name(sp_nft_family f);   /* "ip" | "ip6" */

#endif
