/*
 * Client addresses and the patterns routes match them against
 * (match.client_ip, security.ip_allow_list / ip_block_list, proxy_ips).
 *
 * Pure: no I/O, no allocation except in sp_ip_list_add. Parsing is strict, because a
 * pattern that silently means something else than it says is a security hole in an
 * allow list: leading or trailing junk, whitespace, octets above 255, octets with a
 * leading zero (octal in some parsers), short forms like "1.2.3", zone ids ("%eth0")
 * and prefix lengths out of range are all rejected.
 */
#ifndef SP_PATTERN_IP_PATTERN_H
#define SP_PATTERN_IP_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* Enough for any text sp_ip_format writes, NUL included (same as INET6_ADDRSTRLEN). */
#define SP_IP_STRLEN 46

/* An address, always stored as 16 bytes; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * so v4 patterns match v4-mapped peers of dual-stack sockets. */
typedef struct sp_ip {
    uint8_t b[16];
} sp_ip;

/* Parses "a.b.c.d" or IPv6 text (including embedded v4, "::ffff:1.2.3.4", which then
 * equals "1.2.3.4"). Returns 0, or -1 when s is not exactly one address. */
int sp_ip_parse(const char *s, sp_ip *out);

/* Takes the address of an AF_INET or AF_INET6 sockaddr; *port (host order) when port is
 * not NULL. Returns -1 for any other family. */
int sp_ip_from_sockaddr(const struct sockaddr *sa, sp_ip *out, uint16_t *port);

/* True for IPv4-mapped addresses, i.e. everything that came from IPv4. */
bool sp_ip_is_v4(const sp_ip *ip);

/* Writes v4(-mapped) addresses as a dotted quad, others as RFC 5952 text (lower case,
 * longest run of two or more zero groups as "::"). Returns the text's length; like
 * snprintf, the text is cut short (but NUL-terminated) when len is below SP_IP_STRLEN.
 * sp_ip_parse reads the text back to the same address. */
size_t sp_ip_format(const sp_ip *ip, char *buf, size_t len);

/* A client-address pattern: exact ("10.0.0.5", "::1"), CIDR ("10.0.0.0/8",
 * "2001:db8::/32"), IPv4 glob with '*' octets ("192.168.1.*", "10.*.*.1"), or "*"
 * (anything, v4 or v6). An address matches when (address & mask) == value.
 * A v4 CIDR /n is the prefix 96+n of the mapped form, so "0.0.0.0/0" is every IPv4
 * address and no IPv6 one; "::/0" is everything. Host bits set in a CIDR
 * ("10.1.2.3/8") are masked off, as in most firewalls.
 * Any other IPv4 pattern with '*', '?' or braces is a text glob (pattern/glob.h, as
 * SmartProxy writes them: "192.168.*" covers the rest, "10.?.?.1", "10.0.0.{1,2}"),
 * matched against the address's dotted quad; IPv6 addresses never match one. */
typedef struct sp_ip_pattern {
    uint8_t value[16], mask[16];
    char glob[48];             /* a text glob, NUL-terminated; empty for value/mask patterns */
} sp_ip_pattern;

/* Returns 0, or -1 with *why (when why is not NULL) set to a short static reason for an
 * error message, e.g. "prefix length out of range". */
int sp_ip_pattern_parse(const char *s, sp_ip_pattern *out, const char **why);
bool sp_ip_pattern_match(const sp_ip_pattern *p, const sp_ip *ip);

/* A list of patterns. items is a malloc'd array owned by the list; a zeroed list is a
 * valid empty list. */
typedef struct sp_ip_list {
    sp_ip_pattern *items;
    size_t n;
} sp_ip_list;

/* Parses s and appends it. Returns 0, or -1 with *why set ("out of memory" or a parse
 * reason); the list is unchanged on error. */
int sp_ip_list_add(sp_ip_list *l, const char *s, const char **why);

/* True when any pattern matches; false for an empty list (an allow list that is present
 * but empty admits nobody; callers decide what an absent list means). */
bool sp_ip_list_match(const sp_ip_list *l, const sp_ip *ip);

/* Frees the items and leaves an empty list. */
void sp_ip_list_free(sp_ip_list *l);

/* The allow/block policy every check applies (global security, a route's security on
 * accept and per HTTP request): the block list wins, then a non-empty allow list must
 * match; empty lists say nothing. */
typedef enum { SP_IP_ADMITTED = 0, SP_IP_BLOCKED, SP_IP_NOT_ALLOWED } sp_ip_verdict;
sp_ip_verdict sp_ip_policy(const sp_ip_list *allow, const sp_ip_list *block, const sp_ip *ip);

/* An address and port as written in settings such as metrics.listen: "ADDRESS:PORT",
 * IPv6 in brackets ("[::1]:9100"). */
typedef struct sp_ip_endpoint {
    char host[SP_IP_STRLEN];   /* the address as written, without brackets */
    sp_ip ip;
    uint16_t port;
    bool loopback;             /* 127.0.0.0/8 or ::1 */
    bool wildcard;             /* 0.0.0.0 or ::: every local address */
} sp_ip_endpoint;

/* Returns 0, or -1 when s is not exactly an IP address and a port from 1 to 65535. */
int sp_ip_endpoint_parse(const char *s, sp_ip_endpoint *out);

#endif
