/*
 * libFuzzer target for core/pattern/path_pattern.h.
 *
 * The input is "pattern\npath" (no newline: the whole input is both). The pattern is
 * compiled; the path (raw bytes, NULs and all) is normalised and checked against the
 * promises of sp_path_normalize (never longer, starts with '/', no "//", no "." or ".."
 * segment, escapes valid, upper-case and not of unreserved characters, idempotent), then
 * matched, raw and normalised, with checks on the parameters and the wildcard. A
 * normalised path compiled as a pattern (when it compiles) matches itself.
 */
#include "pattern/path_pattern.h"

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

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* A malloc'd exact-size copy, so that ASan sees a read past len. */
static char *copy_of(const char *s, size_t len)
{
    char *c = malloc(len ? len : 1);
    ENSURE(c != NULL);
    memcpy(c, s, len);
    return c;
}

static bool contains(const char *s, size_t len, const char *what)
{
    size_t n = strlen(what);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, what, n) == 0)
            return true;
    return false;
}

static bool ends_with(const char *s, size_t len, const char *what)
{
    size_t n = strlen(what);
    return len >= n && memcmp(s + len - n, what, n) == 0;
}

/* Normalises s[0..len) into a fresh exact-size buffer; -1 or the length. */
static long normalize(const char *s, size_t len, char **out)
{
    char *in = copy_of(s, len);
    *out = malloc(len ? len : 1);
    ENSURE(*out != NULL);
    long n = sp_path_normalize(len ? in : NULL, len, *out);
    free(in);
    return n;
}

static bool match(const sp_path_pattern *p, const char *path, size_t len)
{
    char *c = copy_of(path, len);
    sp_path_param params[SP_PATH_MAX_PARAMS];
    size_t n = 99;
    bool m = sp_path_pattern_match(p, len ? c : NULL, len, params, &n);
    if (!m) {
        ENSURE(n == 0);
    } else {
        ENSURE(n <= SP_PATH_MAX_PARAMS);
        for (size_t i = 0; i < n; i++) {
            ENSURE(params[i].value >= c && params[i].value + params[i].value_len <= c + len);
            ENSURE(params[i].value_len > 0 && memchr(params[i].value, '/', params[i].value_len) == NULL);
            ENSURE(params[i].name > p->text &&
                   params[i].name + params[i].name_len <= p->text + strlen(p->text));
            ENSURE(params[i].name_len > 0 && params[i].name[-1] == ':');
        }
        ENSURE(len > 0 && path[0] == '/');
        /* The same answer without params. */
        ENSURE(sp_path_pattern_match(p, c, len, NULL, NULL));
    }
    free(c);
    return m;
}

static void check_normalised(const char *out, size_t n)
{
    ENSURE(n >= 1 && out[0] == '/');
    ENSURE(!contains(out, n, "//"));
    ENSURE(!contains(out, n, "/./") && !contains(out, n, "/../"));
    ENSURE(!ends_with(out, n, "/.") && !ends_with(out, n, "/.."));
    ENSURE(memchr(out, '\0', n) == NULL);
    for (size_t i = 0; i < n; i++) {
        if (out[i] != '%')
            continue;
        ENSURE(i + 2 < n && is_upper_hex((unsigned char)out[i + 1]) &&
               is_upper_hex((unsigned char)out[i + 2]));
        unsigned char v = (unsigned char)((out[i + 1] <= '9' ? out[i + 1] - '0' : out[i + 1] - 'A' + 10) << 4 |
                                          (out[i + 2] <= '9' ? out[i + 2] - '0' : out[i + 2] - 'A' + 10));
        ENSURE(v != 0 && !is_unreserved(v));
        i += 2;
    }
    /* Normalising again changes nothing. */
    char *again;
    long m = normalize(out, n, &again);
    ENSURE(m == (long)n && memcmp(again, out, n) == 0);
    free(again);
}

static void check_pattern(const char *text, const sp_path_pattern *p)
{
    ENSURE(p->text != NULL && strcmp(p->text, text) == 0);
    ENSURE(p->specificity >= 0);
    bool exact = p->specificity >= 16384;
    if (exact)
        ENSURE(!p->wildcard);
    if (strcmp(text, "*") == 0 || strcmp(text, "/*") == 0)
        ENSURE(p->wildcard && p->nsegs == 0 && p->specificity == 0);
    if (p->wildcard)
        ENSURE(p->specificity < 16384 && p->specificity % 2 == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t plen = nl ? (size_t)(nl - in) : size;
    const char *path = nl ? nl + 1 : in;
    size_t len = nl ? size - plen - 1 : size;

    char *text = malloc(plen + 1);
    ENSURE(text != NULL);
    memcpy(text, in, plen);
    text[plen] = '\0';
    sp_path_pattern p;
    char err[128];
    bool compiled = sp_path_pattern_compile(text, &p, err, sizeof err) == 0;
    if (!compiled) {
        ENSURE(err[0] != '\0');
        ENSURE(p.text == NULL && p.segs == NULL && p.nsegs == 0);
    } else {
        check_pattern(text, &p);
    }

    char *out;
    long n = normalize(path, len, &out);
    ENSURE(n >= -1 && n <= (long)len);
    if (n < 0) {
        ENSURE(len == 0 || path[0] != '/' || memchr(path, '%', len) != NULL ||
               memchr(path, '\0', len) != NULL || contains(path, len, ".."));
    } else {
        check_normalised(out, (size_t)n);
    }

    if (compiled) {
        (void)match(&p, path, len); /* raw: anything, but no crash */
        if (n >= 0) {
            bool m = match(&p, out, (size_t)n);
            if (strcmp(text, "*") == 0 || strcmp(text, "/*") == 0)
                ENSURE(m);
            /* A wildcard match stays one below: "/a" -> "/a/x", "/a/" -> "/a/x". */
            if (m && p.wildcard) {
                char *deeper = malloc((size_t)n + 3);
                ENSURE(deeper != NULL);
                memcpy(deeper, out, (size_t)n);
                size_t d = (size_t)n;
                if (deeper[d - 1] != '/')
                    deeper[d++] = '/';
                deeper[d++] = 'x';
                ENSURE(match(&p, deeper, d));
                free(deeper);
            }
        }
        sp_path_pattern_free(&p);
        ENSURE(p.text == NULL && p.segs == NULL);
    }

    /* A normalised path, compiled as a pattern (where it is one: no '?', no "*x"...),
     * matches itself. */
    if (n >= 0) {
        char *self = malloc((size_t)n + 1);
        ENSURE(self != NULL);
        memcpy(self, out, (size_t)n);
        self[n] = '\0';
        sp_path_pattern q;
        if (sp_path_pattern_compile(self, &q, NULL, 0) == 0) {
            ENSURE(match(&q, out, (size_t)n));
            sp_path_pattern_free(&q);
        }
        free(self);
    }
    free(out);
    free(text);
    return 0;
}
