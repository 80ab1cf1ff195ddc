/* Path patterns and path normalisation (core/pattern/path_pattern.h). */
#include "pattern/path_pattern.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------- */

/* The normalised path as a string, or "(error)". */
static const char *norm(const char *in)
{
    static char out[8192];
    size_t len = strlen(in);
    /* An exact-size output (plus a guard byte), as the header promises at most len. */
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return "(oom)";
    buf[len] = '\x5a';
    long n = sp_path_normalize(in, len, buf);
    const char *r = out;
    if (buf[len] != '\x5a')
        r = "(wrote past len)";
    else if (n < 0)
        r = "(error)";
    else if ((size_t)n > len)
        r = "(longer than the input)";
    else {
        memcpy(out, buf, (size_t)n);
        out[n] = '\0';
    }
    free(buf);
    return r;
}

static sp_path_pattern pattern_of(const char *s)
{
    sp_path_pattern p;
    char err[200];
    if (sp_path_pattern_compile(s, &p, err, sizeof err) != 0) {
        unit_fail_(__FILE__, __LINE__, "pattern in a test does not compile");
        fprintf(stderr, "    \"%s\": %s\n", s, err);
    }
    return p;
}

/* NULL when s compiles, else the message. */
static const char *error_of(const char *s)
{
    static char err[200];
    sp_path_pattern p;
    if (sp_path_pattern_compile(s, &p, err, sizeof err) == 0) {
        sp_path_pattern_free(&p);
        return NULL;
    }
    if (p.text != NULL || p.segs != NULL || p.nsegs != 0)
        return "(not zeroed on failure)";
    return err[0] != '\0' ? err : "(no message)";
}

static bool matches(const char *pattern, const char *path)
{
    sp_path_pattern p = pattern_of(pattern);
    size_t n = 99;
    bool m = sp_path_pattern_match(&p, path, strlen(path), NULL, &n);
    if (!m && n != 0)
        unit_fail_(__FILE__, __LINE__, "nparams not 0 after a miss");
    sp_path_pattern_free(&p);
    return m;
}

/* "name=value,name=value" of a match, "(no match)" otherwise. */
static const char *params_of(const char *pattern, const char *path)
{
    static char out[1024];
    sp_path_pattern p = pattern_of(pattern);
    sp_path_param params[SP_PATH_MAX_PARAMS];
    size_t n = 99;
    if (!sp_path_pattern_match(&p, path, strlen(path), params, &n)) {
        sp_path_pattern_free(&p);
        return "(no match)";
    }
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (params[i].value < path || params[i].value + params[i].value_len > path + strlen(path))
            unit_fail_(__FILE__, __LINE__, "parameter value not inside the path");
        if (params[i].name < p.text || params[i].name + params[i].name_len > p.text + strlen(p.text))
            unit_fail_(__FILE__, __LINE__, "parameter name not inside the pattern text");
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s=%.*s", i ? "," : "",
                              (int)params[i].name_len, params[i].name,
                              (int)params[i].value_len, params[i].value);
    }
    sp_path_pattern_free(&p);
    return out;
}

static int spec(const char *pattern)
{
    sp_path_pattern p = pattern_of(pattern);
    int s = p.specificity;
    sp_path_pattern_free(&p);
    return s;
}

typedef struct { const char *in, *out; } pair;

static void check_pairs(const pair *t, size_t n, int line)
{
    for (size_t i = 0; i < n; i++) {
        const char *got = norm(t[i].in);
        if (strcmp(got, t[i].out) != 0) {
            unit_fail_(__FILE__, line, "normalisation");
            fprintf(stderr, "    \"%s\": got \"%s\", expected \"%s\"\n", t[i].in, got,
                    t[i].out);
        }
    }
}

/* ---- normalisation ---------------------------------------------------------------- */

TEST(normalize_plain_paths_unchanged)
{
    static const pair t[] = {
        { "/", "/" },
        { "/a", "/a" },
        { "/a/b/c", "/a/b/c" },
        { "/a/", "/a/" },
        { "/users/42/posts", "/users/42/posts" },
        { "/a.b/c..d/...", "/a.b/c..d/..." },
        { "/.a/..b/.../a.", "/.a/..b/.../a." },
        { "/~user/a-b_c.d", "/~user/a-b_c.d" },
        { "/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;=" },
        { "/%2F%3F%23", "/%2F%3F%23" },
        { "/a%20b", "/a%20b" },
        { "/caf%C3%A9", "/caf%C3%A9" },
        { "/a\\b", "/a\\b" },
    };
    check_pairs(t, UNIT_COUNT(t), __LINE__);
}

TEST(normalize_percent_escapes)
{
    static const pair t[] = {
        { "/%41%42%43", "/ABC" },
        { "/%61%7A%30%39", "/az09" },
        { "/%2d%2E%5f%7e", "/-._~" },
        { "/%2D%5F%7E", "/-_~" },
        { "/%7euser", "/~user" },
        { "/caf%c3%a9", "/caf%C3%A9" },
        { "/%2f", "/%2F" },           /* an encoded slash stays one, in its segment */
        { "/a%2fb/c", "/a%2Fb/c" },
        { "/%3a%40%21", "/%3A%40%21" }, /* reserved: kept encoded, hex upper-cased */
        { "/%25", "/%25" },           /* '%' itself */
        { "/%2541", "/%2541" },       /* no double decoding */
        { "/%20", "/%20" },
        { "/%ff%Fe%fF", "/%FF%FE%FF" },
        { "/%01", "/%01" },
        { "/%7f", "/%7F" },
        { "/a%2Db", "/a-b" },
    };
    check_pairs(t, UNIT_COUNT(t), __LINE__);
}

TEST(normalize_slashes)
{
    static const pair t[] = {
        { "//", "/" },
        { "///", "/" },
        { "//a", "/a" },
        { "/a//b", "/a/b" },
        { "/a///b////c", "/a/b/c" },
        { "/a//", "/a/" },
        { "/a/b//", "/a/b/" },
        { "////a////", "/a/" },
    };
    check_pairs(t, UNIT_COUNT(t), __LINE__);
}

TEST(normalize_dot_segments)
{
    static const pair t[] = {
        /* RFC 3986 5.2.4 and 5.4 (the paths of the examples). */
        { "/a/b/c/./../../g", "/a/g" },
        { "/b/c/d;p/../g", "/b/c/g" },
        { "/b/c/./g", "/b/c/g" },
        { "/b/c/g/", "/b/c/g/" },
        { "/b/c/.", "/b/c/" },
        { "/b/c/./", "/b/c/" },
        { "/b/c/..", "/b/" },
        { "/b/c/../", "/b/" },
        { "/b/c/../g", "/b/g" },
        { "/b/c/../..", "/" },
        { "/b/c/../../", "/" },
        { "/b/c/../../g", "/g" },
        { "/b/c/g.", "/b/c/g." },
        { "/b/c/.g", "/b/c/.g" },
        { "/b/c/g..", "/b/c/g.." },
        { "/b/c/..g", "/b/c/..g" },
        { "/b/c/./../g", "/b/g" },
        { "/b/c/./g/.", "/b/c/g/" },
        { "/b/c/g/./h", "/b/c/g/h" },
        { "/b/c/g/../h", "/b/c/h" },
        { "/mid/content=5/../6", "/mid/6" },
        /* More. */
        { "/.", "/" },
        { "/./", "/" },
        { "/./.", "/" },
        { "/././a", "/a" },
        { "/a/.", "/a/" },
        { "/a/..", "/" },
        { "/a/../", "/" },
        { "/a/../b", "/b" },
        { "/a/b/../../c", "/c" },
        { "/static/../admin", "/admin" },
        { "/a/./b/./c/.", "/a/b/c/" },
        { "/a//../b", "/b" },       /* "//" merged first: ".." removes "a" */
        { "/a/.//b", "/a/b" },
        { "/a/..//b", "/b" },
        { "/a/b/..//..//c", "/c" },
        { "/...", "/..." },
    };
    check_pairs(t, UNIT_COUNT(t), __LINE__);
}

TEST(normalize_encoded_dots)
{
    static const pair t[] = {
        { "/%2e", "/" },
        { "/%2E/", "/" },
        { "/a/%2e%2e", "/" },
        { "/a/%2e%2E", "/" },
        { "/a/%2E%2E/b", "/b" },
        { "/a/.%2e/b", "/b" },
        { "/a/%2e./b", "/b" },
        { "/static/%2e%2e/admin", "/admin" },
        { "/static/%2E%2E%2Fadmin", "/static/..%2Fadmin" }, /* %2F is no separator */
        { "/a/%2e%2e%2e", "/a/..." },
        { "/a/%2ex", "/a/.x" },
    };
    check_pairs(t, UNIT_COUNT(t), __LINE__);
}

TEST(normalize_rejects)
{
    static const char *const bad[] = {
        "", "a", "a/b", "*", "?", "%2F", " /", "\\a", "http://example.com/",
        /* above the root */
        "/..", "/../", "/../a", "/a/../..", "/a/../../b", "/%2e%2e", "/.%2E/a", "/./..",
        "/a/b/../../..", "//..", "/a//../..",
        /* bad escapes */
        "/%", "/%0", "/%g0", "/%0g", "/%zz", "/a%", "/a%2", "/a%2/b", "/%%41", "/%-1",
        "/% 1", "/%2e%", "/a/%/b",
        /* NUL */
        "/%00", "/a%00b", "/%00/..",
    };
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        const char *got = norm(bad[i]);
        if (strcmp(got, "(error)") != 0) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad path");
            fprintf(stderr, "    \"%s\" -> \"%s\"\n", bad[i], got);
        }
    }
    /* A raw NUL, which a C string cannot show. */
    char out[8];
    CHECK_EQ_INT(sp_path_normalize("/a\0b", 4, out), -1);
    CHECK_EQ_INT(sp_path_normalize("/", 0, out), -1);
    CHECK_EQ_INT(sp_path_normalize(NULL, 0, out), -1);
    /* len is honoured: "/a" of "/a%zz". */
    CHECK_EQ_INT(sp_path_normalize("/a%zz", 2, out), 2);
    CHECK(memcmp(out, "/a", 2) == 0);
}

TEST(normalize_is_idempotent_and_never_longer)
{
    static const char *const in[] = {
        "/a/b/c/./../../g", "//a//b//", "/%7e%2e%2E/x/%2e/y/..", "/caf%c3%a9/%2f/",
        "/a/b/%2E%2E/c/.", "/%41/%42/../%43", "/x/y/z/../../../", "/%25%32%65",
    };
    for (size_t i = 0; i < UNIT_COUNT(in); i++) {
        char once[256];
        CHECK_STR_EQ(norm(in[i]), norm(in[i])); /* deterministic */
        const char *n = norm(in[i]);
        REQUIRE(strlen(n) < sizeof once);
        memcpy(once, n, strlen(n) + 1);
        CHECK(strcmp(once, "(error)") != 0);
        CHECK(strlen(once) <= strlen(in[i]));
        CHECK_STR_EQ(norm(once), once);
    }
    /* "%25" followed by "2e": "%252e" is not a dot after one pass, nor after two. */
    CHECK_STR_EQ(norm("/%252e%252e"), "/%252e%252e");
}

TEST(normalize_long_paths)
{
    /* 1000 segments "/s", then as many "/.." minus one: "/s/" (a final ".." leaves its
     * slash). */
    static char in[6000], expect[4096];
    size_t o = 0;
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(in + o, sizeof in - o, "/s");
    for (int i = 0; i < 999; i++)
        o += (size_t)snprintf(in + o, sizeof in - o, "/..");
    CHECK_STR_EQ(norm(in), "/s/");
    /* One more ".." reaches the root, two more go above it. */
    snprintf(in + o, sizeof in - o, "/..");
    CHECK_STR_EQ(norm(in), "/");
    snprintf(in + o, sizeof in - o, "/../..");
    CHECK_STR_EQ(norm(in), "(error)");

    /* A long single segment, and many slashes. */
    memset(in, 'x', 5000);
    in[0] = '/';
    in[5000] = '\0';
    CHECK_STR_EQ(norm(in), in);
    memset(in, '/', 5000);
    CHECK_STR_EQ(norm(in), "/");
    o = 0;
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(in + o, sizeof in - o, "/%%41");
    o = 0;
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(expect + o, sizeof expect - o, "/A");
    CHECK_STR_EQ(norm(in), expect);
}

/* ---- compiling -------------------------------------------------------------------- */

TEST(compile_forms)
{
    sp_path_pattern p = pattern_of("/users/:id/*");
    CHECK_STR_EQ(p.text, "/users/:id/*");
    CHECK_EQ_INT(p.nsegs, 2);
    CHECK(p.wildcard);
    sp_path_pattern_free(&p);
    CHECK(p.text == NULL && p.segs == NULL && p.nsegs == 0);
    sp_path_pattern_free(&p); /* twice is harmless */

    p = pattern_of("*");
    CHECK(p.wildcard);
    CHECK_EQ_INT(p.nsegs, 0);
    sp_path_pattern_free(&p);
    p = pattern_of("/*");
    CHECK(p.wildcard);
    CHECK_EQ_INT(p.nsegs, 0);
    sp_path_pattern_free(&p);
    p = pattern_of("/");
    CHECK(!p.wildcard);
    CHECK_EQ_INT(p.nsegs, 1);
    sp_path_pattern_free(&p);
    p = pattern_of("/a/b/");
    CHECK(!p.wildcard);
    CHECK_EQ_INT(p.nsegs, 3);
    sp_path_pattern_free(&p);

    static const char *const good[] = {
        "/", "/a", "/a/", "/a/b/c", "/:a", "/:a/:b/:c", "/a/*", "/:id/*", "/a:b",
        "/a/b:c/:d_E9", "/%7e", "/%2F", "/caf\xc3\xa9", "/a b", "/a.b", "/...", "/.a",
        "/a;b=c", "/~u/x-y_z", "/:_", "/:0",
        "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8/:p9/:p10/:p11/:p12/:p13/:p14/:p15/:p16/*",
    };
    for (size_t i = 0; i < UNIT_COUNT(good); i++) {
        const char *e = error_of(good[i]);
        if (e != NULL) {
            unit_fail_(__FILE__, __LINE__, "refused a good pattern");
            fprintf(stderr, "    \"%s\": %s\n", good[i], e);
        }
    }
}

TEST(compile_errors)
{
    static const struct { const char *in, *err; } t[] = {
        { "", "expected a path starting with /" },
        { "users", "expected a path starting with /" },
        { "**", "expected a path starting with /" },
        { "*/a", "expected a path starting with /" },
        { " /a", "expected a path starting with /" },
        { "/:", "empty parameter name" },
        { "/a/:/b", "empty parameter name" },
        { "/:/*", "empty parameter name" },
        { "/*/a", "'*' only as the last segment" },
        { "/a/*/*", "'*' only as the last segment" },
        { "/a/*/", "'*' only as the last segment" },
        { "/static*", "'*' only as a whole segment, as in \"/static/*\": static*" },
        { "/a/b*c", "'*' only as a whole segment, as in \"/static/*\": b*c" },
        { "/**", "'*' only as a whole segment, as in \"/static/*\": **" },
        { "/:id*", "'*' only as a whole segment, as in \"/static/*\": :id*" },
        { "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8/:p9/:p10/:p11/:p12/:p13/:p14/:p15/:p16/:p17",
          "more than 16 parameters" },
        { "/:a-b", "bad parameter name (letters, digits and '_'): :a-b" },
        { "/:a:b", "bad parameter name (letters, digits and '_'): :a:b" },
        { "/:a.json", "bad parameter name (letters, digits and '_'): :a.json" },
        { "/:id/x/:id", "parameter named twice: :id" },
        { "//", "empty segment (\"//\"): it never matches a normalised path" },
        { "/a//b", "empty segment (\"//\"): it never matches a normalised path" },
        { "//*", "empty segment (\"//\"): it never matches a normalised path" },
        { "/.", "'.' or '..' segment (paths are matched without them): ." },
        { "/a/../b", "'.' or '..' segment (paths are matched without them): .." },
        { "/a/%2e%2E", "'.' or '..' segment (paths are matched without them): %2e%2E" },
        { "/./*", "'.' or '..' segment (paths are matched without them): ." },
        { "/a%zz", "bad percent escape (\"%\" and two hex digits, not %00): a%zz" },
        { "/a%", "bad percent escape (\"%\" and two hex digits, not %00): a%" },
        { "/%00", "bad percent escape (\"%\" and two hex digits, not %00): %00" },
        { "/a?b=1", "'?' or '#' in a path pattern (the query is not matched)" },
        { "/a#top", "'?' or '#' in a path pattern (the query is not matched)" },
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++) {
        const char *got = error_of(t[i].in);
        if (got == NULL || strcmp(got, t[i].err) != 0) {
            unit_fail_(__FILE__, __LINE__, "compile error");
            fprintf(stderr, "    \"%s\": got \"%s\", expected \"%s\"\n", t[i].in,
                    got ? got : "(compiled)", t[i].err);
        }
    }
    sp_path_pattern p;
    char err[64];
    CHECK_EQ_INT(sp_path_pattern_compile(NULL, &p, err, sizeof err), -1);
    CHECK_STR_EQ(err, "expected a path starting with /");
    CHECK_EQ_INT(sp_path_pattern_compile("/:", &p, NULL, 0), -1);
    /* A short err buffer gets the start of the message. */
    CHECK_EQ_INT(sp_path_pattern_compile("/:", &p, err, 6), -1);
    CHECK_STR_EQ(err, "empty");
    /* A successful compile leaves err empty. */
    strcpy(err, "junk");
    CHECK_EQ_INT(sp_path_pattern_compile("/a", &p, err, sizeof err), 0);
    CHECK_STR_EQ(err, "");
    sp_path_pattern_free(&p);
}

/* ---- matching --------------------------------------------------------------------- */

typedef struct { const char *pattern, *path; bool match; } match_case;

TEST(match_table)
{
    static const match_case t[] = {
        /* exact */
        { "/", "/", true },
        { "/", "/a", false },
        { "/users", "/users", true },
        { "/users", "/users/", false },
        { "/users", "/user", false },
        { "/users", "/usersx", false },
        { "/users", "/Users", false },      /* case-sensitive */
        { "/users", "/users/1", false },
        { "/users/", "/users/", true },
        { "/users/", "/users", false },
        { "/a/b/c", "/a/b/c", true },
        { "/a/b/c", "/a/b", false },
        { "/a/b/c", "/a/b/c/d", false },
        { "/a/b", "/a/c", false },
        /* params */
        { "/users/:id", "/users/42", true },
        { "/users/:id", "/users/", false },  /* a parameter is never empty */
        { "/users/:id", "/users", false },
        { "/users/:id", "/users/42/", false },
        { "/users/:id", "/users/42/x", false },
        { "/:a/:b", "/x/y", true },
        { "/:a/:b", "/x", false },
        { "/:a/:b", "/x/", false },
        { "/:a", "/", false },
        { "/a/:b/c", "/a/x/c", true },
        { "/a/:b/c", "/a/x/d", false },
        { "/a/:b/c", "/a//c", false },      /* not normalised: an empty segment */
        /* wildcards */
        { "/api/*", "/api", true },
        { "/api/*", "/api/", true },
        { "/api/*", "/api/v1", true },
        { "/api/*", "/api/v1/x/y/", true },
        { "/api/*", "/apix", false },
        { "/api/*", "/apix/y", false },
        { "/api/*", "/ap", false },
        { "/api/*", "/", false },
        { "/api/*", "/API/v1", false },
        { "/api/v1/*", "/api/v1", true },
        { "/api/v1/*", "/api/v2", false },
        { "/api/v1/*", "/api", false },
        { "/*", "/", true },
        { "/*", "/anything/at/all/", true },
        { "*", "/", true },
        { "*", "/x/y", true },
        { "/users/:id/*", "/users/7", true },
        { "/users/:id/*", "/users/7/", true },
        { "/users/:id/*", "/users/7/posts/1", true },
        { "/users/:id/*", "/users/", false },
        { "/users/:id/*", "/users", false },
        { "/a/", "/a/", true },
        /* literals normalised at compile time */
        { "/%7euser", "/~user", true },
        { "/caf%c3%a9", "/caf%C3%A9", true },
        { "/caf\xc3\xa9", "/caf%C3%A9", true },
        { "/a b", "/a%20b", true },
        { "/a b", "/a b", true },             /* a raw byte equals its escape */
        { "/a%20b", "/a b", true },
        { "/caf\xc3\xa9", "/caf\xc3\xa9", true },
        { "/caf%C3%A9", "/caf\xc3\xa9", true },
        { "/caf%C3%A9", "/caf\xc3", false },
        { "/caf%C3%A9", "/caf\xc3\xa9x", false },
        { "/a[1]", "/a%5B1%5D", true },
        { "/a[1]", "/a[1]", true },
        { "/a%5B", "/a%5b", false },         /* not normalised: escapes are compared as upper case */
        { "/a%3A", "/a:", false },           /* reserved: encoded and raw differ */
        { "/a:", "/a:", true },
        { "/a%2fb", "/a%2Fb", true },
        { "/a%2fb", "/a/b", false },
        { "/%41", "/A", true },
        { "/a:b", "/a:b", true },
        /* paths that are not paths */
        { "*", "", false },
        { "*", "x", false },
        { "/*", "a/b", false },
        { "/a", "a", false },
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++) {
        if (matches(t[i].pattern, t[i].path) != t[i].match) {
            unit_fail_(__FILE__, __LINE__, "match");
            fprintf(stderr, "    \"%s\" on \"%s\": expected %s\n", t[i].pattern, t[i].path,
                    t[i].match ? "a match" : "no match");
        }
    }
}

TEST(match_params)
{
    CHECK_STR_EQ(params_of("/users/:id", "/users/42"), "id=42");
    CHECK_STR_EQ(params_of("/users/:id/posts/:post", "/users/a/posts/b%20c"), "id=a,post=b%20c");
    CHECK_STR_EQ(params_of("/:a/:b/*", "/x/y/z/w"), "a=x,b=y");
    CHECK_STR_EQ(params_of("/:a/:b/*", "/x/y"), "a=x,b=y");
    CHECK_STR_EQ(params_of("/api/*", "/api/x"), "");
    CHECK_STR_EQ(params_of("/users/:id", "/users/"), "(no match)");
    CHECK_STR_EQ(params_of("/:Id_2", "/v"), "Id_2=v");
    CHECK_STR_EQ(params_of("/f/:name", "/f/a.b.c"), "name=a.b.c");

    /* Sixteen parameters, all captured, in order. */
    const char *pat =
        "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8/:p9/:p10/:p11/:p12/:p13/:p14/:p15/:p16";
    CHECK_STR_EQ(params_of(pat, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"),
                 "p1=a,p2=b,p3=c,p4=d,p5=e,p6=f,p7=g,p8=h,p9=i,p10=j,p11=k,p12=l,p13=m,"
                 "p14=n,p15=o,p16=p");

    /* params and nparams may be NULL. */
    sp_path_pattern p = pattern_of("/:a/:b");
    CHECK(sp_path_pattern_match(&p, "/x/y", 4, NULL, NULL));
    sp_path_param one[SP_PATH_MAX_PARAMS];
    CHECK(sp_path_pattern_match(&p, "/x/y", 4, one, NULL));
    CHECK(one[1].value_len == 1 && one[1].value[0] == 'y');
    size_t n = 7;
    CHECK(!sp_path_pattern_match(&p, "/x", 2, one, &n));
    CHECK_EQ_INT(n, 0);
    /* len is honoured: "/x/y" of "/x/yz". */
    CHECK(sp_path_pattern_match(&p, "/x/yz", 4, one, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(one[1].value_len, 1);
    CHECK(!sp_path_pattern_match(&p, NULL, 0, one, &n));
    sp_path_pattern_free(&p);

    /* A freed (zeroed) pattern matches nothing. */
    CHECK(!sp_path_pattern_match(&p, "/x/y", 4, NULL, NULL));
}

TEST(match_after_normalisation)
{
    /* What routing does: normalise, then match. */
    static const match_case t[] = {
        { "/admin", "/static/../admin", true },
        { "/static/*", "/static/../admin", false },
        { "/static/*", "/static/%2e%2e/admin", false },
        { "/admin/*", "/static/%2E%2E/admin/x", true },
        { "/admin", "//admin", true },
        { "/admin", "/./admin/.", false }, /* "/admin/" */
        { "/admin/*", "/./admin/.", true },
        { "/~user", "/%7Euser", true },
        { "/users/:id", "/users//42", true },
        { "/users/:id", "/users/42/..", false }, /* "/users/" */
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++) {
        const char *path = norm(t[i].path);
        if (matches(t[i].pattern, path) != t[i].match) {
            unit_fail_(__FILE__, __LINE__, "match after normalisation");
            fprintf(stderr, "    \"%s\" on \"%s\" (\"%s\"): expected %s\n", t[i].pattern,
                    t[i].path, path, t[i].match ? "a match" : "no match");
        }
    }
}

TEST(match_long_paths)
{
    static char path[20000], pat[20000];
    size_t o = 0, q = 0;
    for (int i = 0; i < 2000; i++) {
        o += (size_t)snprintf(path + o, sizeof path - o, "/seg%d", i);
        if (i < 1000)
            q += (size_t)snprintf(pat + q, sizeof pat - q, "/seg%d", i);
    }
    snprintf(pat + q, sizeof pat - q, "/*");
    CHECK(matches(pat, path));
    pat[q] = '\0';
    CHECK(!matches(pat, path));
    CHECK(matches(path, path));
    CHECK_EQ_INT(spec(path), 16384 + 255); /* capped */
    snprintf(pat + q, sizeof pat - q, "/:x/*");
    CHECK(matches(pat, path));
    CHECK(spec(pat) < 16384);
}

TEST(specificity_order)
{
    CHECK_EQ_INT(spec("*"), 0);
    CHECK_EQ_INT(spec("/*"), 0);
    CHECK_EQ_INT(spec("/"), 16385);
    CHECK_EQ_INT(spec("/users/7"), 16386);
    CHECK_EQ_INT(spec("/users/:id"), 67);
    CHECK_EQ_INT(spec("/users/:id/*"), 66);
    CHECK_EQ_INT(spec("/users/*"), 64);
    CHECK_EQ_INT(spec("/:a/:b"), 5);
    CHECK_EQ_INT(spec("/:a"), 3);
    CHECK_EQ_INT(spec("/:a/*"), 2);

    // Candidates for one path, most specific first. At equal literal counts parameters
    // beat a wildcard: "/users/:id/posts" (131) > "/users/7/*" (128).
    static const char *const order[] = {
        "/users/7/posts", "/users/:id/posts", "/users/7/*", "/users/:id/:sub",
        "/users/:id/*", "/users/*", "/:a/:b/:c", "/:a/*", "/*",
    };
    for (size_t i = 0; i < UNIT_COUNT(order); i++) {
        if (!matches(order[i], "/users/7/posts")) {
            unit_fail_(__FILE__, __LINE__, "candidate does not match");
            fprintf(stderr, "    \"%s\"\n", order[i]);
        }
        if (i > 0 && !(spec(order[i - 1]) > spec(order[i]))) {
            unit_fail_(__FILE__, __LINE__, "specificity order");
            fprintf(stderr, "    \"%s\" (%d) should beat \"%s\" (%d)\n", order[i - 1],
                    spec(order[i - 1]), order[i], spec(order[i]));
        }
    }
    /* Exact beats even a longer wildcard prefix that cannot match the same path. */
    CHECK(spec("/a") > spec("/a/b/c/d/e/*"));
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(normalize_plain_paths_unchanged),
        UNIT(normalize_percent_escapes),
        UNIT(normalize_slashes),
        UNIT(normalize_dot_segments),
        UNIT(normalize_encoded_dots),
        UNIT(normalize_rejects),
        UNIT(normalize_is_idempotent_and_never_longer),
        UNIT(normalize_long_paths),
        UNIT(compile_forms),
        UNIT(compile_errors),
        UNIT(match_table),
        UNIT(match_params),
        UNIT(match_after_normalisation),
        UNIT(match_long_paths),
        UNIT(specificity_order),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
