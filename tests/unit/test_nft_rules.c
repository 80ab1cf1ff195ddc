/* Kernel forwarding: the options of action.nftables (core/config/nft_options.c) and the pure rule
 * builder (core/nft/rules.c), from Lua config text to rules in nft's syntax. No netlink. */
#include "config/nft_options.h"
#include "nft/rules.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "unit_config.h"


/* Builds g with every route's target parsed from its host (literal addresses only). */
static int build(const sp_gen *g, sp_nft_ruleset *s)
{
    sp_ip *t = calloc(g->nroutes, sizeof *t);
    for (size_t i = 0; i < g->nroutes; i++)
        if (g->routes[i].ntargets && g->routes[i].targets[0].host)
            sp_ip_parse(g->routes[i].targets[0].host, &t[i]);
    int rc = sp_nft_build(g, t, s, unit_err, sizeof unit_err);
    free(t);
    return rc;
}

/* The ruleset as text, one "chain: rule" line each. */
static const char *text(const sp_nft_ruleset *s)
{
    static char out[65536];
    size_t pos = 0;
    out[0] = 0;
    for (size_t i = 0; i < s->nrules && pos < sizeof out - 700; i++) {
        const sp_nft_rule *r = &s->rules[i];
        pos += (size_t)snprintf(out + pos, sizeof out - pos, "%s %s: ",
                                sp_nft_family_name(s->routes[r->route].family), sp_nft_chain_name(r->chain));
        pos += sp_nft_rule_format(s, r, out + pos, sizeof out - pos);
        out[pos++] = '\n';
        out[pos] = 0;
    }
    return out;
}

static size_t count_chain(const sp_nft_ruleset *s, sp_nft_chain c)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nrules; i++)
        n += s->rules[i].chain == c;
    return n;
}

#define NFT(extra) "forwarding_engine = 'nftables'" extra

TEST(rates)
{
    uint64_t v = 0;
    REQUIRE(sp_nft_parse_rate("10mbps", &v) == 0);
    CHECK_EQ_INT(v, 1250000);
    CHECK(sp_nft_parse_rate("1gbps", &v) == 0 && v == 125000000);
    CHECK(sp_nft_parse_rate("8kbps", &v) == 0 && v == 1000);
    CHECK(sp_nft_parse_rate("500kbytes", &v) == 0 && v == 512000);
    CHECK(sp_nft_parse_rate("2mbytes/s", &v) == 0 && v == 2 * 1024 * 1024);
    CHECK(sp_nft_parse_rate("100bytes/second", &v) == 0 && v == 100);
    CHECK(sp_nft_parse_rate("10MBPS", &v) == 0 && v == 1250000);
    CHECK(sp_nft_parse_rate("", &v) != 0);
    CHECK(sp_nft_parse_rate("mbps", &v) != 0);
    CHECK(sp_nft_parse_rate("10", &v) != 0);
    CHECK(sp_nft_parse_rate("10 mbps", &v) != 0);
    CHECK(sp_nft_parse_rate("10furlongs", &v) != 0);
    CHECK(sp_nft_parse_rate("0mbps", &v) != 0);
    CHECK(sp_nft_parse_rate("1bps", &v) != 0);          /* below a byte a second */
    CHECK(sp_nft_parse_rate("99999999999999999999gbps", &v) != 0);
    CHECK(sp_nft_parse_rate("10mbps/h", &v) != 0);
}

TEST(options_are_compiled)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { name = 'k', match = { ports = 5432 }, action = { type = 'forward',"
                        "   target = { host = '10.0.0.5', port = 5432 }, " NFT(", nftables = {"
                        "   preserve_source_ip = true, protocol = 'all', max_rate = '10mbps' }") " } },"
                        " { name = 'u', match = { ports = 80 }, action = { type = 'forward',"
                        "   target = { host = '127.0.0.1', port = 8080 }, forwarding_engine = 'node' } } } }");
    REQUIRE(g);
    CHECK(g->routes[0].nft.enabled);
    CHECK(g->routes[0].nft.preserve_source_ip);
    CHECK_EQ_INT(g->routes[0].nft.protocols, SP_NFT_TCP | SP_NFT_UDP);
    CHECK_EQ_INT(g->routes[0].nft.max_rate, 1250000);
    CHECK(!g->routes[1].nft.enabled);
    /* the kernel route has no listener: only port 80 is in the port index */
    CHECK_EQ_INT(g->nports, 1);
    CHECK(sp_gen_port(g, 5432) == NULL);
    CHECK(sp_gen_port(g, 80) != NULL);
    sp_gen_unref(g);
}

#define ROUTE(match, action) \
    "return { routes = { { name = 'k', match = { ports = 7000" match " }, action = { type = 'forward', " action " } } } }"
#define TARGET "target = { host = '10.0.0.5', port = 9000 }, "

TEST(config_errors_name_the_route_and_field)
{
    sp_gen *g;
    CHECK(unit_fails_with(ROUTE(", domains = 'a.example'", TARGET NFT("")),
                     "proxy.lua: route \"k\" (#1): match.domains: kernel forwarding"));
    CHECK(unit_fails_with(ROUTE(", tls_version = 'TLSv1.3'", TARGET NFT("")), "route \"k\" (#1): match.tls_version:"));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", tls = { mode = 'passthrough' }")), "route \"k\" (#1): action.tls:"));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", send_proxy_protocol = 'v2'")), "action.send_proxy_protocol: kernel"));
    CHECK(unit_fails_with("return { routes = { { name = 'h', match = { ports = 1 }, action = { type = 'socket-handler',"
                     " handler = function() end, forwarding_engine = 'nftables' } } } }",
                     "route \"h\" (#1): action.forwarding_engine: \"nftables\" forwards in the kernel: a socket-handler"));
    CHECK(unit_fails_with(ROUTE("", "targets = { { host = '10.0.0.5', port = 1 }, { host = '10.0.0.6', port = 1 } }, "
                               NFT("")), "action.targets: kernel forwarding (forwarding_engine = \"nftables\") takes one target"));
    CHECK(unit_fails_with(ROUTE("", "target = { host = { '10.0.0.5', '10.0.0.6' }, port = 1 }, " NFT("")),
                     "takes one target"));
    CHECK(unit_fails_with(ROUTE("", "target = { host = function() return 'x' end, port = 1 }, " NFT("")),
                     "action.target.host: kernel forwarding"));
    CHECK(unit_fails_with(ROUTE("", "target = { host = '10.0.0.5', port = function() return 1 end }, " NFT("")),
                     "action.target.port: kernel forwarding"));
    /* a text glob has no prefix form: it must not become "anyone" in the kernel */
    CHECK(unit_fails_with(ROUTE(", client_ip = { '10.0.0.0/8', '192.168.*' }", TARGET NFT("")),
                     "route \"k\" (#1): match.client_ip: kernel rules match prefixes: the glob \"192.168.*\""));
    CHECK(unit_fails_with("return { routes = { { name = 'k', match = { ports = 7000 }, action = { type = 'forward', "
                     TARGET NFT("") " }, security = { ip_allow_list = { '10.?.?.1' } } } } }",
                     "security.ip_allow_list: kernel rules match prefixes: the glob \"10.?.?.1\""));
    g = unit_compile(ROUTE(", client_ip = { '192.168.*.*' }", TARGET NFT(""))); /* whole '*' octets are a mask */
    CHECK(g != NULL);
    if (g)
        sp_gen_unref(g);
    CHECK(unit_fails_with(ROUTE("", TARGET "forwarding_engine = 'kernel'"),
                     "action.forwarding_engine: expected \"node\" or \"nftables\", got string \"kernel\""));
    CHECK(unit_fails_with(ROUTE("", TARGET "nftables = { protocol = 'udp' }"),
                     "action.nftables: applies only with forwarding_engine = \"nftables\""));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", nftables = { protocol = 'icmp' }")),
                     "action.nftables.protocol: expected \"tcp\", \"udp\" or \"all\", got string \"icmp\""));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", nftables = { max_rate = 10 }")),
                     "action.nftables.max_rate: expected a rate such as \"10mbps\""));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", nftables = { preserve_source_ip = 'yes' }")),
                     "action.nftables.preserve_source_ip: expected a boolean, got string \"yes\""));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", nftables = { rate = '1mbps' }")), "action.nftables.rate: unknown field"));
    CHECK(unit_fails_with(ROUTE("", TARGET NFT(", nftables = 'fast'")), "action.nftables: expected {"));
    CHECK(unit_fails_with("return { routes = { { name = 'k', match = { ports = 7000 }, action = { type = 'forward', "
                     TARGET NFT("") " }, security = { max_connections = 5 } } } }",
                     "security.max_connections: kernel forwarding"));
    /* a TCP port served in user space too */
    CHECK(unit_fails_with("return { routes = {"
                     " { name = 'u', match = { ports = { from = 6990, to = 7010 } }, action = { type = 'forward',"
                     "   target = { host = '127.0.0.1', port = 1 } } },"
                     " { name = 'k', match = { ports = 7000 }, action = { type = 'forward', " TARGET NFT("") " } } } }",
                     "proxy.lua: route \"k\" (#2): match.ports: port 7000 is also served in user space by route \"u\" (#1)"));
    /* ... but UDP alone does not collide */
    g = unit_compile("return { routes = {"
                        " { name = 'u', match = { ports = 7000 }, action = { type = 'forward',"
                        "   target = { host = '127.0.0.1', port = 1 } } },"
                        " { name = 'k', match = { ports = 7000 }, action = { type = 'forward', " TARGET
                        NFT(", nftables = { protocol = 'udp' }") " } } } }");
    CHECK(g != NULL);
    if (g)
        sp_gen_unref(g);
    /* domains "*" is fine */
    g = unit_compile(ROUTE(", domains = '*'", TARGET NFT("")));
    CHECK(g != NULL);
    if (g)
        sp_gen_unref(g);
}

TEST(one_route_masquerade)
{
    sp_gen *g = unit_compile(ROUTE("", TARGET NFT("")));
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    CHECK_EQ_INT(s.nroutes, 1);
    CHECK(s.has_family[SP_NFT_V4] && !s.has_family[SP_NFT_V6]);
    CHECK_STR_EQ(s.routes[0].counter, "c1");
    CHECK_STR_EQ(text(&s),
                 "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 dnat ip to 10.0.0.5:9000\n"
                 "ip output: fib daddr type local meta l4proto tcp th dport 7000 dnat ip to 10.0.0.5:9000\n"
                 "ip count_in: meta iiftype != loopback ct status dnat ct original protocol tcp ct original proto-dst 7000 "
                 "ct reply ip saddr 10.0.0.5 ct reply proto-src 9000 counter name \"c1\" accept\n"
                 "ip count_out: ct status dnat ct original protocol tcp ct original proto-dst 7000 "
                 "ct reply ip saddr 10.0.0.5 ct reply proto-src 9000 counter name \"c1\" accept\n"
                 "ip postrouting: ct status dnat meta l4proto tcp ip daddr 10.0.0.5 th dport 9000 masquerade\n");
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(preserve_port_range_udp_rate_and_source)
{
    sp_gen *g = unit_compile("return { routes = { { name = 'k', match = { ports = { 53, { from = 6000, to = 6010 } } },"
                        " action = { type = 'forward', target = { host = '10.0.0.5', port = 'preserve' }, "
                        NFT(", nftables = { protocol = 'all', preserve_source_ip = true, max_rate = '1mbytes' }")
                        " } } } }");
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    CHECK_EQ_INT(s.routes[0].target_port, 0);
    CHECK_EQ_INT(s.routes[0].max_rate, 1024 * 1024);
    /* 2 protocols x 2 ranges: dnat in 2 chains, limit + counter in 2 chains, no masquerade */
    CHECK_EQ_INT(count_chain(&s, SP_NFT_PREROUTING), 4);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_OUTPUT), 4);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_COUNT_IN), 8);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_POSTROUTING), 0);
    const char *t = text(&s);
    CHECK(strstr(t, "ip prerouting: fib daddr type local meta l4proto udp th dport 6000-6010 dnat ip to 10.0.0.5\n"));
    CHECK(strstr(t, "ip count_in: meta iiftype != loopback ct status dnat ct original protocol udp ct original "
                    "proto-dst 53 ct reply ip saddr 10.0.0.5 limit name \"l1\" drop\n"));
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(masquerade_of_a_range_to_preserved_ports)
{
    sp_gen *g = unit_compile("return { routes = { { name = 'k', match = { ports = { from = 6000, to = 6010 } },"
                        " action = { type = 'forward', target = { host = '10.0.0.5', port = 'preserve' }, " NFT("")
                        " } } } }");
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    CHECK(strstr(text(&s), "ip postrouting: ct status dnat meta l4proto tcp ip daddr 10.0.0.5 th dport 6000-6010 masquerade\n"));
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(client_ip_allow_and_block_lists)
{
    sp_gen *g = unit_compile("return { routes = { { name = 'k', match = { ports = 7000,"
                        "   client_ip = { '10.0.0.0/8', '192.168.*.5', '2001:db8::/32' } },"
                        " action = { type = 'forward', " TARGET NFT("") " },"
                        " security = { ip_allow_list = '10.1.0.0/16', ip_block_list = '10.1.2.3' } } } }");
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    /* per chain: 2 clients x 1 block drop, 2 x 1 dnat, 2 trailing drops; the v6 pattern
     * cannot match an IPv4 client and is left out */
    CHECK_EQ_INT(count_chain(&s, SP_NFT_PREROUTING), 6);
    const char *t = text(&s);
    CHECK(strstr(t, "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 ip saddr 10.0.0.0/8 "
                    "ip saddr 10.1.2.3 drop\n"
                    "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 ip saddr & 255.255.0.255 == "
                    "192.168.0.5 ip saddr 10.1.2.3 drop\n"
                    "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 ip saddr 10.0.0.0/8 "
                    "ip saddr 10.1.0.0/16 dnat ip to 10.0.0.5:9000\n"
                    "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 ip saddr & 255.255.0.255 == "
                    "192.168.0.5 ip saddr 10.1.0.0/16 dnat ip to 10.0.0.5:9000\n"
                    "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 ip saddr 10.0.0.0/8 drop\n"));
    CHECK(!strstr(t, "2001:db8"));
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);

    /* only IPv6 patterns on an IPv4 target: nothing to forward, the counters stay */
    g = unit_compile(ROUTE(", client_ip = '2001:db8::/32'", TARGET NFT("")));
    REQUIRE(g);
    REQUIRE(build(g, &s) == 0);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_PREROUTING), 0);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_COUNT_IN), 1);
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);

    /* "*" in an allow list admits everyone: no trailing drop */
    g = unit_compile("return { routes = { { name = 'k', match = { ports = 7000 }, action = { type = 'forward', "
                TARGET NFT("") " }, security = { ip_allow_list = { '10.0.0.1', '*' } } } } }");
    REQUIRE(g);
    REQUIRE(build(g, &s) == 0);
    CHECK_EQ_INT(count_chain(&s, SP_NFT_PREROUTING), 1);
    CHECK(strstr(text(&s), "ip prerouting: fib daddr type local meta l4proto tcp th dport 7000 dnat ip to 10.0.0.5:9000\n"));
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(ipv6_target_and_priority_order)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { name = 'low', match = { ports = 80 }, action = { type = 'forward',"
                        "   target = { host = '10.0.0.1', port = 80 }, " NFT("") " } },"
                        " { name = 'high', priority = 5, match = { ports = 80, client_ip = { '10.9.0.0/16', 'fd00::/8' } },"
                        "   action = { type = 'forward', target = { host = 'fd00::5', port = 8080 }, " NFT("") " } },"
                        " { name = 'user', match = { ports = 81 }, action = { type = 'forward',"
                        "   target = { host = '127.0.0.1', port = 1 } } } } }");
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    REQUIRE(s.nroutes == 2);
    CHECK_STR_EQ(s.routes[0].name, "high");
    CHECK_STR_EQ(s.routes[0].counter, "c2");
    CHECK_EQ_INT(s.routes[0].family, SP_NFT_V6);
    CHECK_STR_EQ(s.routes[1].name, "low");
    CHECK(s.has_family[SP_NFT_V4] && s.has_family[SP_NFT_V6]);
    CHECK_EQ_INT(s.rules[0].route, 0);
    const char *t = text(&s);
    CHECK(strstr(t, "ip6 prerouting: fib daddr type local meta l4proto tcp th dport 80 ip6 saddr fd00::/8 "
                    "dnat ip6 to [fd00::5]:8080\n"));
    CHECK(strstr(t, "ip6 count_in: meta iiftype != loopback ct status dnat ct original protocol tcp ct original "
                    "proto-dst 80 ct reply ip6 saddr fd00::5 ct reply proto-src 8080 counter name \"c2\" accept\n"));
    CHECK(!strstr(t, "ip6 saddr 10.9"));
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(no_kernel_routes_no_rules)
{
    sp_gen *g = unit_compile("return { routes = { { match = { ports = 80 }, action = { type = 'forward',"
                        " target = { host = '127.0.0.1', port = 1 } } } } }");
    REQUIRE(g);
    sp_nft_ruleset s;
    REQUIRE(build(g, &s) == 0);
    CHECK_EQ_INT(s.nroutes, 0);
    CHECK_EQ_INT(s.nrules, 0);
    CHECK(!s.has_family[0] && !s.has_family[1]);
    sp_nft_ruleset_free(&s);
    sp_gen_unref(g);
}

TEST(too_many_rules)
{
    /* 200 client patterns x 200 allow patterns x 2 chains > SP_NFT_MAX_RULES */
    char src[40000];
    size_t pos = (size_t)snprintf(src, sizeof src, "local c, a = {}, {} for i = 1, 200 do c[i] = '10.1.' .. i .. '.0/24'"
                                  " a[i] = '10.1.' .. i .. '.7' end return { routes = { { name = 'k', match = {"
                                  " ports = 7000, client_ip = c }, action = { type = 'forward', " TARGET NFT("")
                                  " }, security = { ip_allow_list = a } } } }");
    REQUIRE(pos < sizeof src);
    sp_gen *g = unit_compile(src);
    REQUIRE(g);
    sp_nft_ruleset s;
    CHECK(build(g, &s) != 0);
    CHECK(strstr(unit_err, "more than 20000 kernel rules") != NULL);
    CHECK(s.nrules == 0 && s.rules == NULL);
    sp_gen_unref(g);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(rates), UNIT(options_are_compiled), UNIT(config_errors_name_the_route_and_field),
        UNIT(one_route_masquerade), UNIT(preserve_port_range_udp_rate_and_source),
        UNIT(masquerade_of_a_range_to_preserved_ports), UNIT(client_ip_allow_and_block_lists),
        UNIT(ipv6_target_and_priority_order), UNIT(no_kernel_routes_no_rules), UNIT(too_many_rules),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
