/* Likely mistakes --check warns about (core/config/lint.c): routes that never win, and
 * stream routes chosen before HTTP routes on a plain-text port. Each case also checks the
 * router agrees: the shadowed route is never selected for the names it lists. */
#include "config/lint.h"

#include <stdio.h>
#include <string.h>

#include "route/router.h"
#include "unit.h"
#include "unit_config.h"

typedef struct seen {
    char text[8][512];
    size_t n;
} seen;

static void collect(const sp_lint_warning *w, void *ud)
{
    seen *s = ud;
    if (s->n < 8)
        snprintf(s->text[s->n++], sizeof s->text[0], "%s: %s", w->route->name, w->message);
}

static void show(const seen *s)
{
    for (size_t i = 0; i < s->n && i < 8; i++)
        fprintf(stderr, "    warning: %s\n", s->text[i]);
}

/* The warnings of a config whose routes forward to 127.0.0.1:9; `routes` is the inside
 * of the routes table, each route written R{...} (a stream) or H{...} (HTTP). */
static seen lint(const char *routes)
{
    char src[4096];
    snprintf(src, sizeof src, "local function R(t) t.action = t.action or { type = 'forward', "
             "target = { host = '127.0.0.1', port = 9 } }; return t end\n"
             "local function H(t) t.action = { type = 'forward', protocol = 'http', "
             "target = { host = '127.0.0.1', port = 9 } }; return t end\n"
             "return { routes = { %s } }", routes);
    seen s = {0};
    sp_gen *g = unit_compile(src);
    if (!g) {
        fprintf(stderr, "    %s\n", unit_err);
        s.n = 99;
        return s;
    }
    CHECK_EQ_INT(sp_config_lint(g, collect, &s), s.n);
    sp_gen_unref(g);
    show(&s);
    return s;
}

static bool has(const seen *s, const char *route, const char *words)
{
    size_t rl = strlen(route);
    for (size_t i = 0; i < s->n; i++)
        if (strncmp(s->text[i], route, rl) == 0 && s->text[i][rl] == ':' && strstr(s->text[i], words))
            return true;
    return false;
}

TEST(catch_all_first_shadows_a_later_catch_all)
{
    seen s = lint("R{ name = 'a', match = { ports = 1000 } }, R{ name = 'b', match = { ports = 1000 } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "b", "route \"b\" (#2) never wins: route \"a\" (#1, priority 0)"));
}

TEST(a_more_specific_domain_still_wins)
{
    /* same priority: an exact name beats a wildcard, which beats "*" and no domains */
    seen s = lint("R{ name = 'any', match = { ports = 1000 } },"
                  "R{ name = 'wild', match = { ports = 1000, domains = '*.example.com' } },"
                  "R{ name = 'exact', match = { ports = 1000, domains = 'a.example.com' } }");
    CHECK_EQ_INT(s.n, 0);
    /* "*" also takes connections without a name, and scores above no domains at all */
    s = lint("R{ name = 'any', match = { ports = 1000 } }, R{ name = 'star', match = { ports = 1000, domains = '*' } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "any", "route \"any\" (#1) never wins: route \"star\" (#2"));
}

TEST(higher_priority_wildcard_shadows_names_below_it)
{
    seen s = lint("R{ name = 'wild', priority = 2, match = { ports = 1000, domains = '*.example.com' } },"
                  "R{ name = 'x', priority = 1, match = { ports = 1000, domains = { 'x.example.com', 'y.b.example.com' } } },"
                  "R{ name = 'deep', priority = 1, match = { ports = 1000, domains = '*.b.example.com' } },"
                  "R{ name = 'other', priority = 1, match = { ports = 1000, domains = { 'x.example.com', 'example.org' } } },"
                  "R{ name = 'apex', priority = 1, match = { ports = 1000, domains = 'example.com' } }");
    CHECK_EQ_INT(s.n, 2);
    CHECK(has(&s, "x", "never wins"));
    CHECK(has(&s, "deep", "never wins"));
    s = lint("R{ name = 'glob', priority = 2, match = { ports = 1000, domains = 'api-*.example.com' } },"
             "R{ name = 'eu', priority = 1, match = { ports = 1000, domains = 'api-eu.example.com' } },"
             "R{ name = 'www', priority = 1, match = { ports = 1000, domains = 'www.example.com' } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "eu", "never wins"));
}

TEST(conditions_of_the_first_route_let_others_through)
{
    seen s = lint("R{ name = 'ip', priority = 9, match = { ports = 1000, client_ip = '10.0.0.0/8' } },"
                  "R{ name = 'ver', priority = 9, match = { ports = 1000, tls_version = 'TLSv1.3' } },"
                  "H{ name = 'path', priority = 9, match = { ports = 1001, path = '/api/*' } },"
                  "H{ name = 'hdr', priority = 9, match = { ports = 1001, headers = { ['x-a'] = 'b' } } },"
                  "R{ name = 'rest', match = { ports = 1000 } },"
                  "H{ name = 'web', match = { ports = 1001 } }");
    CHECK_EQ_INT(s.n, 0);
    CHECK(!has(&s, "rest", "never wins"));
    CHECK(!has(&s, "web", "never wins"));
}

TEST(ports_must_all_be_covered)
{
    seen s = lint("R{ name = 'a', priority = 1, match = { ports = { { from = 1000, to = 1010 }, 1020 } } },"
                  "R{ name = 'in', match = { ports = { 1005, { from = 1009, to = 1010 }, 1020 } } },"
                  "R{ name = 'out', match = { ports = { 1005, 1011 } } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "in", "never wins"));
}

TEST(a_path_of_its_own_wins_a_tie)
{
    seen s = lint("H{ name = 'all', match = { ports = 1000 } },"
                  "H{ name = 'api', match = { ports = 1000, path = '/api/*' } },"
                  "H{ name = 'late', match = { ports = 1000 } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "late", "never wins"));
}

TEST(stream_route_before_http_route_on_a_plain_port)
{
    seen s = lint("H{ name = 'web', priority = 1, match = { ports = 1000 } },"
                  "R{ name = 'raw', priority = 5, match = { ports = 1000 } },"
                  "H{ name = 'web2', priority = 5, match = { ports = 1001 } },"
                  "R{ name = 'raw2', priority = 1, match = { ports = 1001 } }");
    CHECK_EQ_INT(s.n, 1);
    CHECK(has(&s, "raw", "port 1000: stream route \"raw\" (#2, priority 5) is chosen before HTTP route \"web\""));
}

TEST(router_agrees_with_the_shadow_rule)
{
    sp_gen *g = unit_compile("return { routes = {"
        " { name = 'wild', priority = 2, match = { ports = 1000, domains = '*.example.com' },"
        "   action = { type = 'forward', target = { host = '127.0.0.1', port = 9 } } },"
        " { name = 'x', priority = 1, match = { ports = 1000, domains = 'x.example.com' },"
        "   action = { type = 'forward', target = { host = '127.0.0.1', port = 9 } } } } }");
    REQUIRE(g);
    sp_conn_info info = {.server_port = 1000, .domain = "x.example.com", .domain_len = 13, .tls_offered = 0x0304};
    const sp_route *r = sp_route_select(g, 1000, &info);
    REQUIRE(r);
    CHECK_STR_EQ(r->name, "wild");
    sp_gen_unref(g);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(catch_all_first_shadows_a_later_catch_all),
        UNIT(a_more_specific_domain_still_wins),
        UNIT(higher_priority_wildcard_shadows_names_below_it),
        UNIT(conditions_of_the_first_route_let_others_through),
        UNIT(ports_must_all_be_covered),
        UNIT(a_path_of_its_own_wins_a_tie),
        UNIT(stream_route_before_http_route_on_a_plain_port),
        UNIT(router_agrees_with_the_shadow_rule),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
