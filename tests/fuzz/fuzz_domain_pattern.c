/*
 * libFuzzer target for core/pattern/domain_pattern.h.
 *
 * The input is "pattern\nhost" (no newline: the whole input is both). The pattern is
 * parsed; what parses is checked against invariants and against its own name; the host
 * (raw bytes, NULs and all) is matched, stripped with sp_host_without_port, and checked
 * for case-insensitivity, the trailing-dot rule and agreement with a plain reading of
 * the pattern.
 */
#include "pattern/domain_pattern.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENSURE(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static char upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }

static bool match(const sp_domain_pattern *p, const char *host, size_t len)
{
    /* An exact-size copy, so that ASan sees a read past len. */
    char *copy = malloc(len ? len : 1);
    ENSURE(copy != NULL);
    memcpy(copy, host, len);
    bool m = sp_domain_pattern_match(p, len ? copy : NULL, len);
    free(copy);
    return m;
}

static void check_pattern(const char *s, const sp_domain_pattern *p)
{
    ENSURE(p->len == strlen(p->name) && p->len <= 253);
    for (size_t i = 0; i < p->len; i++)
        ENSURE(!(p->name[i] >= 'A' && p->name[i] <= 'Z') && (p->name[i] != '*' || p->kind == SP_DOMAIN_GLOB));
    int spec = sp_domain_pattern_specificity(p);

    char text[260];
    switch (p->kind) {
    case SP_DOMAIN_ANY:
        ENSURE(p->len == 0 && spec == 0);
        ENSURE(match(p, "", 0) && match(p, s, strlen(s)));
        return;
    case SP_DOMAIN_WILDCARD:
        ENSURE(p->len >= 1 && spec == 1 + (int)p->len && spec < 256);
        ENSURE(!match(p, p->name, p->len));
        snprintf(text, sizeof text, "x.%s", p->name);
        ENSURE(match(p, text, strlen(text)));
        snprintf(text, sizeof text, "*.%s", p->name);
        break;
    case SP_DOMAIN_EXACT:
        ENSURE(p->len >= 1 && spec == 256);
        ENSURE(match(p, p->name, p->len));
        snprintf(text, sizeof text, "%s", p->name);
        break;
    case SP_DOMAIN_GLOB:
        /* between a wildcard and an exact name; written back as it came */
        ENSURE(p->len >= 1 && spec >= 1 && spec < 256);
        sp_domain_pattern_format(p, text, sizeof text);
        ENSURE(strcmp(text, p->name) == 0);
        break;
    default:
        ENSURE(!"unknown kind");
    }
    ENSURE(!match(p, "", 0));
    /* The name reads back as the same pattern. */
    sp_domain_pattern again;
    ENSURE(sp_domain_pattern_parse(text, &again, NULL) == 0);
    ENSURE(again.kind == p->kind && again.len == p->len && strcmp(again.name, p->name) == 0);
}

static void check_host(const sp_domain_pattern *p, const char *host, size_t len)
{
    bool m = match(p, host, len);

    /* Case does not matter. */
    char *up = malloc(len + 2);
    ENSURE(up != NULL);
    for (size_t i = 0; i < len; i++)
        up[i] = upper(host[i]);
    ENSURE(match(p, up, len) == m);

    /* One trailing dot does not matter for names (IPv6 literals take none). */
    if (memchr(host, ':', len) == NULL && (len == 0 || host[len - 1] != '.')) {
        memcpy(up, host, len);
        up[len] = '.';
        ENSURE(match(p, up, len + 1) == m);
    }
    free(up);

    /* A plain reading for names without ':': exact is equality after lowercasing and
     * dropping one dot; a wildcard match ends in ".suffix" after something. */
    if (m && p->kind != SP_DOMAIN_ANY && memchr(host, ':', len) == NULL) {
        size_t n = len > 0 && host[len - 1] == '.' ? len - 1 : len;
        if (p->kind == SP_DOMAIN_EXACT) {
            ENSURE(n == p->len);
            for (size_t i = 0; i < n; i++)
                ENSURE(host[i] == p->name[i] || upper(p->name[i]) == host[i]);
        } else if (p->kind == SP_DOMAIN_WILDCARD) {
            ENSURE(n >= p->len + 2 && host[n - p->len - 1] == '.');
            ENSURE(memchr(host, '\0', n) == NULL && memchr(host, ' ', n) == NULL);
        }
    }

    /* The name part lies inside the value and is no longer. */
    const char *name = NULL;
    size_t n = sp_host_without_port(len ? host : NULL, len, &name);
    ENSURE(n <= len);
    if (len > 0) {
        ENSURE(name >= host && name + n <= host + len);
        if (n < len) /* only brackets and a port are taken off */
            ENSURE(host[0] == '[' || memchr(name + n, ':', (size_t)(host + len - (name + n))));
    }
    if (n > 0)
        (void)match(p, name, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t plen = nl ? (size_t)(nl - in) : size;
    const char *host = nl ? nl + 1 : in;
    size_t hlen = nl ? size - plen - 1 : size;

    char *s = malloc(plen + 1);
    ENSURE(s != NULL);
    memcpy(s, in, plen);
    s[plen] = '\0';

    sp_domain_pattern p;
    const char *why = NULL;
    if (sp_domain_pattern_parse(s, &p, &why) != 0) {
        ENSURE(why != NULL && why[0] != '\0');
        ENSURE(sp_domain_pattern_parse(s, &p, NULL) == -1);
    } else {
        check_pattern(s, &p);
        check_host(&p, host, hlen);
    }
    free(s);
    return 0;
}
