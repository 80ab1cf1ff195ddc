#include "pattern/ip_pattern.h"

#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "pattern/glob.h"

/* The text parsers below work on (s, n) and return NULL or a static reason. They are
 * hand-written rather than inet_pton so that the accepted syntax is the same on every
 * libc and the reasons can be specific; the fuzzer cross-checks them against inet_pton. */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One octet of a dotted quad: "0".."255", no leading zeros. When glob is not NULL, "*"
 * is also accepted and sets *glob. */
static const char *parse_octet(const char *s, size_t n, uint8_t *out, bool *glob)
{
    if (n == 0)
        return "empty octet";
    if (glob != NULL) {
        *glob = false;
        if (n == 1 && s[0] == '*') {
            *glob = true;
            *out = 0;
            return NULL;
        }
        if (memchr(s, '*', n) != NULL)
            return "'*' must be a whole octet";
    }
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return "bad IPv4 address";
        if (i == 3)
            return "octet out of range";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 255)
        return "octet out of range";
    if (n > 1 && s[0] == '0')
        return "leading zero in octet";
    *out = (uint8_t)v;
    return NULL;
}

/* Exactly four octets. With glob_mask, '*' octets are allowed and get mask 0x00. */
static const char *parse_v4(const char *s, size_t n, uint8_t out[4], uint8_t *glob_mask)
{
    size_t start = 0;
    int k = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        if (k == 4)
            return "expected 4 octets";
        bool glob = false;
        const char *why = parse_octet(s + start, i - start, &out[k], glob_mask ? &glob : NULL);
        if (why != NULL)
            return why;
        if (glob_mask != NULL)
            glob_mask[k] = glob ? 0x00 : 0xff;
        k++;
        start = i + 1;
    }
    return k == 4 ? NULL : "expected 4 octets";
}

/* RFC 4291 section 2.2 text: up to 8 groups of 1-4 hex digits, at most one "::" standing
 * for one or more zero groups, optionally ending in a dotted quad worth two groups. */
static const char *parse_v6(const char *s, size_t n, uint8_t out[16])
{
    static const char *const bad = "bad IPv6 address";
    uint16_t words[8];
    int nw = 0, gap = -1;
    size_t i = 0;

    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    } else if (n >= 1 && s[0] == ':') {
        return bad;
    }
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != ':' && s[end] != '.')
            end++;
        if (end < n && s[end] == '.') {
            /* An embedded dotted quad is the last thing and takes two groups. */
            uint8_t q[4];
            if (nw > 6 || memchr(s + i, ':', n - i) != NULL ||
                parse_v4(s + i, n - i, q, NULL) != NULL)
                return bad;
            words[nw++] = (uint16_t)(q[0] << 8 | q[1]);
            words[nw++] = (uint16_t)(q[2] << 8 | q[3]);
            break;
        }
        if (end == i || end - i > 4 || nw == 8)
            return bad;
        unsigned w = 0;
        for (size_t k = i; k < end; k++) {
            int h = hex_value(s[k]);
            if (h < 0)
                return bad;
            w = w << 4 | (unsigned)h;
        }
        words[nw++] = (uint16_t)w;
        i = end;
        if (i == n)
            break;
        i++; /* the ':' */
        if (i == n)
            return bad; /* a single trailing ':' */
        if (s[i] == ':') {
            if (gap >= 0)
                return bad;
            gap = nw;
            i++;
        }
    }
    if (gap < 0 ? nw != 8 : nw > 7)
        return bad;

    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : nw - gap;   /* groups after the "::" */
    int head = nw - tail;
    for (int k = 0; k < head; k++) {
        out[2 * k] = (uint8_t)(words[k] >> 8);
        out[2 * k + 1] = (uint8_t)words[k];
    }
    for (int k = 0; k < tail; k++) {
        int at = 8 - tail + k;
        out[2 * at] = (uint8_t)(words[head + k] >> 8);
        out[2 * at + 1] = (uint8_t)words[head + k];
    }
    return NULL;
}

static void map_v4(const uint8_t q[4], uint8_t out[16])
{
    memcpy(out, v4_mapped_prefix, 12);
    memcpy(out + 12, q, 4);
}

/* Any single address; *is_v4 tells which syntax it was written in. */
static const char *parse_addr(const char *s, size_t n, uint8_t out[16], bool *is_v4)
{
    if (n == 0)
        return "empty address";
    *is_v4 = memchr(s, ':', n) == NULL;
    if (!*is_v4)
        return parse_v6(s, n, out);
    uint8_t q[4];
    const char *why = parse_v4(s, n, q, NULL);
    if (why == NULL)
        map_v4(q, out);
    return why;
}

int sp_ip_parse(const char *s, sp_ip *out)
{
    bool is_v4;
    if (s == NULL || parse_addr(s, strlen(s), out->b, &is_v4) != NULL)
        return -1;
    return 0;
}

int sp_ip_from_sockaddr(const struct sockaddr *sa, sp_ip *out, uint16_t *port)
{
    const uint8_t *p; /* the port, in network order */
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        map_v4((const uint8_t *)&in->sin_addr, out->b);
        p = (const uint8_t *)&in->sin_port;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out->b, &in6->sin6_addr, 16);
        p = (const uint8_t *)&in6->sin6_port;
    } else {
        return -1;
    }
    if (port != NULL)
        *port = (uint16_t)(p[0] << 8 | p[1]);
    return 0;
}

bool sp_ip_is_v4(const sp_ip *ip)
{
    return memcmp(ip->b, v4_mapped_prefix, 12) == 0;
}

/* Appends to a text of at most SP_IP_STRLEN - 1 bytes; the caller sized t. */
static size_t put_dec(char *t, size_t at, unsigned v)
{
    char d[3];
    int k = 0;
    do {
        d[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k > 0)
        t[at++] = d[--k];
    return at;
}

static size_t put_hex(char *t, size_t at, unsigned v)
{
    static const char digits[] = "0123456789abcdef";
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        unsigned h = (v >> shift) & 0xf;
        if (h != 0 || started || shift == 0) {
            t[at++] = digits[h];
            started = true;
        }
    }
    return at;
}

size_t sp_ip_format(const sp_ip *ip, char *buf, size_t len)
{
    char t[SP_IP_STRLEN];
    size_t n = 0;

    if (sp_ip_is_v4(ip)) {
        for (int k = 12; k < 16; k++) {
            if (k > 12)
                t[n++] = '.';
            n = put_dec(t, n, ip->b[k]);
        }
    } else {
        unsigned w[8];
        for (int k = 0; k < 8; k++)
            w[k] = (unsigned)ip->b[2 * k] << 8 | ip->b[2 * k + 1];
        /* RFC 5952 4.2: the longest run of >= 2 zero groups, the first one on a tie. */
        int best = -1, best_len = 1;
        for (int k = 0; k < 8;) {
            if (w[k] != 0) {
                k++;
                continue;
            }
            int run = k;
            while (k < 8 && w[k] == 0)
                k++;
            if (k - run > best_len) {
                best = run;
                best_len = k - run;
            }
        }
        for (int k = 0; k < 8; k++) {
            if (k == best) {
                t[n++] = ':';
                t[n++] = ':';
                k += best_len - 1;
                continue;
            }
            if (k > 0 && k != best + best_len)
                t[n++] = ':';
            n = put_hex(t, n, w[k]);
        }
    }
    t[n] = '\0';
    if (len > 0) {
        size_t c = n < len ? n : len - 1;
        memcpy(buf, t, c);
        buf[c] = '\0';
    }
    return n;
}

/* Mask of the first `prefix` bits. */
static void prefix_mask(unsigned prefix, uint8_t mask[16])
{
    for (unsigned k = 0; k < 16; k++) {
        unsigned bits = prefix > 8 * k ? prefix - 8 * k : 0;
        mask[k] = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
    }
}

/* A decimal prefix length: 1-3 digits, no leading zeros. */
static const char *parse_prefix(const char *s, size_t n, unsigned max, unsigned *out)
{
    if (n == 0)
        return "missing prefix length";
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return "bad prefix length";
        if (i == 3)
            return "prefix length out of range";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (n > 1 && s[0] == '0')
        return "leading zero in prefix length";
    if (v > max)
        return "prefix length out of range";
    *out = v;
    return NULL;
}

/* Four dot-separated parts, each "*" or digits: the value/mask form of an IPv4 glob. */
static bool whole_star_octets(const char *s, size_t n)
{
    size_t parts = 1, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        size_t len = i - start;
        if (memchr(s + start, '*', len) && len != 1)
            return false;
        if (i < n)
            parts++;
        start = i + 1;
    }
    return parts == 4;
}

/* An IPv4 text glob: digits, dots and glob syntax only. */
static const char *parse_text_glob(const char *s, size_t n, sp_ip_pattern *out)
{
    if (n >= sizeof out->glob)
        return "glob longer than 47 characters";
    if (memchr(s, ':', n))
        return "globs are only allowed in IPv4 patterns";
    if (memchr(s, '/', n))
        return "a glob and a prefix length cannot be combined";
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789.*?{},", s[i]))
            return "bad character in a glob (digits, '.', '*', '?', '{a,b}')";
    const char *why = sp_glob_check(s, n);
    if (why != NULL)
        return why;
    memcpy(out->glob, s, n);
    out->glob[n] = '\0';
    return NULL;
}

static const char *parse_pattern(const char *s, sp_ip_pattern *out)
{
    size_t n = strlen(s);
    if (n == 0)
        return "empty pattern";
    if (n == 1 && s[0] == '*') {
        memset(out, 0, sizeof *out);
        return NULL;
    }

    memset(out, 0, sizeof *out);
    const char *slash = memchr(s, '/', n);
    size_t addr_len = slash != NULL ? (size_t)(slash - s) : n;
    if (memchr(s, '?', addr_len) || memchr(s, '{', addr_len) ||
        (memchr(s, '*', addr_len) && !whole_star_octets(s, addr_len)))
        return parse_text_glob(s, n, out);
    bool has_star = memchr(s, '*', addr_len) != NULL;
    bool has_colon = memchr(s, ':', addr_len) != NULL;
    const char *why;

    if (has_star) {
        if (has_colon)
            return "globs are only allowed in IPv4 patterns";
        if (slash != NULL)
            return "a glob and a prefix length cannot be combined";
        uint8_t q[4], qmask[4];
        if ((why = parse_v4(s, n, q, qmask)) != NULL)
            return why;
        map_v4(q, out->value);
        memset(out->mask, 0xff, 12); /* the mapped prefix must match exactly */
        memcpy(out->mask + 12, qmask, 4);
        return NULL;
    }

    bool is_v4;
    if ((why = parse_addr(s, addr_len, out->value, &is_v4)) != NULL)
        return why;
    unsigned prefix = 128;
    if (slash != NULL) {
        const char *p = slash + 1;
        if ((why = parse_prefix(p, n - addr_len - 1, is_v4 ? 32 : 128, &prefix)) != NULL)
            return why;
        if (is_v4)
            prefix += 96;
    }
    prefix_mask(prefix, out->mask);
    for (int k = 0; k < 16; k++)
        out->value[k] &= out->mask[k];
    return NULL;
}

int sp_ip_pattern_parse(const char *s, sp_ip_pattern *out, const char **why)
{
    const char *reason = s != NULL ? parse_pattern(s, out) : "empty pattern";
    if (reason == NULL)
        return 0;
    if (why != NULL)
        *why = reason;
    return -1;
}

bool sp_ip_pattern_match(const sp_ip_pattern *p, const sp_ip *ip)
{
    if (p->glob[0]) {
        if (!sp_ip_is_v4(ip))
            return false;
        char text[SP_IP_STRLEN];
        size_t n = sp_ip_format(ip, text, sizeof text);
        return sp_glob_match(p->glob, strlen(p->glob), text, n);
    }
    uint8_t diff = 0;
    for (int k = 0; k < 16; k++)
        diff |= (uint8_t)((ip->b[k] & p->mask[k]) ^ p->value[k]);
    return diff == 0;
}

int sp_ip_list_add(sp_ip_list *l, const char *s, const char **why)
{
    sp_ip_pattern p;
    if (sp_ip_pattern_parse(s, &p, why) != 0)
        return -1;
    /* Grown one at a time: lists are short and built once per configuration load, and
     * this way a list whose array was allocated elsewhere stays valid to append to. */
    void *items = l->n < SIZE_MAX / sizeof *l->items - 1
                      ? realloc(l->items, (l->n + 1) * sizeof *l->items) : NULL;
    if (items == NULL) {
        if (why != NULL)
            *why = "out of memory";
        return -1;
    }
    l->items = items;
    l->items[l->n++] = p;
    return 0;
}

bool sp_ip_list_match(const sp_ip_list *l, const sp_ip *ip)
{
    for (size_t k = 0; k < l->n; k++)
        if (sp_ip_pattern_match(&l->items[k], ip))
            return true;
    return false;
}

sp_ip_verdict sp_ip_policy(const sp_ip_list *allow, const sp_ip_list *block, const sp_ip *ip)
{
    if (block->n && sp_ip_list_match(block, ip))
        return SP_IP_BLOCKED;
    if (allow->n && !sp_ip_list_match(allow, ip))
        return SP_IP_NOT_ALLOWED;
    return SP_IP_ADMITTED;
}

void sp_ip_list_free(sp_ip_list *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static bool ip_is_loopback(const sp_ip *ip)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};
    return (sp_ip_is_v4(ip) && ip->b[12] == 127) || memcmp(ip->b, v6_loopback, 16) == 0;
}

static bool ip_is_wildcard(const sp_ip *ip)
{
    static const uint8_t zero[16];
    return (sp_ip_is_v4(ip) && memcmp(ip->b + 12, zero, 4) == 0) || memcmp(ip->b, zero, 16) == 0;
}

int sp_ip_endpoint_parse(const char *s, sp_ip_endpoint *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']')
            return -1;
        s++;
        hl -= 2;
    }
    if (hl >= sizeof out->host)
        return -1;
    memcpy(out->host, s, hl);
    out->host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || colon[1] < '0' || colon[1] > '9' || port < 1 || port > 65535 ||
        sp_ip_parse(out->host, &out->ip) != 0)
        return -1;
    out->port = (uint16_t)port;
    out->loopback = ip_is_loopback(&out->ip);
    out->wildcard = ip_is_wildcard(&out->ip);
    return 0;
}
