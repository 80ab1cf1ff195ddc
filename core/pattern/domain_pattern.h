/*
 * Domain patterns for routes (match.domains), matched against the TLS SNI or the HTTP
 * Host header.
 *
 * Pure: no I/O, no allocation. Names compare ASCII case-insensitively and a trailing
 * dot is ignored on both sides ("Example.COM." is example.com). Parsing is strict, so a
 * pattern that can never match (empty labels, spaces, '*' in the middle, a label over
 * 63 characters) is a configuration error rather than a silently dead route. Allowed
 * characters are the ones the ClientHello parser accepts in an SNI: letters, digits,
 * '-', '_' and '.'. Internationalized names are written in their xn-- form.
 *
 * IP literals are exact patterns: "127.0.0.1" matches Host: 127.0.0.1:8080 (after
 * sp_host_without_port) by name; IPv6 ones ("::1", also written "[::1]") are kept in
 * RFC 5952 form and match any spelling of the same address.
 */
#ifndef SP_PATTERN_DOMAIN_PATTERN_H
#define SP_PATTERN_DOMAIN_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SP_DOMAIN_EXACT,    /* "example.com": that name only */
    SP_DOMAIN_WILDCARD, /* "*.example.com": any name below it, one or more labels deep */
    SP_DOMAIN_ANY,      /* "*": any name, and no name at all */
    SP_DOMAIN_GLOB,     /* "api-*.example.com", "example.*", "{a,b}.example.com": pattern/glob.h */
} sp_domain_kind;

typedef struct sp_domain_pattern {
    sp_domain_kind kind;
    char name[256]; /* lowercased, no trailing dot, NUL-terminated; for WILDCARD the
                       suffix after "*."; empty for ANY; the glob for GLOB */
    size_t len;
} sp_domain_pattern;

/* Parses "example.com", "*.example.com", "*" or a glob (case-insensitive; one trailing
 * dot ignored). A glob is any other pattern with '*', '?' or "{a,b}" (pattern/glob.h:
 * '*' spans dots, as in SmartProxy's minimatch patterns, so "*.*.example.com" is any
 * name at least two labels below example.com). Returns 0, or -1 with *why (when why is
 * not NULL) set to a short static reason for an error message: empty labels, characters
 * outside the set above, more than 253 characters, a label over 63, bad braces. */
int sp_domain_pattern_parse(const char *s, sp_domain_pattern *out, const char **why);

/* host as sent (any case, optional trailing dot, IPv6 with or without brackets, NOT
 * including a :port; host may be NULL when len is 0). "*.example.com" matches any
 * deeper name made of valid labels (a.example.com, a.b.example.com) but not
 * example.com; "*" matches anything, including an empty host (len 0: no SNI). */
bool sp_domain_pattern_match(const sp_domain_pattern *p, const char *host, size_t len);

/* Higher = more specific, for choosing among patterns that match the same host:
 * 0 for "*", 1 + suffix length for a wildcard and 1 + the literal characters of a glob
 * (its shortest spelling's; so a longer literal part wins; at most 254), 256 for an
 * exact name. */
int sp_domain_pattern_specificity(const sp_domain_pattern *p);

/* Strips a Host header value to the name: lowercases nothing, removes ":port" and IPv6
 * brackets ("[::1]:8080" -> "::1", "example.com:443" -> "example.com"); returns the
 * length of the name part and its start in *name (inside host). A port is only removed
 * when it is all digits (or empty, "example.com:"). A bare IPv6 address ("::1": more
 * than one ':') is all name. Text that is not name[:port] ("[::1", "[::1]x", "a:b") is
 * returned whole, so that it matches nothing but "*". */
size_t sp_host_without_port(const char *host, size_t len, const char **name);

/* Writes the pattern as it would be written in a config ("*", "*.example.com",
 * "example.com"); returns buf. 258 bytes always suffice. */
const char *sp_domain_pattern_format(const sp_domain_pattern *p, char *buf, size_t len);

/* True for names under the special-use domain "invalid" (RFC 6761 6.4: resolvers answer
 * them negatively at once, without asking a server). Every resolve site checks this
 * first, so a route to "x.invalid" fails like a name that does not exist and no query
 * leaves the machine. A trailing dot and any letter case are accepted. */
bool sp_name_is_invalid(const char *host);

#endif
