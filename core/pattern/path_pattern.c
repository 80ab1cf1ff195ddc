#include "pattern/path_pattern.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SEG_LITERAL, SEG_PARAM } seg_kind;

struct sp_path_segment {
    seg_kind kind;
    const char *s; /* LITERAL: the normalised text (in the block after segs); PARAM: the
                      name, without ':', inside p->text */
    size_t len;
};

/* Specificity weights (documented in the header). */
enum {
    SPEC_LITERAL_CAP = 255,
    SPEC_PER_LITERAL = 64,
    SPEC_PER_PARAM = 2,
    SPEC_NOT_WILDCARD = 1,
    SPEC_EXACT = 1 << 14,
};

/* ---- characters ------------------------------------------------------------------- */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar, less '%' (escapes are read separately). */
static bool is_pchar(unsigned char c)
{
    return is_unreserved(c) || (c != 0 && strchr("!$&'()*+,;=:@", c) != NULL);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char HEX[] = "0123456789ABCDEF";

/* Normalises one segment s[0..n) (no '/' in it) into out: unreserved escapes decoded,
 * the others upper-cased; with `encode`, bytes that may not appear raw in a path are
 * percent-encoded (for pattern literals written as "/café"). Returns the length written
 * (at most n, or 3n with encode), or -1 for a bad escape or an encoded NUL. */
static long normalize_segment(const char *s, size_t n, char *out, bool encode)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hex_value((unsigned char)s[i + 1]), lo = hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            unsigned char v = (unsigned char)(hi << 4 | lo);
            if (v == 0)
                return -1;
            if (is_unreserved(v)) {
                out[o++] = (char)v;
            } else {
                out[o++] = '%';
                out[o++] = HEX[hi];
                out[o++] = HEX[lo];
            }
            i += 2;
        } else if (encode && !is_pchar(c)) {
            out[o++] = '%';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return (long)o;
}

static bool is_dot_segment(const char *s, size_t n)
{
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* ---- normalisation ---------------------------------------------------------------- */

long sp_path_normalize(const char *in, size_t len, char *out)
{
    if (len == 0 || in == NULL || in[0] != '/' || len > LONG_MAX)
        return -1;
    if (memchr(in, '\0', len) != NULL)
        return -1;
    /* out holds "/" followed by the kept segments, each but the last followed by '/';
     * o never passes i (an escape only shrinks, each '/' written stands for one read). */
    size_t o = 1;
    out[0] = '/';
    size_t i = 1;
    for (;;) {
        const char *slash = memchr(in + i, '/', len - i);
        size_t end = slash != NULL ? (size_t)(slash - in) : len;
        long d = normalize_segment(in + i, end - i, out + o, false);
        if (d < 0)
            return -1;
        bool last = slash == NULL;
        if (d == 0 || (d == 1 && out[o] == '.')) {
            /* empty ("//" merged, or the trailing slash kept) or "." */
        } else if (d == 2 && out[o] == '.' && out[o + 1] == '.') {
            if (o == 1)
                return -1; /* above the root */
            o--; /* the '/' ending the previous segment */
            while (out[o - 1] != '/')
                o--;
        } else {
            o += (size_t)d;
            if (!last)
                out[o++] = '/';
        }
        if (last)
            break;
        i = end + 1;
    }
    return (long)o;
}

/* Whether the path segment s[0..n) is the literal lit[0..litlen) (normalised when the
 * pattern was compiled: bytes that are not path characters encoded). A raw such byte in
 * the path, which the HTTP parser let through (UTF-8, '[', '|', ...), equals its escape,
 * so that "/café" matches "/caf%C3%A9" and the raw bytes alike. */
static bool literal_equal(const char *s, size_t n, const char *lit, size_t litlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' || is_pchar(c)) {
            if (j >= litlen || lit[j] != (char)c)
                return false;
            j++;
        } else {
            if (litlen - j < 3 || lit[j] != '%' || lit[j + 1] != HEX[c >> 4] ||
                lit[j + 2] != HEX[c & 15])
                return false;
            j += 3;
        }
    }
    return j == litlen;
}

/* ---- patterns --------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", why);
    return -1;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Compiles into p (text already set); returns NULL or the reason (a printf format
 * taking an int and a string: the length and start of the offending part). */
static const char *compile(sp_path_pattern *p, const char **bad, int *badn)
{
    const char *t = p->text;
    size_t n = strlen(t);
    if (n == 1 && t[0] == '*') {
        p->wildcard = true;
        return NULL;
    }
    if (n == 0 || t[0] != '/')
        return "expected a path starting with /";
    if (strpbrk(t, "?#") != NULL)
        return "'?' or '#' in a path pattern (the query is not matched)";

    size_t nsegs = 1;
    for (size_t i = 1; i < n; i++)
        nsegs += t[i] == '/';
    if (n >= 2 && t[n - 2] == '/' && t[n - 1] == '*') {
        p->wildcard = true;
        nsegs--;
        n -= 2; /* the segments are in t[0..n) */
    }
    if (nsegs > SIZE_MAX / 4 / sizeof(struct sp_path_segment))
        return "too long";
    /* The segments, then their normalised literal text (at most 3 bytes a byte). */
    char *block = malloc(nsegs * sizeof(struct sp_path_segment) + 3 * n + 1);
    if (block == NULL)
        return "out of memory";
    p->segs = (struct sp_path_segment *)(void *)block;
    char *lit = block + nsegs * sizeof(struct sp_path_segment);

    size_t literals = 0, params = 0;
    size_t i = 1;
    for (size_t k = 0; k < nsegs; k++) {
        const char *slash = memchr(t + i, '/', n - i);
        size_t end = slash != NULL ? (size_t)(slash - t) : n;
        const char *s = t + i;
        size_t len = end - i;
        struct sp_path_segment *seg = &p->segs[k];
        *bad = s;
        *badn = (int)(len < 200 ? len : 200);
        if (memchr(s, '*', len) != NULL)
            return len == 1 ? "'*' only as the last segment"
                            : "'*' only as a whole segment, as in \"/static/*\": %.*s";
        if (len > 0 && s[0] == ':') {
            if (len == 1)
                return "empty parameter name";
            for (size_t j = 1; j < len; j++)
                if (!is_name_char(s[j]))
                    return "bad parameter name (letters, digits and '_'): %.*s";
            if (++params > SP_PATH_MAX_PARAMS)
                return "more than 16 parameters";
            for (size_t j = 0; j < k; j++)
                if (p->segs[j].kind == SEG_PARAM && p->segs[j].len == len - 1 &&
                    memcmp(p->segs[j].s, s + 1, len - 1) == 0)
                    return "parameter named twice: %.*s";
            seg->kind = SEG_PARAM;
            seg->s = s + 1;
            seg->len = len - 1;
        } else {
            if (len == 0 && (slash != NULL || p->wildcard))
                return "empty segment (\"//\"): it never matches a normalised path";
            long d = normalize_segment(s, len, lit, true);
            if (d < 0)
                return "bad percent escape (\"%%\" and two hex digits, not %%00): %.*s";
            if (is_dot_segment(lit, (size_t)d))
                return "'.' or '..' segment (paths are matched without them): %.*s";
            seg->kind = SEG_LITERAL;
            seg->s = lit;
            seg->len = (size_t)d;
            lit += d;
            literals++;
        }
        p->nsegs = k + 1;
        i = end + 1;
    }

    if (params == 0 && !p->wildcard)
        p->specificity = SPEC_EXACT + (int)(literals < SPEC_LITERAL_CAP ? literals : SPEC_LITERAL_CAP);
    else
        p->specificity = (int)(literals < SPEC_LITERAL_CAP ? literals : SPEC_LITERAL_CAP) *
                             SPEC_PER_LITERAL +
                         (int)params * SPEC_PER_PARAM + (p->wildcard ? 0 : SPEC_NOT_WILDCARD);
    return NULL;
}

int sp_path_pattern_compile(const char *text, sp_path_pattern *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (text == NULL)
        return fail(err, errlen, "expected a path starting with /");
    out->text = strdup(text);
    if (out->text == NULL)
        return fail(err, errlen, "out of memory");
    const char *bad = "";
    int badn = 0;
    const char *why = compile(out, &bad, &badn);
    if (why == NULL)
        return 0;
    if (strstr(why, "%.*s") == NULL)
        fail(err, errlen, why);
    else if (err != NULL && errlen > 0)
        snprintf(err, errlen, why, badn, bad); /* bad points into out->text */
    sp_path_pattern_free(out);
    return -1;
}

void sp_path_pattern_free(sp_path_pattern *p)
{
    free(p->text);
    free(p->segs);
    memset(p, 0, sizeof *p);
}

bool sp_path_pattern_match(const sp_path_pattern *p, const char *path, size_t len,
                           sp_path_param *params, size_t *nparams)
{
    size_t np = 0;
    if (nparams != NULL)
        *nparams = 0;
    if (p->text == NULL || len == 0 || path == NULL || path[0] != '/')
        return false;
    /* Walk the path's segments ("/a/b/" is "a", "b", "") along the pattern's. */
    size_t i = 1;
    for (size_t k = 0; k < p->nsegs; k++) {
        if (i > len)
            return false; /* the path has fewer segments */
        const char *slash = memchr(path + i, '/', len - i);
        size_t end = slash != NULL ? (size_t)(slash - path) : len;
        const char *s = path + i;
        size_t n = end - i;
        const struct sp_path_segment *seg = &p->segs[k];
        if (seg->kind == SEG_LITERAL) {
            if (!literal_equal(s, n, seg->s, seg->len))
                return false;
        } else {
            if (n == 0)
                return false;
            if (params != NULL && np < SP_PATH_MAX_PARAMS)
                params[np] = (sp_path_param){ .name = seg->s, .name_len = seg->len,
                                              .value = s, .value_len = n };
            np++;
        }
        i = end + 1; /* len + 1 once the path has no more segments */
    }
    // i == len + 1: the path ended with the pattern's last segment. Else what is left
    // is "/rest" or, when the pattern has no segments ("/*"), the whole path.
    if (i <= len && !p->wildcard)
        return false;
    if (nparams != NULL)
        *nparams = np < SP_PATH_MAX_PARAMS ? np : SP_PATH_MAX_PARAMS;
    return true;
}
