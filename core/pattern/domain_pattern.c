#include "pattern/domain_pattern.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pattern/glob.h"
#include "pattern/ip_pattern.h"

enum { MAX_NAME_LEN = 253, MAX_LABEL_LEN = 63 };

static char to_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* NULL when s[0..n) is one or more non-empty labels of allowed characters, each at most
 * 63 long; else the reason. */
static const char *check_labels(const char *s, size_t n)
{
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (label == 0)
                return "empty label";
            label = 0;
        } else if (s[i] == '*') {
            return "'*' must be the whole first label";
        } else if (!is_label_char(s[i])) {
            return "bad character (allowed: letters, digits, '-', '_', '.'; IDNs as xn--)";
        } else if (++label > MAX_LABEL_LEN) {
            return "label longer than 63 characters";
        }
    }
    return label == 0 ? "empty label" : NULL;
}

/* The RFC 5952 text of an IPv6 literal (brackets optional) in buf; returns its length,
 * or 0 when s[0..n) is not one. A v4-mapped address comes out as its dotted quad. */
static size_t canonical_ipv6(const char *s, size_t n, char buf[SP_IP_STRLEN])
{
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    /* sp_ip_parse reads a C string: an embedded NUL would cut the text short. */
    if (n == 0 || n >= SP_IP_STRLEN || memchr(s, ':', n) == NULL || memchr(s, '\0', n) != NULL)
        return 0;
    char text[SP_IP_STRLEN];
    memcpy(text, s, n);
    text[n] = '\0';
    sp_ip ip;
    if (sp_ip_parse(text, &ip) != 0)
        return 0;
    return sp_ip_format(&ip, buf, SP_IP_STRLEN);
}

/* A glob: label characters, dots and glob syntax; each label of each spelling is
 * checked loosely (no empty label, none over 63), then the glob itself. */
static const char *parse_glob(const char *s, size_t n, sp_domain_pattern *out)
{
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || (i + 1 < n && (s[i + 1] == ',' || s[i + 1] == '}')))
                return "empty label";
            label = 0;
        } else if (c == '{' || c == '}' || c == ',') {
            label = c == '}' ? label + 1 : 0; /* an alternative may end a label */
        } else if (c != '*' && c != '?' && !is_label_char(c)) {
            return "bad character (allowed: letters, digits, '-', '_', '.', '*', '?', '{a,b}')";
        } else if (++label > MAX_LABEL_LEN) {
            return "label longer than 63 characters";
        }
    }
    if (label == 0)
        return "empty label";
    const char *why = sp_glob_check(s, n);
    if (why != NULL)
        return why;
    for (size_t i = 0; i < n; i++)
        out->name[i] = to_lower(s[i]);
    out->name[n] = '\0';
    out->len = n;
    out->kind = SP_DOMAIN_GLOB;
    return NULL;
}

static const char *parse(const char *s, sp_domain_pattern *out)
{
    if (s == NULL)
        return "empty";
    size_t n = strlen(s);

    char v6[SP_IP_STRLEN];
    size_t v6_len = canonical_ipv6(s, n, v6);
    if (v6_len != 0) {
        out->kind = SP_DOMAIN_EXACT;
        memcpy(out->name, v6, v6_len + 1);
        out->len = v6_len;
        return NULL;
    }
    if (memchr(s, ':', n) != NULL)
        return "':' only in an IPv6 address (no ports here)";

    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0)
        return "empty";
    if (n > MAX_NAME_LEN)
        return "longer than 253 characters";
    if (n == 1 && s[0] == '*') {
        out->kind = SP_DOMAIN_ANY;
        return NULL;
    }
    out->kind = SP_DOMAIN_EXACT;
    if (sp_glob_has_magic(s, n) && !(n >= 2 && s[0] == '*' && s[1] == '.' && !sp_glob_has_magic(s + 1, n - 1)))
        return parse_glob(s, n, out);
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        out->kind = SP_DOMAIN_WILDCARD;
        s += 2;
        n -= 2;
    }
    const char *why = check_labels(s, n);
    if (why != NULL)
        return why;
    for (size_t i = 0; i < n; i++)
        out->name[i] = to_lower(s[i]);
    out->name[n] = '\0';
    out->len = n;
    return NULL;
}

int sp_domain_pattern_parse(const char *s, sp_domain_pattern *out, const char **why)
{
    memset(out, 0, sizeof *out);
    const char *reason = parse(s, out);
    if (reason == NULL)
        return 0;
    memset(out, 0, sizeof *out);
    if (why != NULL)
        *why = reason;
    return -1;
}

/* a has any case, b is lowercase. */
static bool equal_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (to_lower(a[i]) != b[i])
            return false;
    return true;
}

bool sp_domain_pattern_match(const sp_domain_pattern *p, const char *host, size_t len)
{
    if (p->kind == SP_DOMAIN_ANY)
        return true;
    if (len == 0 || host == NULL)
        return false;

    char v6[SP_IP_STRLEN];
    if (memchr(host, ':', len) != NULL) {
        len = canonical_ipv6(host, len, v6);
        if (len == 0)
            return false;
        host = v6;
    }
    if (host[len - 1] == '.')
        len--;
    if (len == 0)
        return false; /* "." is no name: only "*" takes it, as it takes no SNI */

    size_t plen = p->len < sizeof p->name ? p->len : sizeof p->name;
    if (p->kind == SP_DOMAIN_EXACT)
        return len == plen && equal_nocase(host, p->name, len);
    if (p->kind == SP_DOMAIN_GLOB)
        return sp_glob_match(p->name, plen, host, len);
    if (p->kind != SP_DOMAIN_WILDCARD || len < plen + 2)
        return false;
    /* host = labels "." suffix, the labels standing for the '*'. */
    size_t prefix = len - plen - 1;
    return host[prefix] == '.' && equal_nocase(host + prefix + 1, p->name, plen) &&
           check_labels(host, prefix) == NULL;
}

int sp_domain_pattern_specificity(const sp_domain_pattern *p)
{
    switch (p->kind) {
    case SP_DOMAIN_EXACT:
        return 256;
    case SP_DOMAIN_WILDCARD:
        return 1 + (int)(p->len <= MAX_NAME_LEN ? p->len : MAX_NAME_LEN);
    case SP_DOMAIN_GLOB: {
        size_t lit = sp_glob_literal_len(p->name, p->len);
        return 1 + (int)(lit <= MAX_NAME_LEN ? lit : MAX_NAME_LEN);
    }
    case SP_DOMAIN_ANY:
        break;
    }
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

size_t sp_host_without_port(const char *host, size_t len, const char **name)
{
    *name = host;
    if (len == 0)
        return 0;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close == NULL)
            return len;
        size_t inside = (size_t)(close - host) - 1;
        size_t rest = len - inside - 2; /* after the ']' */
        if (rest != 0 && !(close[1] == ':' && all_digits(close + 2, rest - 1)))
            return len;
        *name = host + 1;
        return inside;
    }
    const char *colon = memchr(host, ':', len);
    if (colon == NULL)
        return len;
    size_t before = (size_t)(colon - host), after = len - before - 1;
    if (memchr(colon + 1, ':', after) != NULL)
        return len; /* a bare IPv6 address */
    return all_digits(colon + 1, after) ? before : len;
}

const char *sp_domain_pattern_format(const sp_domain_pattern *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s%.*s", p->kind == SP_DOMAIN_WILDCARD ? "*." : "",
             p->kind == SP_DOMAIN_ANY ? 1 : (int)p->len, p->kind == SP_DOMAIN_ANY ? "*" : p->name);
    return buf;
}

bool sp_name_is_invalid(const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.')
        n--;
    static const char tld[] = "invalid";
    size_t t = sizeof tld - 1;
    return n >= t && strncasecmp(host + n - t, tld, t) == 0 && (n == t || host[n - t - 1] == '.');
}
