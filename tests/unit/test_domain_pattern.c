/* Domain patterns for SNI and Host matching (core/pattern/domain_pattern.h). */
#include "pattern/domain_pattern.h"

#include <string.h>

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------- */

static sp_domain_pattern pattern_of(const char *s)
{
    sp_domain_pattern p;
    const char *why = NULL;
    memset(&p, 0xee, sizeof p);
    if (sp_domain_pattern_parse(s, &p, &why) != 0) {
        unit_fail_(__FILE__, __LINE__, "pattern in a test does not parse");
        fprintf(stderr, "    \"%s\": %s\n", s, why ? why : "(no reason)");
    }
    return p;
}

/* NULL when s parses, else the reason. */
static const char *reason(const char *s)
{
    sp_domain_pattern p;
    const char *why = NULL;
    if (sp_domain_pattern_parse(s, &p, &why) == 0)
        return NULL;
    return why != NULL ? why : "(no reason given)";
}

static bool matches(const char *pattern, const char *host)
{
    sp_domain_pattern p = pattern_of(pattern);
    return sp_domain_pattern_match(&p, host, strlen(host));
}

/* The name part of a Host value, as a string. */
static const char *host_name(const char *host)
{
    static char out[300];
    const char *name = NULL;
    size_t n = sp_host_without_port(host, strlen(host), &name);
    if (name == NULL || name < host || name + n > host + strlen(host) || n >= sizeof out)
        return "(out of bounds)";
    memcpy(out, name, n);
    out[n] = '\0';
    return out;
}

static bool host_matches(const char *pattern, const char *host)
{
    sp_domain_pattern p = pattern_of(pattern);
    const char *name;
    size_t n = sp_host_without_port(host, strlen(host), &name);
    return sp_domain_pattern_match(&p, name, n);
}

/* ---- parsing -------------------------------------------------------------------------- */

TEST(parse_exact)
{
    sp_domain_pattern p = pattern_of("example.com");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_EXACT);
    CHECK_STR_EQ(p.name, "example.com");
    CHECK_EQ_INT(p.len, 11);

    p = pattern_of("WWW.Example.COM.");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_EXACT);
    CHECK_STR_EQ(p.name, "www.example.com");
    CHECK_EQ_INT(p.len, 15);

    p = pattern_of("localhost");
    CHECK_STR_EQ(p.name, "localhost");
    p = pattern_of("_acme-challenge.xn--bcher-kva.example");
    CHECK_STR_EQ(p.name, "_acme-challenge.xn--bcher-kva.example");
    p = pattern_of("a");
    CHECK_EQ_INT(p.len, 1);
}

TEST(parse_wildcard_and_any)
{
    sp_domain_pattern p = pattern_of("*.Example.com");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_WILDCARD);
    CHECK_STR_EQ(p.name, "example.com");
    CHECK_EQ_INT(p.len, 11);

    p = pattern_of("*.com.");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_WILDCARD);
    CHECK_STR_EQ(p.name, "com");

    p = pattern_of("*");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_ANY);
    CHECK_STR_EQ(p.name, "");
    CHECK_EQ_INT(p.len, 0);
}

TEST(parse_ip_literals)
{
    sp_domain_pattern p = pattern_of("127.0.0.1");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_EXACT);
    CHECK_STR_EQ(p.name, "127.0.0.1");

    p = pattern_of("::1");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_EXACT);
    CHECK_STR_EQ(p.name, "::1");
    p = pattern_of("[::1]");
    CHECK_STR_EQ(p.name, "::1");
    p = pattern_of("2001:DB8:0:0::0:1");
    CHECK_STR_EQ(p.name, "2001:db8::1");
    p = pattern_of("::ffff:192.0.2.1"); /* v4-mapped is the IPv4 address */
    CHECK_STR_EQ(p.name, "192.0.2.1");

    static const char *const colon = "':' only in an IPv6 address (no ports here)";
    CHECK_STR_EQ(reason("::g"), colon);
    CHECK_STR_EQ(reason("[::1"), colon);
    CHECK_STR_EQ(reason("fe80::1%eth0"), colon);
    CHECK_STR_EQ(reason("example.com:443"), colon);
    CHECK_STR_EQ(reason("[::1]:443"), colon);
    CHECK(reason("[example.com]") != NULL);
}

TEST(parse_rejects)
{
    static const char *const bad[] = {
        "", ".", "..", "a..b", ".a", "a.b..", "*..", "*..a", "a b", " a", "a ", "a\tb",
        "a/b", "a@b", "a,b", "caf\xc3\xa9.fr", "a\\b", "a%2eb", "\x7f", "a.b\n", "a.b.\n",
        "{a}.b", "{a,b.c", "a,b}.c", "{a,{b,c}}.d", "{a,}.b", "{,a}.b", "{a.,b}.c", "a.{b,c.}", "a.*..",
        "*.a\n", "a?.b c",
    };
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        if (reason(bad[i]) == NULL) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad pattern");
            fprintf(stderr, "    \"%s\"\n", bad[i]);
        }
    }
    sp_domain_pattern p;
    CHECK(sp_domain_pattern_parse(NULL, &p, NULL) == -1);
    CHECK(sp_domain_pattern_parse("a..b", &p, NULL) == -1);

    CHECK_STR_EQ(reason(""), "empty");
    CHECK_STR_EQ(reason("."), "empty");
    CHECK_STR_EQ(reason("a..b"), "empty label");
    CHECK_STR_EQ(reason("{a}.b"), "braces need at least two alternatives (\"{a,b}\")");
    CHECK_STR_EQ(reason("{a,{b,c}}.d"), "braces inside braces");
    CHECK_STR_EQ(reason("{a,b}.c,d"), "',' outside braces");
    CHECK_STR_EQ(reason("{a,b.c"), "'{' without '}'");
}

/* SmartProxy's minimatch-style domain globs: '*' spans dots, '?' is one character of a
 * label, braces list alternatives. */
TEST(glob_domains)
{
    static const struct { const char *pattern, *host; bool match; } cases[] = {
        {"example.*", "example.com", true},
        {"example.*", "example.co.uk", true},
        {"example.*", "www.example.com", false},
        {"api-*.example.com", "api-eu.example.com", true},
        {"api-*.example.com", "api-.example.com", true},
        {"api-*.example.com", "api.example.com", false},
        {"API-*.Example.COM", "api-x.EXAMPLE.com.", true},
        {"*.*.example.com", "a.b.example.com", true},
        {"*.*.example.com", "a.b.c.example.com", true},
        {"*.*.example.com", "a.example.com", false},
        {"{a,b}.example.com", "a.example.com", true},
        {"{a,b}.example.com", "b.example.com", true},
        {"{a,b}.example.com", "c.example.com", false},
        {"{api,www}.{example,test}.*", "www.test.org", true},
        {"{api,www}.{example,test}.*", "ftp.test.org", false},
        {"s?.example.com", "s1.example.com", true},
        {"s?.example.com", "s12.example.com", false},
        {"a?b.c", "a.b.c", false}, /* '?' never stands for a dot */
        {"*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false},
        {"**.a", "x.a", true},
        {"-*.a", "-x.a", true},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        sp_domain_pattern p;
        const char *why = NULL;
        if (sp_domain_pattern_parse(cases[i].pattern, &p, &why) != 0) {
            unit_fail_(__FILE__, __LINE__, "a glob did not parse");
            fprintf(stderr, "    \"%s\": %s\n", cases[i].pattern, why);
            continue;
        }
        CHECK(p.kind == SP_DOMAIN_GLOB);
        if (sp_domain_pattern_match(&p, cases[i].host, strlen(cases[i].host)) != cases[i].match) {
            unit_fail_(__FILE__, __LINE__, "wrong glob match");
            fprintf(stderr, "    \"%s\" against \"%s\": expected %s\n", cases[i].pattern, cases[i].host,
                    cases[i].match ? "a match" : "none");
        }
    }
    sp_domain_pattern any;
    REQUIRE(sp_domain_pattern_parse("example.*", &any, NULL) == 0);
    CHECK(!sp_domain_pattern_match(&any, NULL, 0)); /* no SNI: only "*" takes it */
    /* the simple forms keep their kinds */
    CHECK(sp_domain_pattern_parse("*.example.com", &any, NULL) == 0 && any.kind == SP_DOMAIN_WILDCARD);
    CHECK(sp_domain_pattern_parse("*", &any, NULL) == 0 && any.kind == SP_DOMAIN_ANY);
}

TEST(glob_specificity_sits_between_exact_and_any)
{
    sp_domain_pattern exact, longer, shorter, star, wild;
    REQUIRE(sp_domain_pattern_parse("api-eu.example.com", &exact, NULL) == 0);
    REQUIRE(sp_domain_pattern_parse("api-*.example.com", &longer, NULL) == 0);
    REQUIRE(sp_domain_pattern_parse("*.example.com", &wild, NULL) == 0);
    REQUIRE(sp_domain_pattern_parse("*.*.com", &shorter, NULL) == 0);
    REQUIRE(sp_domain_pattern_parse("*", &star, NULL) == 0);
    CHECK(sp_domain_pattern_specificity(&exact) > sp_domain_pattern_specificity(&longer));
    CHECK(sp_domain_pattern_specificity(&longer) > sp_domain_pattern_specificity(&wild));
    CHECK(sp_domain_pattern_specificity(&wild) > sp_domain_pattern_specificity(&shorter));
    CHECK(sp_domain_pattern_specificity(&shorter) > sp_domain_pattern_specificity(&star));
    sp_domain_pattern braces;
    REQUIRE(sp_domain_pattern_parse("{a,bbb}.example.com", &braces, NULL) == 0);
    CHECK_EQ_INT(sp_domain_pattern_specificity(&braces), 1 + 1 + 12); /* the shortest spelling */
    char buf[258];
    CHECK_STR_EQ(sp_domain_pattern_format(&braces, buf, sizeof buf), "{a,bbb}.example.com");
}

/* "*." is "*" with a trailing dot: anything. */
TEST(parse_star_dot_is_any)
{
    sp_domain_pattern p = pattern_of("*.");
    CHECK_EQ_INT(p.kind, SP_DOMAIN_ANY);
}

TEST(parse_lengths)
{
    char s[300];
    /* 63-character labels are fine, 64 are not. */
    memset(s, 'a', 63);
    strcpy(s + 63, ".com");
    CHECK(reason(s) == NULL);
    memset(s, 'a', 64);
    strcpy(s + 64, ".com");
    CHECK_STR_EQ(reason(s), "label longer than 63 characters");

    /* 253 characters (4 labels of 63 with dots is 255; build 253 exactly). */
    size_t n = 0;
    for (int label = 0; label < 4; label++) {
        size_t k = label < 3 ? 63 : 61;
        memset(s + n, 'b', k);
        n += k;
        if (label < 3)
            s[n++] = '.';
    }
    s[n] = '\0';
    REQUIRE(n == 253);
    sp_domain_pattern p = pattern_of(s);
    CHECK_EQ_INT(p.len, 253);
    s[n] = '.'; /* the trailing dot does not count */
    s[n + 1] = '\0';
    CHECK(reason(s) == NULL);
    s[n] = 'b';
    CHECK_STR_EQ(reason(s), "longer than 253 characters");

    /* The "*." counts: a matching name is at least as long as the pattern. */
    s[0] = '*';
    s[1] = '.';
    s[n] = '\0';
    p = pattern_of(s);
    CHECK_EQ_INT(p.kind, SP_DOMAIN_WILDCARD);
    CHECK_EQ_INT(p.len, 251);
    s[n] = 'b';
    CHECK_STR_EQ(reason(s), "longer than 253 characters");
}

TEST(parse_failure_leaves_no_half_pattern)
{
    sp_domain_pattern p;
    memset(&p, 0xee, sizeof p);
    const char *why = NULL;
    CHECK(sp_domain_pattern_parse("Good.example..", &p, &why) == -1);
    CHECK(why != NULL);
    CHECK_EQ_INT(p.len, 0);
    CHECK_STR_EQ(p.name, "");
}

/* ---- matching --------------------------------------------------------------------------- */

TEST(match_exact)
{
    CHECK(matches("example.com", "example.com"));
    CHECK(matches("example.com", "EXAMPLE.com"));
    CHECK(matches("example.com", "example.com."));
    CHECK(matches("Example.COM", "eXample.cOm"));
    CHECK(!matches("example.com", "example.com.."));
    CHECK(!matches("example.com", "www.example.com"));
    CHECK(!matches("example.com", "example.co"));
    CHECK(!matches("example.com", "example.comm"));
    CHECK(!matches("example.com", "xexample.com"));
    CHECK(!matches("example.com", ".example.com"));
    CHECK(!matches("example.com", ""));
    CHECK(!matches("example.com", "."));
    CHECK(!matches("example.com", "example.com:443"));

    sp_domain_pattern p = pattern_of("example.com");
    CHECK(!sp_domain_pattern_match(&p, NULL, 0));
    CHECK(!sp_domain_pattern_match(&p, "example.com\0", 12));
    CHECK(sp_domain_pattern_match(&p, "example.comXYZ", 11)); /* only len bytes count */
}

TEST(match_wildcard)
{
    CHECK(matches("*.example.com", "a.example.com"));
    CHECK(matches("*.example.com", "A.EXAMPLE.COM"));
    CHECK(matches("*.example.com", "a.b.example.com"));
    CHECK(matches("*.example.com", "a.example.com."));
    CHECK(matches("*.example.com", "x-1_y.example.com"));
    CHECK(!matches("*.example.com", "example.com"));
    CHECK(!matches("*.example.com", "example.com."));
    CHECK(!matches("*.example.com", ".example.com"));
    CHECK(!matches("*.example.com", "..example.com"));
    CHECK(!matches("*.example.com", "a..example.com"));
    CHECK(!matches("*.example.com", "aexample.com"));
    CHECK(!matches("*.example.com", "a.example.org"));
    CHECK(!matches("*.example.com", "a.example.com.evil"));
    CHECK(!matches("*.example.com", "a b.example.com"));
    CHECK(!matches("*.example.com", "a/b.example.com"));
    CHECK(!matches("*.example.com", "*.example.com"));
    CHECK(!matches("*.example.com", ""));

    sp_domain_pattern p = pattern_of("*.example.com");
    CHECK(!sp_domain_pattern_match(&p, "a\0.example.com", 14));
    CHECK(!sp_domain_pattern_match(&p, NULL, 0));

    char deep[300];
    memset(deep, 'a', 64);
    strcpy(deep + 64, ".example.com");
    CHECK(!matches("*.example.com", deep)); /* a label no DNS name has */
    deep[0] = 'b';
    deep[1] = '.';
    CHECK(matches("*.example.com", deep));
}

TEST(match_any)
{
    sp_domain_pattern p = pattern_of("*");
    CHECK(sp_domain_pattern_match(&p, "example.com", 11));
    CHECK(sp_domain_pattern_match(&p, "", 0));
    CHECK(sp_domain_pattern_match(&p, NULL, 0));
    CHECK(sp_domain_pattern_match(&p, "junk with spaces", 16));
}

TEST(match_ip_literals)
{
    CHECK(matches("127.0.0.1", "127.0.0.1"));
    CHECK(!matches("127.0.0.1", "127.0.0.2"));
    CHECK(!matches("127.0.0.1", "127.0.0.10"));
    CHECK(matches("::1", "::1"));
    CHECK(matches("::1", "[::1]"));
    CHECK(matches("::1", "0:0:0:0:0:0:0:1"));
    CHECK(matches("[::1]", "0::1"));
    CHECK(!matches("::1", "::2"));
    CHECK(!matches("::1", "::1x"));
    CHECK(matches("2001:db8::1", "2001:DB8:0::1"));
    CHECK(matches("192.0.2.1", "::ffff:192.0.2.1"));
    CHECK(matches("::ffff:192.0.2.1", "192.0.2.1"));
    CHECK(!matches("example.com", "::1"));
    CHECK(!matches("*.example.com", "::1"));

    sp_domain_pattern p = pattern_of("::1");
    CHECK(!sp_domain_pattern_match(&p, "::1\0junk", 8));
}

/* Host header values, through sp_host_without_port. */
TEST(match_host_headers)
{
    CHECK(host_matches("127.0.0.1", "127.0.0.1:8080"));
    CHECK(host_matches("127.0.0.1", "127.0.0.1"));
    CHECK(host_matches("::1", "[::1]:8080"));
    CHECK(host_matches("::1", "[::1]"));
    CHECK(host_matches("example.com", "Example.Com:443"));
    CHECK(host_matches("example.com", "example.com.:443"));
    CHECK(host_matches("*.example.com", "a.example.com:8443"));
    CHECK(!host_matches("example.com", "example.com:https"));
    CHECK(host_matches("*", "example.com:https"));
}

/* ---- specificity ------------------------------------------------------------------------- */

TEST(specificity_orders)
{
    sp_domain_pattern any = pattern_of("*"), com = pattern_of("*.com"),
                      ex = pattern_of("*.example.com"), a_ex = pattern_of("*.a.example.com"),
                      exact = pattern_of("b.a.example.com"), short_exact = pattern_of("a"),
                      longest = pattern_of("*.x.y.example.com");
    CHECK_EQ_INT(sp_domain_pattern_specificity(&any), 0);
    CHECK(sp_domain_pattern_specificity(&com) > sp_domain_pattern_specificity(&any));
    CHECK(sp_domain_pattern_specificity(&ex) > sp_domain_pattern_specificity(&com));
    CHECK(sp_domain_pattern_specificity(&a_ex) > sp_domain_pattern_specificity(&ex));
    CHECK(sp_domain_pattern_specificity(&exact) > sp_domain_pattern_specificity(&a_ex));
    CHECK(sp_domain_pattern_specificity(&short_exact) > sp_domain_pattern_specificity(&longest));

    /* The longest possible wildcard still ranks below any exact name. */
    char s[300] = "*.";
    size_t n = 2;
    for (int label = 0; label < 4; label++) {
        size_t k = label < 3 ? 63 : 59;
        memset(s + n, 'c', k);
        n += k;
        if (label < 3)
            s[n++] = '.';
    }
    s[n] = '\0';
    sp_domain_pattern wide = pattern_of(s);
    REQUIRE(wide.kind == SP_DOMAIN_WILDCARD);
    CHECK_EQ_INT(sp_domain_pattern_specificity(&wide), 252);
    CHECK(sp_domain_pattern_specificity(&short_exact) > sp_domain_pattern_specificity(&wide));
}

/* ---- Host without port ------------------------------------------------------------------ */

TEST(host_without_port)
{
    CHECK_STR_EQ(host_name("example.com"), "example.com");
    CHECK_STR_EQ(host_name("Example.COM:8080"), "Example.COM");
    CHECK_STR_EQ(host_name("example.com:"), "example.com");
    CHECK_STR_EQ(host_name("127.0.0.1:8080"), "127.0.0.1");
    CHECK_STR_EQ(host_name("[::1]:8080"), "::1");
    CHECK_STR_EQ(host_name("[::1]"), "::1");
    CHECK_STR_EQ(host_name("[::1]:"), "::1");
    CHECK_STR_EQ(host_name("[2001:db8::1]:443"), "2001:db8::1");
    CHECK_STR_EQ(host_name("::1"), "::1"); /* bare IPv6: all name */
    CHECK_STR_EQ(host_name("[]:80"), "");
    CHECK_STR_EQ(host_name(":80"), "");
    CHECK_STR_EQ(host_name(""), "");

    /* Not name[:port]: returned whole. */
    CHECK_STR_EQ(host_name("example.com:http"), "example.com:http");
    CHECK_STR_EQ(host_name("a:b"), "a:b");
    CHECK_STR_EQ(host_name("[::1"), "[::1");
    CHECK_STR_EQ(host_name("[::1]x"), "[::1]x");
    CHECK_STR_EQ(host_name("[::1]:8x"), "[::1]:8x");
    CHECK_STR_EQ(host_name("[::1]]:80"), "[::1]]:80");
    CHECK_STR_EQ(host_name("a:1:2"), "a:1:2");

    const char *name = "unset";
    CHECK_EQ_INT(sp_host_without_port(NULL, 0, &name), 0);
    CHECK(name == NULL);

    /* Only len bytes are looked at. */
    const char *h = "example.com:80junk";
    CHECK_EQ_INT(sp_host_without_port(h, 14, &name), 11);
    CHECK(name == h);
    CHECK_EQ_INT(sp_host_without_port("[::1]:80", 5, &name), 3);
    CHECK_EQ_INT(sp_host_without_port("[::1]:80", 4, &name), 4);
}

TEST(invalid_names_never_resolve)
{
    CHECK(sp_name_is_invalid("invalid"));
    CHECK(sp_name_is_invalid("no-such-host.invalid"));
    CHECK(sp_name_is_invalid("a.b.INVALID"));
    CHECK(sp_name_is_invalid("x.invalid."));
    CHECK(!sp_name_is_invalid("invalid.example.com"));
    CHECK(!sp_name_is_invalid("notinvalid"));
    CHECK(!sp_name_is_invalid("x.invalidx"));
    CHECK(!sp_name_is_invalid("localhost"));
    CHECK(!sp_name_is_invalid(""));
    CHECK(!sp_name_is_invalid("."));
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(parse_exact),
        UNIT(parse_wildcard_and_any),
        UNIT(parse_ip_literals),
        UNIT(parse_rejects),
        UNIT(parse_star_dot_is_any),
        UNIT(parse_lengths),
        UNIT(parse_failure_leaves_no_half_pattern),
        UNIT(match_exact),
        UNIT(match_wildcard),
        UNIT(match_any),
        UNIT(match_ip_literals),
        UNIT(match_host_headers),
        UNIT(specificity_orders),
        UNIT(host_without_port),
        UNIT(invalid_names_never_resolve),
        UNIT(glob_domains),
        UNIT(glob_specificity_sits_between_exact_and_any),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
