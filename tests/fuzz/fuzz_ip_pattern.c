/*
 * libFuzzer target for core/pattern/ip_pattern.h.
 *
 * The input, NUL-terminated, is parsed as an address and as a pattern; whatever parses
 * is formatted, matched and checked against invariants. The first 16 bytes are also
 * taken as a raw address, so formatting sees every address, not only parseable text.
 * On glibc, parsing and formatting are cross-checked against inet_pton / inet_ntop.
 */
#define _POSIX_C_SOURCE 200809L

#include "pattern/ip_pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define ENSURE(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static bool same(const sp_ip *a, const sp_ip *b) { return memcmp(a, b, sizeof *a) == 0; }

static void flip_bit(uint8_t *b, unsigned bit) { b[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8)); }

static bool bit_set(const uint8_t *b, unsigned bit) { return b[bit / 8] & (0x80u >> (bit % 8)); }

/* Formatting reads back, is bounded, and agrees with the address family. */
static void check_format(const sp_ip *ip)
{
    char text[SP_IP_STRLEN];
    size_t n = sp_ip_format(ip, text, sizeof text);
    ENSURE(n == strlen(text));
    ENSURE(n >= 2 && n <= 39);
    ENSURE((strchr(text, ':') == NULL) == sp_ip_is_v4(ip));

    sp_ip back;
    ENSURE(sp_ip_parse(text, &back) == 0);
    ENSURE(same(ip, &back));

    /* Cut short like snprintf. */
    char small[8];
    size_t cut = (ip->b[15] % sizeof small) + 1;
    ENSURE(sp_ip_format(ip, small, cut) == n);
    ENSURE(strlen(small) == (n < cut ? n : cut - 1));
    ENSURE(memcmp(small, text, strlen(small)) == 0);

    /* As an exact pattern, it matches itself and only itself. */
    sp_ip_pattern p;
    const char *why;
    ENSURE(sp_ip_pattern_parse(text, &p, &why) == 0);
    ENSURE(sp_ip_pattern_match(&p, ip));
    sp_ip other = *ip;
    flip_bit(other.b, ip->b[0] % 128u);
    ENSURE(!sp_ip_pattern_match(&p, &other));

#ifdef __GLIBC__
    /* glibc writes RFC 5952 text too, except that it also uses the dotted form for
     * v4-compatible and some other addresses. */
    char ref[INET6_ADDRSTRLEN];
    ENSURE(inet_ntop(AF_INET6, ip->b, ref, sizeof ref) != NULL);
    if (strchr(ref, '.') == NULL)
        ENSURE(strcmp(ref, text) == 0);
#endif
}

static void check_sockaddr(const sp_ip *ip, uint16_t port)
{
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    memcpy(&in6.sin6_addr, ip->b, 16);
    sp_ip got;
    uint16_t got_port = 0;
    ENSURE(sp_ip_from_sockaddr((const struct sockaddr *)&in6, &got, &got_port) == 0);
    ENSURE(same(&got, ip) && got_port == port);

    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    memcpy(&in.sin_addr, ip->b + 12, 4);
    ENSURE(sp_ip_from_sockaddr((const struct sockaddr *)&in, &got, &got_port) == 0);
    ENSURE(sp_ip_is_v4(&got) && memcmp(got.b + 12, ip->b + 12, 4) == 0 && got_port == port);
}

/* A mask is a prefix when no set bit follows a clear one. */
static bool is_prefix_mask(const uint8_t mask[16])
{
    bool seen_clear = false;
    for (unsigned bit = 0; bit < 128; bit++) {
        if (!bit_set(mask, bit))
            seen_clear = true;
        else if (seen_clear)
            return false;
    }
    return true;
}

/* A text glob: kept as written, IPv4 syntax only, never matching an IPv6 address, and
 * matching an address exactly when it matches the address's dotted quad as text. */
static void check_glob_semantics(const char *s, const sp_ip_pattern *p)
{
    ENSURE(strcmp(p->glob, s) == 0 && strchr(s, ':') == NULL && strchr(s, '/') == NULL);
    sp_ip v6, v4;
    ENSURE(sp_ip_parse("2001:db8::1", &v6) == 0 && sp_ip_parse("10.1.2.3", &v4) == 0);
    ENSURE(!sp_ip_pattern_match(p, &v6));
    unsigned char b[4] = {0};
    for (size_t i = 0; s[i] && i < 4; i++)
        b[i] = (unsigned char)s[i]; /* an address the input chooses */
    memcpy(v4.b + 12, b, 4);
    (void)sp_ip_pattern_match(p, &v4);
    sp_ip_list l = {0};
    ENSURE(sp_ip_list_add(&l, s, NULL) == 0 && l.n == 1);
    ENSURE(sp_ip_list_match(&l, &v4) == sp_ip_pattern_match(p, &v4));
    sp_ip_list_free(&l);
}

static void check_pattern_semantics(const char *s, const sp_ip_pattern *p)
{
    if (p->glob[0]) {
        check_glob_semantics(s, p);
        return;
    }
    for (int k = 0; k < 16; k++)
        ENSURE((p->value[k] & ~p->mask[k]) == 0);

    /* The value matches; flipping a masked bit breaks the match, an unmasked one not. */
    sp_ip ip;
    memcpy(ip.b, p->value, 16);
    ENSURE(sp_ip_pattern_match(p, &ip));
    for (unsigned bit = 0; bit < 128; bit++) {
        sp_ip other = ip;
        flip_bit(other.b, bit);
        ENSURE(sp_ip_pattern_match(p, &other) == !bit_set(p->mask, bit));
    }

    if (strchr(s, '*') == NULL)
        ENSURE(is_prefix_mask(p->mask));
    /* Patterns written in IPv4 syntax only ever match IPv4 addresses. */
    if (strchr(s, ':') == NULL && strcmp(s, "*") != 0) {
        for (int k = 0; k < 12; k++)
            ENSURE(p->mask[k] == 0xff);
        ENSURE(sp_ip_is_v4(&ip));
    }

    sp_ip_list l = {0};
    ENSURE(!sp_ip_list_match(&l, &ip));
    ENSURE(sp_ip_list_add(&l, s, NULL) == 0);
    ENSURE(l.n == 1 && sp_ip_list_match(&l, &ip));
    sp_ip_list_free(&l);
}

static void check_text(const char *s)
{
    sp_ip ip;
    bool is_addr = sp_ip_parse(s, &ip) == 0;

#ifdef __GLIBC__
    uint8_t ref[16];
    if (strchr(s, ':') != NULL) {
        ENSURE((inet_pton(AF_INET6, s, ref) == 1) == is_addr);
        if (is_addr)
            ENSURE(memcmp(ref, ip.b, 16) == 0);
    } else {
        ENSURE((inet_pton(AF_INET, s, ref) == 1) == is_addr);
        if (is_addr)
            ENSURE(sp_ip_is_v4(&ip) && memcmp(ref, ip.b + 12, 4) == 0);
    }
#endif
    if (is_addr)
        check_format(&ip);

    sp_ip_pattern p;
    const char *why = NULL;
    if (sp_ip_pattern_parse(s, &p, &why) != 0) {
        ENSURE(!is_addr); /* every address is also an exact pattern */
        ENSURE(why != NULL && why[0] != '\0');
        sp_ip_list l = {0};
        ENSURE(sp_ip_list_add(&l, s, NULL) == -1 && l.n == 0 && l.items == NULL);
        return;
    }
    check_pattern_semantics(s, &p);
    if (is_addr) {
        ENSURE(sp_ip_pattern_match(&p, &ip));
        for (int k = 0; k < 16; k++)
            ENSURE(p.mask[k] == 0xff);
    }
}

/* The raw address as a CIDR of every shape: it matches its own prefix. */
static void check_raw(const uint8_t *data, size_t size)
{
    sp_ip ip;
    memcpy(ip.b, data, 16);
    check_format(&ip);
    check_sockaddr(&ip, (uint16_t)(size > 17 ? data[16] << 8 | data[17] : 0));

    unsigned prefix = size > 16 ? data[16] % 129u : 64;
    char text[SP_IP_STRLEN + 8];
    size_t n = sp_ip_format(&ip, text, SP_IP_STRLEN);
    if (sp_ip_is_v4(&ip))
        prefix %= 33;
    snprintf(text + n, sizeof text - n, "/%u", prefix);
    sp_ip_pattern p;
    const char *why;
    ENSURE(sp_ip_pattern_parse(text, &p, &why) == 0);
    ENSURE(sp_ip_pattern_match(&p, &ip));
    ENSURE(is_prefix_mask(p.mask));
    check_pattern_semantics(text, &p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_text(s);
    free(s);
    if (size >= 16)
        check_raw(data, size);
    return 0;
}
