/* The admin endpoint's guard against browsers (core/admin/guard.h): its address, the
 * Host and Origin checks, what counts as a deliberate state change. */
#include "admin/guard.h"

#include "unit.h"

static sp_ip_endpoint address_of(const char *s)
{
    sp_ip_endpoint a;
    if (sp_ip_endpoint_parse(s, &a) != 0) {
        unit_fail_(__FILE__, __LINE__, "address in a test does not parse");
        fprintf(stderr, "    \"%s\"\n", s);
    }
    return a;
}

/* Does host name the endpoint on listen, with these metrics.hosts? */
static bool host_ok(const char *listen, const char *host, const char *const *hosts, size_t nhosts)
{
    sp_ip_endpoint a = address_of(listen);
    sp_domain_pattern patterns[4];
    for (size_t i = 0; i < nhosts; i++)
        if (sp_domain_pattern_parse(hosts[i], &patterns[i], NULL) != 0)
            unit_fail_(__FILE__, __LINE__, "a metrics.hosts name in a test does not parse");
    sp_admin_names n = {.listen = &a, .hosts = patterns, .nhosts = nhosts};
    return sp_admin_host_ok(&n, host);
}

static bool origin_ok(const char *listen, const char *origin)
{
    sp_ip_endpoint a = address_of(listen);
    sp_admin_names n = {.listen = &a};
    return sp_admin_origin_ok(&n, origin);
}

TEST(parses_listen_addresses)
{
    sp_ip_endpoint a = address_of("127.0.0.1:9100");
    CHECK_STR_EQ(a.host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 9100);
    CHECK(a.loopback && !a.wildcard);
    a = address_of("[::1]:1");
    CHECK_STR_EQ(a.host, "::1");
    CHECK(a.loopback && !a.wildcard);
    CHECK(address_of("127.255.0.3:65535").loopback);
    a = address_of("0.0.0.0:9100");
    CHECK(!a.loopback && a.wildcard);
    a = address_of("[::]:9100");
    CHECK(!a.loopback && a.wildcard);
    a = address_of("10.0.0.5:9100");
    CHECK(!a.loopback && !a.wildcard);
    a = address_of("[::ffff:127.0.0.1]:9100");  /* the same address as 127.0.0.1 */
    CHECK(a.loopback);
    CHECK(!address_of("128.0.0.1:9100").loopback);
    CHECK(!address_of("[::2]:9100").loopback);

    static const char *const bad[] = {"localhost:9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
                                      "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1:80x", ":80",
                                      "[::1:80", "[]:80", "1.2.3:80", "[127.0.0.1:80"};
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        sp_ip_endpoint x;
        if (sp_ip_endpoint_parse(bad[i], &x) == 0) {
            unit_fail_(__FILE__, __LINE__, "a bad listen address parsed");
            fprintf(stderr, "    \"%s\"\n", bad[i]);
        }
    }
}

TEST(host_on_a_loopback_listen)
{
    CHECK(host_ok("127.0.0.1:9100", "127.0.0.1:9100", NULL, 0));
    CHECK(host_ok("127.0.0.1:9100", "127.0.0.1", NULL, 0));
    CHECK(host_ok("127.0.0.1:9100", "127.0.0.1:8080", NULL, 0));  /* reached through a forward */
    CHECK(host_ok("127.0.0.1:9100", "localhost:9100", NULL, 0));
    CHECK(host_ok("127.0.0.1:9100", "LocalHost", NULL, 0));
    CHECK(host_ok("127.0.0.1:9100", "localhost.", NULL, 0));
    CHECK(host_ok("[::1]:9100", "[::1]:9100", NULL, 0));
    CHECK(host_ok("[::1]:9100", "[0:0::1]", NULL, 0));
    CHECK(host_ok("[::1]:9100", "localhost", NULL, 0));

    CHECK(!host_ok("127.0.0.1:9100", NULL, NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "evil.example:9100", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "127.0.0.2:9100", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "[::1]:9100", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "127.0.0.1.evil.example", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "localhost.evil.example", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "127.0.0.1:x", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "127.0.0.1:9100:9100", NULL, 0));
    CHECK(!host_ok("127.0.0.1:9100", "0177.0.0.1", NULL, 0));  /* octal spellings are names */
    CHECK(!host_ok("[::1]:9100", "[::1", NULL, 0));
}

TEST(host_on_a_specific_and_a_wildcard_listen)
{
    CHECK(host_ok("10.0.0.5:9100", "10.0.0.5:9100", NULL, 0));
    CHECK(!host_ok("10.0.0.5:9100", "10.0.0.6:9100", NULL, 0));
    CHECK(!host_ok("10.0.0.5:9100", "localhost:9100", NULL, 0));  /* not listening there */
    /* every local address: any IP literal (config requires a token), never a foreign name */
    CHECK(host_ok("0.0.0.0:9100", "10.1.2.3:9100", NULL, 0));
    CHECK(host_ok("0.0.0.0:9100", "localhost", NULL, 0));
    CHECK(host_ok("[::]:9100", "[fd00::7]:9100", NULL, 0));
    CHECK(host_ok("[::]:9100", "192.0.2.1", NULL, 0));
    CHECK(!host_ok("0.0.0.0:9100", "evil.example:9100", NULL, 0));
    CHECK(!host_ok("[::]:9100", "pod.cluster.local", NULL, 0));
}

TEST(host_in_metrics_hosts)
{
    static const char *const hosts[] = {"admin.example.test", "192.0.2.7", "2001:db8::1"};
    CHECK(host_ok("127.0.0.1:9100", "admin.example.test", hosts, 3));
    CHECK(host_ok("127.0.0.1:9100", "ADMIN.example.test:443", hosts, 3));
    CHECK(host_ok("127.0.0.1:9100", "192.0.2.7:9100", hosts, 3));
    CHECK(host_ok("127.0.0.1:9100", "[2001:db8:0::1]:9100", hosts, 3));
    CHECK(!host_ok("127.0.0.1:9100", "x.admin.example.test", hosts, 3));
    CHECK(!host_ok("127.0.0.1:9100", "admin.example.test.evil", hosts, 3));
    CHECK(!host_ok("127.0.0.1:9100", "192.0.2.8", hosts, 3));
}

TEST(origin_names_the_endpoint_or_is_absent)
{
    CHECK(origin_ok("127.0.0.1:9100", NULL));
    CHECK(origin_ok("127.0.0.1:9100", "http://127.0.0.1:9100"));
    CHECK(origin_ok("127.0.0.1:9100", "HTTPS://localhost"));
    CHECK(origin_ok("[::1]:9100", "http://[::1]:9100"));
    CHECK(!origin_ok("127.0.0.1:9100", "http://evil.example"));
    CHECK(!origin_ok("127.0.0.1:9100", "null"));
    CHECK(!origin_ok("127.0.0.1:9100", ""));
    CHECK(!origin_ok("127.0.0.1:9100", "file://"));
    CHECK(!origin_ok("127.0.0.1:9100", "ftp://127.0.0.1"));
    CHECK(!origin_ok("127.0.0.1:9100", "127.0.0.1:9100"));
    CHECK(!origin_ok("127.0.0.1:9100", "http://127.0.0.1:9100/"));
    CHECK(!origin_ok("127.0.0.1:9100", "http://127.0.0.1@evil.example"));
}

TEST(deliberate_requests)
{
    CHECK(sp_admin_request_is_deliberate(NULL, true));
    CHECK(sp_admin_request_is_deliberate("text/plain", true));
    CHECK(sp_admin_request_is_deliberate("application/json", false));
    CHECK(sp_admin_request_is_deliberate(" Application/JSON; charset=utf-8", false));
    CHECK(sp_admin_request_is_deliberate("application/json ;charset=utf-8", false));
    /* what a form or a simple fetch can send */
    CHECK(!sp_admin_request_is_deliberate(NULL, false));
    CHECK(!sp_admin_request_is_deliberate("", false));
    CHECK(!sp_admin_request_is_deliberate("application/x-www-form-urlencoded", false));
    CHECK(!sp_admin_request_is_deliberate("multipart/form-data; boundary=x", false));
    CHECK(!sp_admin_request_is_deliberate("text/plain", false));
    CHECK(!sp_admin_request_is_deliberate("text/plain; application/json", false));
    CHECK(!sp_admin_request_is_deliberate("application/jsonp", false));
    CHECK(!sp_admin_request_is_deliberate("application/json-seq", false));
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(parses_listen_addresses),
        UNIT(host_on_a_loopback_listen),
        UNIT(host_on_a_specific_and_a_wildcard_listen),
        UNIT(host_in_metrics_hosts),
        UNIT(origin_names_the_endpoint_or_is_absent),
        UNIT(deliberate_requests),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
