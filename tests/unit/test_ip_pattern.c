/* Addresses and client-IP patterns (core/pattern/ip_pattern.h). */
#define _POSIX_C_SOURCE 200809L

#include "pattern/ip_pattern.h"

#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------- */

static sp_ip ip_of(const char *s)
{
    sp_ip ip;
    memset(&ip, 0xee, sizeof ip);
    if (sp_ip_parse(s, &ip) != 0) {
        unit_fail_(__FILE__, __LINE__, "address in a test does not parse");
        fprintf(stderr, "    \"%s\"\n", s);
    }
    return ip;
}

static bool same_ip(const char *a, const char *b)
{
    sp_ip x = ip_of(a), y = ip_of(b);
    return memcmp(&x, &y, sizeof x) == 0;
}

static bool bytes_are(const sp_ip *ip, const uint8_t expect[16])
{
    return memcmp(ip->b, expect, 16) == 0;
}

/* Parses and formats again; "(bad)" when it does not parse. */
static const char *fmt(const char *s)
{
    static char text[SP_IP_STRLEN];
    sp_ip ip;
    if (sp_ip_parse(s, &ip) != 0)
        return "(bad)";
    sp_ip_format(&ip, text, sizeof text);
    return text;
}

static sp_ip_pattern pattern_of(const char *s)
{
    sp_ip_pattern p;
    const char *why = NULL;
    memset(&p, 0xee, sizeof p);
    if (sp_ip_pattern_parse(s, &p, &why) != 0) {
        unit_fail_(__FILE__, __LINE__, "pattern in a test does not parse");
        fprintf(stderr, "    \"%s\": %s\n", s, why ? why : "(no reason)");
    }
    return p;
}

static bool matches(const char *pattern, const char *addr)
{
    sp_ip_pattern p = pattern_of(pattern);
    sp_ip ip = ip_of(addr);
    return sp_ip_pattern_match(&p, &ip);
}

static bool same_pattern(const char *a, const char *b)
{
    sp_ip_pattern x = pattern_of(a), y = pattern_of(b);
    return memcmp(&x, &y, sizeof x) == 0;
}

/* NULL when s parses as a pattern, else the reason. */
static const char *reason(const char *s)
{
    sp_ip_pattern p;
    const char *why = NULL;
    if (sp_ip_pattern_parse(s, &p, &why) == 0)
        return NULL;
    return why != NULL ? why : "(no reason given)";
}

static void flip_bit(sp_ip *ip, unsigned bit)
{
    ip->b[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
}

/* ---- addresses ---------------------------------------------------------------------- */

TEST(parse_v4_stores_mapped_form)
{
    static const uint8_t expect[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    sp_ip ip;
    REQUIRE(sp_ip_parse("1.2.3.4", &ip) == 0);
    CHECK(bytes_are(&ip, expect));
    CHECK(sp_ip_is_v4(&ip));

    static const uint8_t zero[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    REQUIRE(sp_ip_parse("0.0.0.0", &ip) == 0);
    CHECK(bytes_are(&ip, zero));
    static const uint8_t ones[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 255, 255, 255, 255};
    REQUIRE(sp_ip_parse("255.255.255.255", &ip) == 0);
    CHECK(bytes_are(&ip, ones));
    CHECK(sp_ip_parse("10.0.0.5", &ip) == 0);
    CHECK(sp_ip_parse("199.99.9.0", &ip) == 0);
}

TEST(parse_v4_rejects)
{
    static const char *const bad[] = {
        "", "1", "1.2", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "1.2.3.999",
        "1000.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "1.2.3.4x", "x1.2.3.4",
        "01.2.3.4", "1.2.3.04", "1.2.3.00", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4.",
        "1.2.3.-1", "+1.2.3.4", "1.2.3.+4", "0x1.2.3.4", "1.2.3.4/8", "1.2.3.*", "*",
        "1,2,3,4", "1.2.3.4\t", "１.2.3.4", "....", "a.b.c.d",
    };
    sp_ip ip;
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        if (sp_ip_parse(bad[i], &ip) == 0) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad address");
            fprintf(stderr, "    \"%s\"\n", bad[i]);
        }
    }
    CHECK(sp_ip_parse(NULL, &ip) == -1);
}

TEST(parse_v6)
{
    static const uint8_t loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0xab, 0xcd};
    static const uint8_t seq[16] = {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8};
    static const uint8_t zero[16] = {0};
    sp_ip ip;
    REQUIRE(sp_ip_parse("::1", &ip) == 0);
    CHECK(bytes_are(&ip, loopback));
    CHECK(!sp_ip_is_v4(&ip));
    REQUIRE(sp_ip_parse("::", &ip) == 0);
    CHECK(bytes_are(&ip, zero));
    REQUIRE(sp_ip_parse("2001:db8::abcd", &ip) == 0);
    CHECK(bytes_are(&ip, doc));
    REQUIRE(sp_ip_parse("2001:DB8:0:0:0:0:0:ABCD", &ip) == 0);
    CHECK(bytes_are(&ip, doc));
    REQUIRE(sp_ip_parse("2001:0db8:0000:0000:0000:0000:0000:abcd", &ip) == 0);
    CHECK(bytes_are(&ip, doc));
    REQUIRE(sp_ip_parse("1:2:3:4:5:6:7:8", &ip) == 0);
    CHECK(bytes_are(&ip, seq));
    REQUIRE(sp_ip_parse("1:2:3:4:5:6:0.7.0.8", &ip) == 0);
    CHECK(bytes_are(&ip, seq));

    /* "::" for one or more groups, at either end or inside. */
    CHECK(same_ip("1::", "1:0:0:0:0:0:0:0"));
    CHECK(same_ip("::8", "0:0:0:0:0:0:0:8"));
    CHECK(same_ip("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"));
    CHECK(same_ip("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"));
    CHECK(same_ip("1:2::7:8", "1:2:0:0:0:0:7:8"));
    CHECK(same_ip("1:2:3::5:6:7:8", "1:2:3:0:5:6:7:8"));
    CHECK(same_ip("fe80::1:2:3:4:5:6", "fe80:0:1:2:3:4:5:6"));
    CHECK(same_ip("::1.2.3.4", "::102:304"));
    CHECK(same_ip("64:ff9b::192.0.2.33", "64:ff9b::c000:221"));
}

TEST(parse_v6_mapped_equals_v4)
{
    CHECK(same_ip("::ffff:1.2.3.4", "1.2.3.4"));
    CHECK(same_ip("::FFFF:1.2.3.4", "1.2.3.4"));
    CHECK(same_ip("::ffff:102:304", "1.2.3.4"));
    CHECK(same_ip("0:0:0:0:0:ffff:1.2.3.4", "1.2.3.4"));
    CHECK(same_ip("0000:0000:0000:0000:0000:ffff:0102:0304", "1.2.3.4"));
    CHECK(same_ip("::ffff:0.0.0.0", "0.0.0.0"));
    CHECK(!same_ip("::1.2.3.4", "1.2.3.4"));       /* v4-compatible is not v4-mapped */
    CHECK(!same_ip("::fffe:1.2.3.4", "1.2.3.4"));
}

TEST(parse_v6_rejects)
{
    static const char *const bad[] = {
        ":", ":::", "::::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8", "1::2::3", "1::2:3::", "12345::", "1:2:3:4:5:6:7:12345",
        "g::1", "::g", "::1%eth0", "fe80::1%1", "[::1]", "::1:", ":1::", "1:", ":1",
        "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3",
        "::256.1.1.1", "::1.2.3.4:5", "::1.2.3.4.5", "1.2.3.4::", "::ffff:01.2.3.4",
        "::ffff:1.2.3.04", "1:2:3:4:5:6:7:8 ", " ::1", "::1/128", "::-1", "::+1",
        "::ffff:1.2.3.*", "1::2:3:4:5:6:7:1.2.3.4", "::0x1", "1:2:3:4:5:6:7:8\n",
        "1.2.3.4:80", "::1.2.3.4/8",
    };
    sp_ip ip;
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        if (sp_ip_parse(bad[i], &ip) == 0) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad address");
            fprintf(stderr, "    \"%s\"\n", bad[i]);
        }
    }
}

TEST(is_v4)
{
    sp_ip ip = ip_of("1.2.3.4");
    CHECK(sp_ip_is_v4(&ip));
    ip = ip_of("::ffff:10.0.0.1");
    CHECK(sp_ip_is_v4(&ip));
    ip = ip_of("::");
    CHECK(!sp_ip_is_v4(&ip));
    ip = ip_of("::1");
    CHECK(!sp_ip_is_v4(&ip));
    ip = ip_of("::1.2.3.4");
    CHECK(!sp_ip_is_v4(&ip));
    ip = ip_of("::fffe:1.2.3.4");
    CHECK(!sp_ip_is_v4(&ip));
    ip = ip_of("1::ffff:1.2.3.4");
    CHECK(!sp_ip_is_v4(&ip));
    ip = ip_of("64:ff9b::1.2.3.4");
    CHECK(!sp_ip_is_v4(&ip));
}

TEST(format_v4)
{
    CHECK_STR_EQ(fmt("1.2.3.4"), "1.2.3.4");
    CHECK_STR_EQ(fmt("0.0.0.0"), "0.0.0.0");
    CHECK_STR_EQ(fmt("255.255.255.255"), "255.255.255.255");
    CHECK_STR_EQ(fmt("10.100.0.9"), "10.100.0.9");
    CHECK_STR_EQ(fmt("::ffff:1.2.3.4"), "1.2.3.4");
    CHECK_STR_EQ(fmt("::ffff:c000:221"), "192.0.2.33");
    CHECK_STR_EQ(fmt("::ffff:0:0"), "0.0.0.0");
}

TEST(format_v6_rfc5952)
{
    CHECK_STR_EQ(fmt("::"), "::");
    CHECK_STR_EQ(fmt("::1"), "::1");
    CHECK_STR_EQ(fmt("1::"), "1::");
    CHECK_STR_EQ(fmt("2001:0DB8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
    CHECK_STR_EQ(fmt("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789"),
                 "abcd:ef01:2345:6789:abcd:ef01:2345:6789");
    /* 4.2.2: a single zero group is not shortened. */
    CHECK_STR_EQ(fmt("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
    CHECK_STR_EQ(fmt("0:1:0:1:0:1:0:1"), "0:1:0:1:0:1:0:1");
    /* 4.2.3: the longest run; the first on a tie. */
    CHECK_STR_EQ(fmt("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
    CHECK_STR_EQ(fmt("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
    CHECK_STR_EQ(fmt("1:0:0:2:0:0:0:0"), "1:0:0:2::");
    CHECK_STR_EQ(fmt("0:0:1:0:0:0:1:0"), "0:0:1::1:0");
    CHECK_STR_EQ(fmt("0:0:1:2:3:4:5:6"), "::1:2:3:4:5:6");
    CHECK_STR_EQ(fmt("1:2:3:4:5:6:0:0"), "1:2:3:4:5:6::");
    CHECK_STR_EQ(fmt("1:2:3:0:0:6:7:8"), "1:2:3::6:7:8");
    CHECK_STR_EQ(fmt("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    /* Only v4-mapped addresses get the dotted form. */
    CHECK_STR_EQ(fmt("::1.2.3.4"), "::102:304");
    CHECK_STR_EQ(fmt("::fffe:1.2.3.4"), "::fffe:102:304");
    CHECK_STR_EQ(fmt("64:ff9b::1.2.3.4"), "64:ff9b::102:304");
    CHECK_STR_EQ(fmt("1::ffff:1.2.3.4"), "1::ffff:102:304");
    CHECK_STR_EQ(fmt("fe80::0001"), "fe80::1");
}

TEST(format_returns_length_and_truncates)
{
    sp_ip ip = ip_of("255.255.255.255");
    char buf[SP_IP_STRLEN];
    CHECK_EQ_INT(sp_ip_format(&ip, buf, sizeof buf), 15);
    CHECK_STR_EQ(buf, "255.255.255.255");

    ip = ip_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    CHECK_EQ_INT(sp_ip_format(&ip, buf, sizeof buf), 39);

    char small[5];
    memset(small, 'x', sizeof small);
    ip = ip_of("192.168.100.200");
    CHECK_EQ_INT(sp_ip_format(&ip, small, sizeof small), 15);
    CHECK_STR_EQ(small, "192.");

    memset(small, 'x', sizeof small);
    CHECK_EQ_INT(sp_ip_format(&ip, small, 1), 15);
    CHECK_EQ_INT(small[0], '\0');
    CHECK_EQ_INT(small[1], 'x');

    memset(small, 'x', sizeof small);
    CHECK_EQ_INT(sp_ip_format(&ip, small, 0), 15);
    CHECK_EQ_INT(small[0], 'x');
}

/* Every arrangement of zero and non-zero groups formats to text that reads back the
 * same and is never longer than the RFC 5952 bound. */
TEST(format_round_trips_every_zero_layout)
{
    static const uint16_t values[] = {1, 0xf, 0x10, 0xabc, 0x1000, 0xffff};
    for (unsigned layout = 0; layout < 256; layout++) {
        for (size_t v = 0; v < UNIT_COUNT(values); v++) {
            sp_ip ip;
            for (int k = 0; k < 8; k++) {
                uint16_t w = layout & (1u << k) ? (uint16_t)(values[v] + k) : 0;
                ip.b[2 * k] = (uint8_t)(w >> 8);
                ip.b[2 * k + 1] = (uint8_t)w;
            }
            char text[SP_IP_STRLEN];
            size_t n = sp_ip_format(&ip, text, sizeof text);
            sp_ip back;
            CHECK_EQ_INT(n, strlen(text));
            CHECK(n <= 39);
            CHECK(strstr(text, ":::") == NULL);
            if (sp_ip_parse(text, &back) != 0 || memcmp(&ip, &back, sizeof ip) != 0) {
                unit_fail_(__FILE__, __LINE__, "format does not read back");
                fprintf(stderr, "    \"%s\"\n", text);
            }
        }
    }
}

TEST(from_sockaddr)
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_port = htons(8080);
    in.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
    sp_ip ip, expect;
    uint16_t port = 0;
    REQUIRE(sp_ip_from_sockaddr((const struct sockaddr *)&in, &ip, &port) == 0);
    CHECK_EQ_INT(port, 8080);
    expect = ip_of("192.0.2.1");
    CHECK(memcmp(&ip, &expect, sizeof ip) == 0);
    CHECK(sp_ip_is_v4(&ip));
    CHECK(sp_ip_from_sockaddr((const struct sockaddr *)&in, &ip, NULL) == 0);

    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(443);
    in6.sin6_addr.s6_addr[15] = 1;
    REQUIRE(sp_ip_from_sockaddr((const struct sockaddr *)&in6, &ip, &port) == 0);
    CHECK_EQ_INT(port, 443);
    expect = ip_of("::1");
    CHECK(memcmp(&ip, &expect, sizeof ip) == 0);

    /* A v4 peer of a dual-stack socket is the same address as on a v4 socket. */
    in6.sin6_port = htons(65535);
    memset(in6.sin6_addr.s6_addr, 0, 16);
    in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
    in6.sin6_addr.s6_addr[12] = 192;
    in6.sin6_addr.s6_addr[13] = 0;
    in6.sin6_addr.s6_addr[14] = 2;
    in6.sin6_addr.s6_addr[15] = 1;
    REQUIRE(sp_ip_from_sockaddr((const struct sockaddr *)&in6, &ip, &port) == 0);
    CHECK_EQ_INT(port, 65535);
    expect = ip_of("192.0.2.1");
    CHECK(memcmp(&ip, &expect, sizeof ip) == 0);
    CHECK(sp_ip_is_v4(&ip));

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    port = 7;
    CHECK(sp_ip_from_sockaddr((const struct sockaddr *)&un, &ip, &port) == -1);
    CHECK_EQ_INT(port, 7);
}

/* ---- patterns ------------------------------------------------------------------------ */

TEST(pattern_exact_v4)
{
    CHECK(matches("10.0.0.5", "10.0.0.5"));
    CHECK(matches("10.0.0.5", "::ffff:10.0.0.5"));
    CHECK(!matches("10.0.0.5", "10.0.0.6"));
    CHECK(!matches("10.0.0.5", "10.0.0.4"));
    CHECK(!matches("10.0.0.5", "::a00:5"));
    CHECK(!matches("10.0.0.5", "::ffff:0:a00:5"));
    CHECK(matches("0.0.0.0", "0.0.0.0"));
    CHECK(!matches("0.0.0.0", "::"));
    CHECK(matches("255.255.255.255", "255.255.255.255"));
    sp_ip_pattern p = pattern_of("10.0.0.5");
    for (int k = 0; k < 16; k++)
        CHECK_EQ_INT(p.mask[k], 0xff);
}

TEST(pattern_exact_v6_and_mapped)
{
    CHECK(matches("::1", "::1"));
    CHECK(!matches("::1", "::2"));
    CHECK(!matches("::1", "127.0.0.1"));
    CHECK(!matches("::1", "::"));
    CHECK(matches("2001:db8::5", "2001:0db8:0:0:0:0:0:5"));
    CHECK(matches("::ffff:1.2.3.4", "1.2.3.4"));
    CHECK(matches("1.2.3.4", "::ffff:102:304"));
    CHECK(same_pattern("::ffff:1.2.3.4", "1.2.3.4"));
    CHECK(same_pattern("::ffff:1.2.3.4/128", "1.2.3.4/32"));
    CHECK(same_pattern("::1/128", "::1"));
    CHECK(same_pattern("1.2.3.4/32", "1.2.3.4"));
}

TEST(pattern_cidr_v4)
{
    CHECK(matches("10.0.0.0/8", "10.0.0.0"));
    CHECK(matches("10.0.0.0/8", "10.255.255.255"));
    CHECK(matches("10.0.0.0/8", "::ffff:10.1.2.3"));
    CHECK(!matches("10.0.0.0/8", "11.0.0.0"));
    CHECK(!matches("10.0.0.0/8", "9.255.255.255"));
    CHECK(!matches("10.0.0.0/8", "::a00:1"));           /* v4-compatible, not v4 */
    CHECK(!matches("10.0.0.0/8", "64:ff9b::10.0.0.1"));

    CHECK(matches("172.16.0.0/12", "172.31.255.255"));
    CHECK(!matches("172.16.0.0/12", "172.32.0.0"));
    CHECK(!matches("172.16.0.0/12", "172.15.255.255"));
    CHECK(matches("192.168.1.0/31", "192.168.1.1"));
    CHECK(!matches("192.168.1.0/31", "192.168.1.2"));
    CHECK(matches("128.0.0.0/1", "255.255.255.255"));
    CHECK(!matches("128.0.0.0/1", "127.255.255.255"));
    CHECK(matches("192.0.2.7/32", "192.0.2.7"));
    CHECK(!matches("192.0.2.7/32", "192.0.2.6"));

    /* /0 is every IPv4 address and nothing else. */
    CHECK(matches("0.0.0.0/0", "0.0.0.0"));
    CHECK(matches("0.0.0.0/0", "255.255.255.255"));
    CHECK(!matches("0.0.0.0/0", "::1"));
    CHECK(!matches("0.0.0.0/0", "::"));
    CHECK(!matches("0.0.0.0/0", "2001:db8::1"));
    CHECK(same_pattern("0.0.0.0/0", "::ffff:0:0/96"));
    CHECK(same_pattern("10.0.0.0/8", "::ffff:10.0.0.0/104"));

    /* Host bits are masked off. */
    CHECK(same_pattern("10.1.2.3/8", "10.0.0.0/8"));
    CHECK(same_pattern("255.255.255.255/0", "0.0.0.0/0"));
    CHECK(matches("10.1.2.3/8", "10.200.0.1"));

    sp_ip_pattern p = pattern_of("172.16.0.0/12"); /* 96 + 12 = 108 bits */
    for (int k = 0; k < 13; k++)
        CHECK_EQ_INT(p.mask[k], 0xff);
    CHECK_EQ_INT(p.mask[13], 0xf0);
    CHECK_EQ_INT(p.mask[14], 0);
    CHECK_EQ_INT(p.mask[15], 0);
}

TEST(pattern_cidr_v6)
{
    CHECK(matches("2001:db8::/32", "2001:db8::1"));
    CHECK(matches("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(!matches("2001:db8::/32", "2001:db9::"));
    CHECK(!matches("2001:db8::/32", "2001:db7:ffff::"));
    CHECK(!matches("2001:db8::/32", "1.2.3.4"));
    CHECK(matches("fe80::/10", "febf:ffff::1"));
    CHECK(!matches("fe80::/10", "fec0::"));
    CHECK(matches("2001:db8::/127", "2001:db8::1"));
    CHECK(!matches("2001:db8::/127", "2001:db8::2"));
    CHECK(matches("::1/128", "::1"));
    CHECK(!matches("::1/128", "::"));

    /* ::/0 is everything, v4 included. */
    CHECK(matches("::/0", "::"));
    CHECK(matches("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(matches("::/0", "1.2.3.4"));
    CHECK(matches("::ffff:0:0/96", "203.0.113.9"));
    CHECK(!matches("::ffff:0:0/96", "::fffe:0:1"));

    CHECK(same_pattern("2001:db8:1234::/32", "2001:db8::/32"));
    CHECK(same_pattern("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/0", "::/0"));
}

/* For every prefix length, flipping a bit inside the prefix stops the match and
 * flipping one outside does not. */
TEST(pattern_cidr_every_prefix_length)
{
    sp_ip base6 = ip_of("2001:db8:1234:5678:9abc:def0:1357:2468");
    for (unsigned n = 0; n <= 128; n++) {
        char text[SP_IP_STRLEN + 8];
        size_t len = sp_ip_format(&base6, text, SP_IP_STRLEN);
        snprintf(text + len, sizeof text - len, "/%u", n);
        sp_ip_pattern p = pattern_of(text);
        CHECK(sp_ip_pattern_match(&p, &base6));
        for (unsigned bit = 0; bit < 128; bit++) {
            sp_ip ip = base6;
            flip_bit(&ip, bit);
            if (sp_ip_pattern_match(&p, &ip) != (bit >= n)) {
                unit_fail_(__FILE__, __LINE__, "v6 prefix boundary");
                fprintf(stderr, "    /%u bit %u\n", n, bit);
            }
        }
    }

    sp_ip base4 = ip_of("203.0.113.77");
    for (unsigned n = 0; n <= 32; n++) {
        char text[32];
        snprintf(text, sizeof text, "203.0.113.77/%u", n);
        sp_ip_pattern p = pattern_of(text);
        CHECK(sp_ip_pattern_match(&p, &base4));
        for (unsigned bit = 0; bit < 128; bit++) {
            sp_ip ip = base4;
            flip_bit(&ip, bit);
            bool expect = bit >= 96 + n; /* the first 96 bits make it v4 at all */
            if (sp_ip_pattern_match(&p, &ip) != expect) {
                unit_fail_(__FILE__, __LINE__, "v4 prefix boundary");
                fprintf(stderr, "    /%u bit %u\n", n, bit);
            }
        }
        /* The value is masked: nothing outside the mask is set. */
        for (int k = 0; k < 16; k++)
            CHECK_EQ_INT(p.value[k] & ~p.mask[k], 0);
    }
}

TEST(pattern_v4_glob)
{
    CHECK(matches("192.168.1.*", "192.168.1.0"));
    CHECK(matches("192.168.1.*", "192.168.1.255"));
    CHECK(matches("192.168.1.*", "::ffff:192.168.1.7"));
    CHECK(!matches("192.168.1.*", "192.168.2.1"));
    CHECK(!matches("192.168.1.*", "193.168.1.1"));
    CHECK(!matches("192.168.1.*", "::c0a8:101"));
    CHECK(same_pattern("192.168.1.*", "192.168.1.0/24"));

    CHECK(matches("10.*.*.1", "10.5.6.1"));
    CHECK(matches("10.*.*.1", "10.255.0.1"));
    CHECK(!matches("10.*.*.1", "10.5.6.2"));
    CHECK(!matches("10.*.*.1", "11.5.6.1"));
    CHECK(matches("*.0.0.1", "250.0.0.1"));
    CHECK(!matches("*.0.0.1", "250.0.1.1"));

    CHECK(matches("*.*.*.*", "0.0.0.0"));
    CHECK(matches("*.*.*.*", "255.255.255.255"));
    CHECK(!matches("*.*.*.*", "::1"));
    CHECK(!matches("*.*.*.*", "::"));
    CHECK(same_pattern("*.*.*.*", "0.0.0.0/0"));

    sp_ip_pattern p = pattern_of("10.*.*.1");
    static const uint8_t mask[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff};
    CHECK(memcmp(p.mask, mask, 16) == 0);
}

TEST(pattern_any)
{
    static const char *const addrs[] = {
        "0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "::1", "2001:db8::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:10.0.0.1",
    };
    for (size_t i = 0; i < UNIT_COUNT(addrs); i++)
        CHECK(matches("*", addrs[i]));
    CHECK(same_pattern("*", "::/0"));
}

TEST(pattern_rejects_with_reason)
{
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"", "empty pattern"},
        {"1.2.3", "expected 4 octets"},
        {"1.2.3.4.5", "expected 4 octets"},
        {"1.2.3.4.", "expected 4 octets"},
        {"1..2.3", "empty octet"},
        {".1.2.3", "empty octet"},
        {"256.1.1.1", "octet out of range"},
        {"1.2.3.1000", "octet out of range"},
        {"1.2.3.99999999999999999999", "octet out of range"},
        {"01.2.3.4", "leading zero in octet"},
        {"1.2.3.00", "leading zero in octet"},
        {"1.2.3.4 ", "bad IPv4 address"},
        {" 1.2.3.4", "bad IPv4 address"},
        {"1.2.3.4x", "bad IPv4 address"},
        {"localhost", "bad IPv4 address"},
        {"10.0.0.0/33", "prefix length out of range"},
        {"10.0.0.0/999", "prefix length out of range"},
        {"10.0.0.0/1000", "prefix length out of range"},
        {"::/129", "prefix length out of range"},
        {"2001:db8::/200", "prefix length out of range"},
        {"10.0.0.0/", "missing prefix length"},
        {"10.0.0.0/8x", "bad prefix length"},
        {"10.0.0.0/-1", "bad prefix length"},
        {"10.0.0.0/+8", "bad prefix length"},
        {"10.0.0.0/ 8", "bad prefix length"},
        {"10.0.0.0/8 ", "bad prefix length"},
        {"10.0.0.0/8/8", "bad prefix length"},
        {"10.0.0.0/*", "bad prefix length"},
        {"10.0.0.0/08", "leading zero in prefix length"},
        {"::/00", "leading zero in prefix length"},
        {"/8", "empty address"},
        {"/", "empty address"},
        {"192.168.1.*/24", "a glob and a prefix length cannot be combined"},
        {"192.168.*/16", "a glob and a prefix length cannot be combined"},
        {"* ", "bad character in a glob (digits, '.', '*', '?', '{a,b}')"},
        {"10.0.0.{1}", "braces need at least two alternatives (\"{a,b}\")"},
        {"10.0.0.{1,}", "empty alternative"},
        {"2001:db8::*", "globs are only allowed in IPv4 patterns"},
        {"::ffff:1.2.3.*", "globs are only allowed in IPv4 patterns"},
        {"2001:db8:::1", "bad IPv6 address"},
        {"::1%lo", "bad IPv6 address"},
        {"[::1]", "bad IPv6 address"},
        {"1:2:3:4:5:6:7", "bad IPv6 address"},
        {"1.2.3.4:80", "bad IPv6 address"},
        {"12345::/16", "bad IPv6 address"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        const char *got = reason(cases[i].in);
        if (got == NULL || strcmp(got, cases[i].why) != 0) {
            unit_fail_(__FILE__, __LINE__, "rejection reason");
            fprintf(stderr, "    \"%s\": got \"%s\", expected \"%s\"\n", cases[i].in,
                    got ? got : "(accepted)", cases[i].why);
        }
    }

    sp_ip_pattern p;
    const char *why = NULL;
    CHECK(sp_ip_pattern_parse(NULL, &p, &why) == -1);
    CHECK_STR_EQ(why, "empty pattern");
    CHECK(sp_ip_pattern_parse("nonsense", &p, NULL) == -1); /* why may be NULL */
    CHECK(sp_ip_pattern_parse("10.0.0.0/8", &p, NULL) == 0);
}

TEST(list)
{
    sp_ip_list l = {0};
    sp_ip ip = ip_of("192.168.1.100");
    CHECK(!sp_ip_list_match(&l, &ip)); /* empty: nothing */

    const char *why = NULL;
    REQUIRE(sp_ip_list_add(&l, "10.0.0.0/8", &why) == 0);
    REQUIRE(sp_ip_list_add(&l, "192.168.1.*", &why) == 0);
    REQUIRE(sp_ip_list_add(&l, "::1", NULL) == 0);
    CHECK_EQ_INT(l.n, 3);
    CHECK(sp_ip_list_match(&l, &ip));
    ip = ip_of("10.9.8.7");
    CHECK(sp_ip_list_match(&l, &ip));
    ip = ip_of("::1");
    CHECK(sp_ip_list_match(&l, &ip));
    ip = ip_of("192.168.2.1");
    CHECK(!sp_ip_list_match(&l, &ip));
    ip = ip_of("::2");
    CHECK(!sp_ip_list_match(&l, &ip));

    CHECK(sp_ip_list_add(&l, "10.0.0.0/40", &why) == -1);
    CHECK_STR_EQ(why, "prefix length out of range");
    CHECK_EQ_INT(l.n, 3);

    sp_ip_list_free(&l);
    CHECK(l.items == NULL);
    CHECK_EQ_INT(l.n, 0);
    CHECK(!sp_ip_list_match(&l, &ip));
    sp_ip_list_free(&l); /* freeing an empty list is fine */

    /* Many items, and a list whose array was allocated elsewhere. */
    for (unsigned i = 0; i < 1000; i++) {
        char text[32];
        snprintf(text, sizeof text, "10.%u.%u.0/24", i / 256, i % 256);
        REQUIRE(sp_ip_list_add(&l, text, NULL) == 0);
    }
    CHECK_EQ_INT(l.n, 1000);
    ip = ip_of("10.3.231.9"); /* item 999 */
    CHECK(sp_ip_list_match(&l, &ip));
    ip = ip_of("10.3.232.9");
    CHECK(!sp_ip_list_match(&l, &ip));
    sp_ip_list_free(&l);

    l.items = malloc(3 * sizeof *l.items);
    REQUIRE(l.items != NULL);
    l.n = 3;
    for (int k = 0; k < 3; k++)
        l.items[k] = pattern_of("1.1.1.1");
    REQUIRE(sp_ip_list_add(&l, "*", NULL) == 0);
    CHECK_EQ_INT(l.n, 4);
    ip = ip_of("2.2.2.2");
    CHECK(sp_ip_list_match(&l, &ip));
    sp_ip_list_free(&l);
}

TEST(policy_block_wins_then_allow)
{
    sp_ip_list allow = {0}, block = {0};
    sp_ip a = ip_of("10.1.2.3"), b = ip_of("10.9.9.9"), other = ip_of("192.0.2.1");
    CHECK(sp_ip_policy(&allow, &block, &a) == SP_IP_ADMITTED); /* no lists: everyone */
    REQUIRE(sp_ip_list_add(&allow, "10.0.0.0/8", NULL) == 0);
    REQUIRE(sp_ip_list_add(&block, "10.9.9.9", NULL) == 0);
    CHECK(sp_ip_policy(&allow, &block, &a) == SP_IP_ADMITTED);
    CHECK(sp_ip_policy(&allow, &block, &b) == SP_IP_BLOCKED); /* listed in both: block wins */
    CHECK(sp_ip_policy(&allow, &block, &other) == SP_IP_NOT_ALLOWED);
    sp_ip_list_free(&allow);
    CHECK(sp_ip_policy(&allow, &block, &other) == SP_IP_ADMITTED); /* only a block list */
    CHECK(sp_ip_policy(&allow, &block, &b) == SP_IP_BLOCKED);
    sp_ip_list_free(&block);
}

/* SmartProxy's IPv4 globs, matched against the dotted quad. */
TEST(text_globs)
{
    static const struct { const char *pattern, *ip; bool match; } cases[] = {
        {"192.168.*", "192.168.1.2", true},
        {"192.168.*", "192.169.1.2", false},
        {"10.?.?.1", "10.1.2.1", true},
        {"10.?.?.1", "10.12.2.1", false},
        {"10.0.0.{1,2,3}", "10.0.0.2", true},
        {"10.0.0.{1,2,3}", "10.0.0.4", false},
        {"10.0.0.{1,2,3}", "10.0.0.22", false},
        {"1*.0.0.1", "172.0.0.1", true},
        {"1*.0.0.1", "20.0.0.1", false},
        {"**", "8.8.8.8", true},
        {"192.168.*", "::ffff:192.168.0.9", true}, /* a v4-mapped peer is its IPv4 address */
        {"192.168.*", "2001:db8::1", false},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        sp_ip_pattern p;
        sp_ip ip;
        const char *why = NULL;
        if (sp_ip_pattern_parse(cases[i].pattern, &p, &why) != 0 || sp_ip_parse(cases[i].ip, &ip) != 0) {
            unit_fail_(__FILE__, __LINE__, "a glob or an address did not parse");
            fprintf(stderr, "    \"%s\": %s\n", cases[i].pattern, why ? why : "(address)");
            continue;
        }
        CHECK(p.glob[0] != 0);
        if (sp_ip_pattern_match(&p, &ip) != cases[i].match) {
            unit_fail_(__FILE__, __LINE__, "wrong glob match");
            fprintf(stderr, "    \"%s\" against %s\n", cases[i].pattern, cases[i].ip);
        }
    }
    sp_ip_pattern p;
    REQUIRE(sp_ip_pattern_parse("192.168.1.*", &p, NULL) == 0);
    CHECK(p.glob[0] == 0); /* whole '*' octets keep the value/mask form */
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(text_globs),
        UNIT(parse_v4_stores_mapped_form),
        UNIT(parse_v4_rejects),
        UNIT(parse_v6),
        UNIT(parse_v6_mapped_equals_v4),
        UNIT(parse_v6_rejects),
        UNIT(is_v4),
        UNIT(format_v4),
        UNIT(format_v6_rfc5952),
        UNIT(format_returns_length_and_truncates),
        UNIT(format_round_trips_every_zero_layout),
        UNIT(from_sockaddr),
        UNIT(pattern_exact_v4),
        UNIT(pattern_exact_v6_and_mapped),
        UNIT(pattern_cidr_v4),
        UNIT(pattern_cidr_v6),
        UNIT(pattern_cidr_every_prefix_length),
        UNIT(pattern_v4_glob),
        UNIT(pattern_any),
        UNIT(pattern_rejects_with_reason),
        UNIT(list),
        UNIT(policy_block_wins_then_allow),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
