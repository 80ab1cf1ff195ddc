/* How compiled routes are shown: the shared description (core/config/describe.c) and the
 * --check summary built on it (core/config/print.c), line by line. */
#include "config/describe.h"
#include "config/print.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "unit_config.h"

static const char every_kind[] =
    "return { listen_addresses = { '127.0.0.1' }, proxy_ips = { '10.0.0.0/8' }, routes = {"
    " { name = 'fwd', priority = 5, match = { ports = { 8080, { from = 8090, to = 8092 } },"
    "   client_ip = { '10.0.0.0/8', '192.168.*.*' }, domains = { 'a.example.com', '*.b.example.com' },"
    "   tls_version = { 'TLSv1.2', 'TLSv1.3' } },"
    "   action = { type = 'forward', targets = { { host = '::1', port = 9000 },"
    "     { host = function() return 'x' end, port = 'preserve' }, { host = 'h', port = function() return 1 end } },"
    "     send_proxy_protocol = 'v2', half_open = true } },"
    " { name = 'blk', match = { ports = 8081 }, action = { type = 'block' } },"
    " { name = 'hblk', match = { ports = 8082, path = '/x/*' }, action = { type = 'block' } },"
    " { name = 'redir', match = { ports = 8083, headers = { ['x-a'] = 'b' } },"
    "   action = { type = 'redirect', redirect = { to = 'https://{domain}{url}', status = 308 } } },"
    " { name = 'sock', match = { ports = 8084, domains = '*' }, action = { type = 'socket-handler', handler = function() end } },"
    " { name = 'sockpt', match = { ports = 8085, domains = 's.example' },"
    "   action = { type = 'socket-handler', tls = { mode = 'passthrough' }, handler = function() end } },"
    " { name = 'http', match = { ports = 8086 }, action = { type = 'forward', protocol = 'http', target = { host = { 'a', 'b' }, port = 80 } } },"
    " { name = 'pt', match = { ports = 8087, domains = 'p.example' },"
    "   action = { type = 'forward', target = { host = '127.0.0.1', port = 1 }, tls = { mode = 'passthrough' } } },"
    "} }";

TEST(describe_names_route_action_and_targets)
{
    sp_gen *g = unit_compile(every_kind);
    REQUIRE(g);
    sp_route_desc d;
    sp_route_describe(&g->routes[0], &d);
    CHECK_STR_EQ(d.name, "fwd");
    CHECK_EQ_INT(d.index, 1);
    CHECK_EQ_INT(d.priority, 5);
    CHECK_EQ_INT(d.nports, 2);
    CHECK_EQ_INT(d.ports[1].from, 8090);
    CHECK_EQ_INT(d.ports[1].to, 8092);
    CHECK_STR_EQ(d.action_name, "forward");
    CHECK(!d.kernel && !d.http);
    CHECK_EQ_INT(d.ntargets, 3);

    sp_target_desc t;
    sp_target_describe(&d.targets[0], &t);
    CHECK_STR_EQ(t.host, "::1");
    CHECK(t.host_is_ipv6);
    CHECK(t.port_kind == SP_PORT_FIXED);
    CHECK_EQ_INT(t.port, 9000);
    sp_target_describe(&d.targets[1], &t);
    CHECK_STR_EQ(t.host, SP_DESC_LUA_FUNCTION);
    CHECK(!t.host_is_ipv6);
    CHECK_STR_EQ(t.port_word, "preserve");
    sp_target_describe(&d.targets[2], &t);
    CHECK_STR_EQ(t.host, "h");
    CHECK_STR_EQ(t.port_word, SP_DESC_LUA_FUNCTION);

    static const char *const actions[] = {"forward", "block", "block", "redirect", "socket-handler",
                                          "socket-handler", "forward", "forward"};
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route_describe(&g->routes[i], &d);
        CHECK_STR_EQ(d.action_name, actions[i]);
    }
    sp_route_describe(&g->routes[6], &d);
    CHECK(d.http);
    sp_gen_unref(g);
}

TEST(check_summary_shows_every_kind_of_route)
{
    sp_gen *g = unit_compile(every_kind);
    REQUIRE(g);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    REQUIRE(out);
    sp_gen_print_summary(g, out);
    fclose(out);
    CHECK_STR_EQ(text,
        "proxy.lua: configuration OK: 8 route(s) on 11 port(s)\n"
        "ports: 8080-8087 8090-8092\n"
        "PROXY protocol accepted from 1 pattern(s)\n"
        "listen addresses: 127.0.0.1\n"
        "routes:\n"
        "  #1 fwd (priority 5) ports 8080,8090-8092 client_ip(2 patterns) domains a.example.com,*.b.example.com"
        " tls_version TLSv1.2,TLSv1.3 -> forward [::1]:9000, <lua function>:<preserve>, h:<lua function>"
        " send-proxy-v2 (half-open)\n"
        "  #2 blk (priority 0) ports 8081 -> block\n"
        "  #3 hblk (priority 0) ports 8082 path /x/* -> block (http 403)\n"
        "  #4 redir (priority 0) ports 8083 headers(1) -> redirect 308 https://{domain}{url}\n"
        "  #5 sock (priority 0) ports 8084 domains * -> socket-handler\n"
        "  #6 sockpt (priority 0) ports 8085 domains s.example -> socket-handler (tls passthrough)\n"
        "  #7 http (priority 0) ports 8086 -> forward http a:80, b:80\n"
        "  #8 pt (priority 0) ports 8087 domains p.example -> forward 127.0.0.1:1 tls passthrough\n");
    free(text);
    sp_gen_unref(g);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(describe_names_route_action_and_targets),
        UNIT(check_summary_shows_every_kind_of_route),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
