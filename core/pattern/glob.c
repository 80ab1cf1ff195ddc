/* Glob patterns for domains and addresses; see glob.h. */
#include "pattern/glob.h"

#include <string.h>

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

bool sp_glob_has_magic(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '*' || p[i] == '?' || p[i] == '{')
            return true;
    return false;
}

const char *sp_glob_check(const char *p, size_t n)
{
    if (n == 0)
        return "empty";
    if (n > SP_GLOB_MAX_LEN)
        return "longer than 253 characters";
    size_t spellings = 1, alternatives = 0;
    bool in_brace = false;
    for (size_t i = 0; i < n; i++) {
        if ((p[i] == ',' || p[i] == '}') && i > 0 && (p[i - 1] == '{' || p[i - 1] == ','))
            return "empty alternative";
        if (p[i] == '{') {
            if (in_brace)
                return "braces inside braces";
            in_brace = true;
            alternatives = 1;
        } else if (p[i] == '}') {
            if (!in_brace)
                return "'}' without '{'";
            if (alternatives < 2)
                return "braces need at least two alternatives (\"{a,b}\")";
            in_brace = false;
            spellings *= alternatives;
            if (spellings > SP_GLOB_MAX_ALTERNATIVES)
                return "more than 64 spellings";
        } else if (p[i] == ',') {
            if (!in_brace)
                return "',' outside braces";
            alternatives++;
        }
    }
    return in_brace ? "'{' without '}'" : NULL;
}

/* One spelling (no braces) against the text: '*' and '?' only. On a mismatch after a
 * '*', the star takes one more character and the walk resumes there: linear per star. */
static bool match_plain(const char *p, size_t pn, const char *t, size_t tn)
{
    size_t pi = 0, ti = 0, star = (size_t)-1, star_t = 0;
    while (ti < tn) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            star_t = ti;
        } else if (pi < pn && (p[pi] == '?' ? t[ti] != '.' : lower(p[pi]) == lower(t[ti]))) {
            pi++;
            ti++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            ti = ++star_t;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* Expands the first brace of p into each alternative (written into buf after the
 * `done` characters already fixed) and recurses; a spelling without braces is matched. */
static bool match_from(const char *p, size_t pn, char *buf, size_t done, const char *t, size_t tn)
{
    const char *open = memchr(p, '{', pn);
    if (!open) {
        memcpy(buf + done, p, pn);
        return match_plain(buf, done + pn, t, tn);
    }
    size_t before = (size_t)(open - p);
    memcpy(buf + done, p, before);
    const char *close = memchr(open, '}', pn - before);
    const char *rest = close + 1;
    size_t rest_n = pn - (size_t)(rest - p);
    for (const char *alt = open + 1; alt <= close;) {
        const char *end = alt;
        while (*end != ',' && end != close)
            end++;
        memcpy(buf + done + before, alt, (size_t)(end - alt));
        if (match_from(rest, rest_n, buf, done + before + (size_t)(end - alt), t, tn))
            return true;
        alt = end + 1;
    }
    return false;
}

bool sp_glob_match(const char *p, size_t pn, const char *t, size_t tn)
{
    char buf[SP_GLOB_MAX_LEN + 1]; /* a spelling is never longer than its glob */
    if (pn > SP_GLOB_MAX_LEN)
        return false;
    return match_from(p, pn, buf, 0, t, tn);
}

size_t sp_glob_literal_len(const char *p, size_t n)
{
    size_t literal = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '*' || p[i] == '?')
            continue;
        if (p[i] != '{') {
            literal++;
            continue;
        }
        size_t shortest = (size_t)-1, cur = 0; /* the shortest alternative counts */
        for (i++; p[i] != '}'; i++) {
            if (p[i] == ',') {
                shortest = cur < shortest ? cur : shortest;
                cur = 0;
            } else if (p[i] != '*' && p[i] != '?') {
                cur++;
            }
        }
        literal += cur < shortest ? cur : shortest;
    }
    return literal;
}
