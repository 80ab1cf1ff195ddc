/* The config compiler (core/config/config.c and its modules) and the router
 * (core/route/router.c): Lua tables in, generations, port index, route choice and error
 * messages out. */
#include "config/config.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "route/router.h"
#include "unit.h"
#include "unit_config.h"


static sp_conn_info client(const char *ip, uint16_t port)
{
    sp_conn_info info = {.server_port = port};
    sp_ip_parse(ip, &info.client_ip);
    return info;
}

#define FWD "action = { type = 'forward', target = { host = '127.0.0.1', port = 9 } }"

TEST(defaults_and_settings)
{
    sp_gen *g = unit_compile("return { routes = { { match = { ports = 80 }, " FWD " } } }");
    REQUIRE(g);
    CHECK_EQ_INT(g->settings.timeouts.connect, 30000);
    CHECK_EQ_INT(g->settings.timeouts.graceful_shutdown, 30000);
    CHECK_EQ_INT(g->settings.nlisten_addresses, 2);
    CHECK_STR_EQ(g->routes[0].name, "route-1");
    CHECK_EQ_INT(sp_settings_stream_inactivity(&g->settings), 14400000);
    sp_gen_unref(g);

    g = unit_compile("return { workers = 3, listen_addresses = '::1', timeouts = { inactivity = 100 },"
                " keep_alive = { treatment = 'extended', inactivity_multiplier = 4 },"
                " limits = { max_connections = 7 }, metrics = { listen = '[::1]:9100' },"
                " log = { level = 'debug', format = 'json', access = false },"
                " routes = { { match = { ports = 80 }, " FWD " } } }");
    REQUIRE(g);
    CHECK_EQ_INT(g->settings.workers, 3);
    CHECK_STR_EQ(g->settings.listen_addresses[0], "::1");
    CHECK_EQ_INT(sp_settings_stream_inactivity(&g->settings), 400);
    CHECK_EQ_INT(g->settings.max_connections, 7);
    CHECK_STR_EQ(g->settings.metrics_listen, "[::1]:9100");
    CHECK_EQ_INT(g->settings.log_json, 1);
    CHECK(!g->settings.log_access);
    sp_gen_unref(g);

    g = unit_compile("return { proxy_ips = '127.0.0.1', routes = { { match = { ports = 80 }, "
                "action = { type = 'forward', target = { host = 'a', port = 1 }, send_proxy_protocol = true } } } }");
    REQUIRE(g);
    CHECK(g->settings.accept_proxy_protocol);
    CHECK_EQ_INT(g->settings.proxy_ips.n, 1);
    CHECK_EQ_INT(g->routes[0].send_proxy_protocol, 1);
    sp_gen_unref(g);

    g = unit_compile("return { keep_alive = { treatment = 'immortal' }, routes = { { match = { ports = 80 }, " FWD " } } }");
    REQUIRE(g);
    CHECK_EQ_INT(sp_settings_stream_inactivity(&g->settings), 0);
    sp_gen_unref(g);
}

TEST(port_index_orders_by_priority_then_file_order)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { name = 'a', match = { ports = { 80, { from = 8000, to = 8002 } } }, " FWD " },"
                        " { name = 'b', priority = 5, match = { ports = 80 }, " FWD " },"
                        " { name = 'c', match = { ports = { from = 8001, to = 8001 } }, " FWD " },"
                        " { name = 'd', match = { ports = { 80, 80 } }, " FWD " } } }");
    REQUIRE(g);
    CHECK_EQ_INT(g->nports, 4);
    const sp_port_entry *e = sp_gen_port(g, 80);
    REQUIRE(e);
    REQUIRE(e->nroutes == 3); /* 'd' lists 80 twice but is one candidate */
    CHECK_STR_EQ(e->routes[0]->name, "b");
    CHECK_STR_EQ(e->routes[1]->name, "a");
    CHECK_STR_EQ(e->routes[2]->name, "d");
    e = sp_gen_port(g, 8001);
    REQUIRE(e && e->nroutes == 2);
    CHECK_STR_EQ(e->routes[0]->name, "a");
    CHECK(sp_gen_port(g, 8003) == NULL);
    CHECK(sp_gen_port(g, 79) == NULL);
    sp_gen_unref(g);
}

TEST(router_matches_client_ip)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { name = 'lan', match = { ports = 22, client_ip = { '10.0.0.0/8', '::1' } }, " FWD " },"
                        " { name = 'one', match = { ports = 22, client_ip = '192.168.1.*' }, " FWD " },"
                        " { name = 'any', priority = -1, match = { ports = 22 }, " FWD " } } }");
    REQUIRE(g);
    sp_conn_info a = client("10.1.2.3", 22), b = client("::1", 22), c = client("192.168.1.77", 22),
                 d = client("172.16.0.1", 22), e = client("10.1.2.3", 23);
    CHECK_STR_EQ(sp_route_select(g, 22, &a)->name, "lan");
    CHECK_STR_EQ(sp_route_select(g, 22, &b)->name, "lan");
    CHECK_STR_EQ(sp_route_select(g, 22, &c)->name, "one");
    CHECK_STR_EQ(sp_route_select(g, 22, &d)->name, "any");
    CHECK(sp_route_select(g, 23, &e) == NULL);
    CHECK_STR_EQ(sp_route_mismatch(&g->routes[0], &d), "match.client_ip");
    CHECK(sp_route_mismatch(&g->routes[2], &d) == NULL);
    sp_gen_unref(g);
}

TEST(targets_compile_to_candidates)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { match = { ports = 1 }, action = { type = 'forward', target = { host = { 'a', 'b', 'c' }, port = 'preserve' } } },"
                        " { match = { ports = 2 }, action = { type = 'forward', target = { host = function() end, port = function() end } } },"
                        " { match = { ports = 3 }, action = { type = 'forward', targets = { { host = 'x', port = 1 }, { host = '::1', port = 2 } } } },"
                        " { match = { ports = 4 }, action = { type = 'block' } } } }");
    REQUIRE(g);
    REQUIRE(g->routes[0].ntargets == 3);
    CHECK_STR_EQ(g->routes[0].targets[2].host, "c");
    CHECK_EQ_INT(g->routes[0].targets[1].port_kind, SP_PORT_PRESERVE);
    REQUIRE(g->routes[1].ntargets == 1);
    CHECK(g->routes[1].targets[0].host == NULL);
    CHECK(g->routes[1].targets[0].host_fn != LUA_NOREF);
    CHECK_EQ_INT(g->routes[1].targets[0].port_kind, SP_PORT_FUNCTION);
    REQUIRE(g->routes[2].ntargets == 2);
    CHECK_EQ_INT(g->routes[2].targets[1].port, 2);
    CHECK_EQ_INT(g->routes[3].action, SP_ACTION_BLOCK);
    sp_gen_unref(g);
}

TEST(errors_name_route_field_expected_and_found)
{
    CHECK(unit_fails_with("return 5", "proxy.lua: (config): expected the file to return a table, got number 5"));
    CHECK(unit_fails_with("return {}", "proxy.lua: routes: required"));
    CHECK(unit_fails_with("return { routes = {}, wokers = 2 }", "proxy.lua: wokers: unknown field"));
    CHECK(unit_fails_with("return { routes = { { name = 'r', match = { ports = 1 }, " FWD " },"
                     " { name = 'api', match = { ports = 1 }, " FWD " },"
                     " { name = 'x', match = { ports = 'abc' }, " FWD " } } }",
                     "proxy.lua: route \"x\" (#3): match.ports: expected a port, a range or a list, got string \"abc\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 70000 }, " FWD " } } }",
                     "route \"route-1\" (#1): match.ports: expected a port from 1 to 65535, got number 70000"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = { from = 9, to = 3 } }, " FWD " } } }",
                     "match.ports: expected from <= to"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = { 1, 'x' } }, " FWD " } } }",
                     "match.ports[2]: expected a port, a range or a list, got string \"x\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, client_ip = { '10.0.0.0/33' } }, " FWD " } } }",
                     "match.client_ip[1]: expected an IP address, CIDR or glob, got string \"10.0.0.0/33\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, prots = 2 }, " FWD " } } }",
                     "route \"route-1\" (#1): match.prots: unknown field"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', target = { host = 5, port = 1 } } } } }",
                     "action.target.host: expected a host, a list of hosts or a function(ctx), got number 5"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', target = { host = 'a', port = 'same' } } } } }",
                     "action.target.port: expected a port number, \"preserve\" or a function(ctx), got string \"same\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward' } } } }",
                     "action.target: required for a forward action"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'teleport' } } } }",
                     "action.type: expected \"forward\""));
    CHECK(unit_fails_with("return { routes = { { name = 'a', match = { ports = 1 }, " FWD " }, { name = 'a', match = { ports = 2 }, " FWD " } } }",
                     "route \"a\" (#2): name: duplicate route name (also route #1)"));
    CHECK(unit_fails_with("return { timeouts = { connect = -1 }, routes = {} }",
                     "timeouts.connect: expected an integer from 0 to"));
    CHECK(unit_fails_with("return { timeouts = { conect = 1 }, routes = {} }", "timeouts.conect: unknown field"));
    CHECK(unit_fails_with("return { keep_alive = { treatment = 'forever' }, routes = {} }",
                     "keep_alive.treatment: expected \"standard\", \"extended\" or \"immortal\", got string \"forever\""));
    CHECK(unit_fails_with("return { listen_addresses = { '1.2.3' }, routes = {} }",
                     "listen_addresses[1]: expected an IPv4 or IPv6 address, got string \"1.2.3\""));
    CHECK(unit_fails_with("return { metrics = { listen = 'localhost' }, routes = {} }", "metrics.listen: expected"));
    CHECK(unit_fails_with("return { metrics = { listen = '0.0.0.0:9100' }, routes = {} }",
                     "metrics.listen: \"0.0.0.0:9100\" is not a loopback address; set metrics.token"));
    CHECK(unit_fails_with("return { metrics = { listen = '127.0.0.1:9100', hosts = { '*' } }, routes = {} }",
                     "metrics.hosts[1]: expected one host name, not a pattern"));
    /* HTTP fields */
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, path = 'a' }, " FWD " } } }",
                     "match.path: "));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, headers = { x = '/(/' } }, " FWD " } } }",
                     "match.headers[\"x\"]: expected a POSIX extended regular expression"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', "
                     "target = { host = 'h', port = 1 }, headers = { request = { X = '{nope}' } } } } } }",
                     "action.headers.request[\"X\"]: unknown template variable {nope}"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'redirect' } } } }",
                     "action.redirect: required"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'redirect', redirect = { to = '/', status = 200 } } } } }",
                     "action.redirect.status: expected 301, 302, 303, 307 or 308"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, path = '/a' }, action = { type = 'forward', "
                     "target = { host = 'h', port = 1 }, tls = { mode = 'passthrough' } } } } }",
                     "action.tls.mode: an HTTP route needs the requests"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, " FWD ", security = { rate_limit = { requests = 0 } } } } }",
                     "security.rate_limit: needs requests >= 1"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, " FWD ", security = { rate_limit = { requests = 1, key = 'cookie' } } } } }",
                     "security.rate_limit.key: expected \"ip\", \"route\" or \"header:NAME\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, " FWD ", security = { basic_auth = { users = { { username = 'a:b', password = 'x' } } } } } } }",
                     "security.basic_auth.users[1]: needs a username (without ':')"));
    CHECK(unit_fails_with("return { limits = { max_header_bytes = 10 }, routes = {} }",
                     "limits.max_header_bytes: expected at least 256"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, domains = { 'a.b', '*..b' } }, " FWD " } } }",
                     "route \"route-1\" (#1): match.domains[2]: expected a domain, \"*.domain\", \"*\" or a glob, got string \"*..b\" (empty label)"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1, tls_version = 'TLSv9' }, " FWD " } } }",
                     "match.tls_version: expected"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', "
                     "target = { host = 'a', port = 1 }, tls = { mode = 'terminate' } } } } }",
                     "action.tls.certificate: required to terminate TLS"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', "
                     "target = { host = 'a', port = 1 }, tls = { mode = 'passthrough', upstream_verify = true } } } } }",
                     "action.tls.upstream_verify: only a \"terminate-and-reencrypt\" route"));
    CHECK(unit_fails_with("return { acme = {}, routes = {} }", "acme.directory: required"));
    CHECK(unit_fails_with("return { acme = { directory = 'https://ca/dir' }, routes = {} }",
                     "certificates.store: required by acme"));
    CHECK(unit_fails_with("return { certificates = { provision = 5 }, routes = {} }",
                     "certificates.provision: expected a function(domain), got number 5"));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'socket-handler', "
                     "handler = function() end, tls = { mode = 'terminate', certificate = { cert = 'c', key = 'k' } } } } } }",
                     "action.tls.mode: a socket handler behind TLS termination is not supported"));
    CHECK(unit_fails_with("return { accept_proxy_protocol = true, routes = {} }",
                     "accept_proxy_protocol: needs proxy_ips"));
    CHECK(unit_fails_with("return { proxy_ips = { '10.0.0.0/8', 'x' }, routes = {} }",
                     "proxy_ips[2]: expected an IP address, CIDR or glob, got string \"x\""));
    CHECK(unit_fails_with("return { routes = { { match = { ports = 1 }, action = { type = 'forward', "
                     "target = { host = 'a', port = 1 }, send_proxy_protocol = 'v3' } } } }",
                     "action.send_proxy_protocol: expected false, true, \"v1\" or \"v2\", got string \"v3\""));
}

TEST(router_prefers_priority_then_specific_domain_then_file_order)
{
    sp_gen *g = unit_compile("return { routes = {"
                        " { name = 'any', match = { ports = 443, domains = '*' }, " FWD " },"
                        " { name = 'wild', match = { ports = 443, domains = '*.example.com' }, " FWD " },"
                        " { name = 'deeper', match = { ports = 443, domains = '*.api.example.com' }, " FWD " },"
                        " { name = 'exact', match = { ports = 443, domains = { 'x.org', 'api.example.com' } }, " FWD " },"
                        " { name = 'plain', match = { ports = 443 }, " FWD " },"
                        " { name = 'v12', priority = 9, match = { ports = 443, tls_version = 'TLSv1.2' }, " FWD " },"
                        " { name = 'vip', priority = 5, match = { ports = 443, domains = 'vip.example.com' }, " FWD " } } }");
    REQUIRE(g);
    REQUIRE(sp_gen_port(g, 443)->sniff);
    struct { const char *sni; uint16_t version; const char *want; } cases[] = {
        {"api.example.com", 0x0304, "exact"},     {"a.api.example.com", 0x0304, "deeper"},
        {"b.example.com", 0x0304, "wild"},        {"example.com", 0x0304, "any"},
        {"", 0x0304, "any"},                      {"vip.example.com", 0x0304, "vip"},
        {"api.example.com", 0x0303, "v12"},       {"", 0, "any"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_conn_info info = client("10.0.0.1", 443);
        info.domain = cases[i].sni;
        info.domain_len = strlen(cases[i].sni);
        info.tls_offered = cases[i].version;
        const sp_route *r = sp_route_select(g, 443, &info);
        REQUIRE(r);
        CHECK_STR_EQ(r->name, cases[i].want);
    }
    sp_gen_unref(g);

    /* without a catch-all, an unknown name or a missing SNI finds no route */
    g = unit_compile("return { routes = { { match = { ports = 443, domains = 'a.example.com' }, " FWD " } } }");
    REQUIRE(g);
    sp_conn_info info = client("10.0.0.1", 443);
    info.domain = "b.example.com";
    info.domain_len = strlen(info.domain);
    CHECK(sp_route_select(g, 443, &info) == NULL);
    CHECK_STR_EQ(sp_route_mismatch(&g->routes[0], &info), "match.domains");
    info.domain = "";
    info.domain_len = 0;
    CHECK(sp_route_select(g, 443, &info) == NULL);
    sp_gen_unref(g);
}

TEST(empty_route_list_is_valid)
{
    sp_gen *g = unit_compile("return { routes = {} }");
    REQUIRE(g);
    CHECK_EQ_INT(g->nroutes, 0);
    CHECK_EQ_INT(g->nports, 0);
    sp_gen_unref(g);
}

TEST(request_body_timeout_and_rate)
{
    sp_gen *g = unit_compile("return { routes = {} }");
    REQUIRE(g);
    CHECK_EQ_INT(g->settings.timeouts.request_body, 60000);
    CHECK_EQ_INT(g->settings.request_body_min_rate, 1024);
    sp_gen_unref(g);
    g = unit_compile("return { timeouts = { request_body = 0 }, limits = { request_body_min_rate = 0 }, routes = {} }");
    REQUIRE(g);
    CHECK_EQ_INT(g->settings.timeouts.request_body, 0);
    CHECK_EQ_INT(g->settings.request_body_min_rate, 0);
    sp_gen_unref(g);
    CHECK(unit_fails_with("return { timeouts = { request_body = -1 }, routes = {} }",
                          "timeouts.request_body: expected an integer from 0 to"));
    CHECK(unit_fails_with("return { limits = { request_body_min_rate = 'fast' }, routes = {} }",
                          "limits.request_body_min_rate: expected a non-negative integer, got string \"fast\""));
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(defaults_and_settings),
        UNIT(port_index_orders_by_priority_then_file_order),
        UNIT(router_matches_client_ip),
        UNIT(targets_compile_to_candidates),
        UNIT(errors_name_route_field_expected_and_found),
        UNIT(router_prefers_priority_then_specific_domain_then_file_order),
        UNIT(empty_route_list_is_valid),
        UNIT(request_body_timeout_and_rate),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
