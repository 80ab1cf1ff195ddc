/* The PROXY protocol, v1 and v2 (core/proto/proxy_protocol.h). */
#define _POSIX_C_SOURCE 200809L

#include "proto/proxy_protocol.h"

#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

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

static bool ip_is(const sp_ip *ip, const char *s)
{
    sp_ip want = ip_of(s);
    return memcmp(ip, &want, sizeof want) == 0;
}

static bool ip_is_zero(const sp_ip *ip)
{
    static const sp_ip zero;
    return memcmp(ip, &zero, sizeof zero) == 0;
}

static sp_pp_status parse(const void *d, size_t n, sp_proxy_header *h)
{
    const char *why = NULL;
    sp_pp_status st = sp_proxy_parse(d, n, h, &why);
    if (st == SP_PP_INVALID && why == NULL)
        unit_fail_(__FILE__, __LINE__, "INVALID without a reason");
    return st;
}

/* The reason the whole of d is INVALID, or a marker when it is not. */
static const char *reason(const void *d, size_t n)
{
    sp_proxy_header h;
    const char *why = NULL;
    sp_pp_status st = sp_proxy_parse(d, n, &h, &why);
    if (st == SP_PP_OK)
        return "(OK)";
    if (st == SP_PP_NEED_MORE)
        return "(NEED_MORE)";
    return why != NULL ? why : "(no reason given)";
}

static const char *reason_s(const char *s) { return reason(s, strlen(s)); }

/* Every proper prefix of a header that is OK must be NEED_MORE. */
static bool prefixes_need_more(const void *d, size_t n)
{
    sp_proxy_header h;
    for (size_t k = 0; k < n; k++) {
        if (sp_proxy_parse(d, k, &h, NULL) != SP_PP_NEED_MORE) {
            fprintf(stderr, "    prefix of %zu bytes (of %zu) is not NEED_MORE\n", k, n);
            return false;
        }
    }
    return true;
}

/* The shortest prefix of d that is INVALID; n + 1 when none is. */
static size_t invalid_from(const void *d, size_t n)
{
    sp_proxy_header h;
    for (size_t k = 0; k <= n; k++)
        if (sp_proxy_parse(d, k, &h, NULL) == SP_PP_INVALID)
            return k;
    return n + 1;
}

/* Parses a header followed by application data: OK, and only the header is taken. */
static bool parses_with_data(const void *hdr, size_t n, sp_proxy_header *h)
{
    uint8_t buf[8192];
    static const char data[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (n + sizeof data > sizeof buf)
        return false;
    memcpy(buf, hdr, n);
    memcpy(buf + n, data, sizeof data);
    return parse(buf, n + sizeof data, h) == SP_PP_OK && h->length == n;
}

/* ---- building v2 headers by hand --------------------------------------------------- */

typedef struct v2 {
    uint8_t b[8192];
    size_t n;
} v2;

static void put(v2 *h, const void *p, size_t n)
{
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void put_u16(v2 *h, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(h, b, 2);
}

static void v2_start(v2 *h, uint8_t ver_cmd, uint8_t fam)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    h->n = 0;
    put(h, sig, sizeof sig);
    put(h, &ver_cmd, 1);
    put(h, &fam, 1);
    put_u16(h, 0); /* v2_end fills it in */
}

static void put_tlv(v2 *h, uint8_t type, const void *v, size_t n)
{
    put(h, &type, 1);
    put_u16(h, (unsigned)n);
    put(h, v, n);
}

static void put_tlv_s(v2 *h, uint8_t type, const char *s)
{
    put_tlv(h, type, s, strlen(s));
}

/* Sets the length field to everything after the fixed 16 bytes. */
static void v2_end(v2 *h)
{
    h->b[14] = (uint8_t)((h->n - 16) >> 8);
    h->b[15] = (uint8_t)(h->n - 16);
}

/* Appends a CRC32C TLV and fills it in, as a sender does: over the final header with
 * the value zeroed. Call last. */
static void v2_add_crc(v2 *h)
{
    static const uint8_t zero[4];
    put_tlv(h, 0x03, zero, 4);
    v2_end(h);
    uint32_t c = sp_crc32c(0, h->b, h->n);
    uint8_t *v = h->b + h->n - 4;
    v[0] = (uint8_t)(c >> 24);
    v[1] = (uint8_t)(c >> 16);
    v[2] = (uint8_t)(c >> 8);
    v[3] = (uint8_t)c;
}

/* TCP over IPv4, 1.2.3.4:1000 -> 5.6.7.8:80, without TLVs yet. */
static void build_tcp4(v2 *h)
{
    static const uint8_t addr[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0x03, 0xe8, 0x00, 0x50};
    v2_start(h, 0x21, 0x11);
    put(h, addr, sizeof addr);
    v2_end(h);
}

/* ---- CRC32C ------------------------------------------------------------------------ */

TEST(crc32c_known_answers)
{
    CHECK_EQ_INT(sp_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(sp_crc32c(0, "", 0), 0);

    /* RFC 3720 (iSCSI), B.4. */
    uint8_t b[32];
    memset(b, 0, sizeof b);
    CHECK_EQ_INT(sp_crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    CHECK_EQ_INT(sp_crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    CHECK_EQ_INT(sp_crc32c(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    CHECK_EQ_INT(sp_crc32c(0, b, 32), 0x113FDB5Cu);
}

TEST(crc32c_continues)
{
    static const char s[] = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = sp_crc32c(0, s, n);
    for (size_t k = 0; k <= n; k++)
        CHECK_EQ_INT(sp_crc32c(sp_crc32c(0, s, k), s + k, n - k), whole);
}

/* ---- v1 ---------------------------------------------------------------------------- */

TEST(v1_spec_example)
{
    static const char in[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
                             "GET / HTTP/1.1\r\n"
                             "Host: 192.168.0.11\r\n"
                             "\r\n";
    sp_proxy_header h;
    REQUIRE(parse(in, strlen(in), &h) == SP_PP_OK);
    CHECK_EQ_INT(h.version, 1);
    CHECK(!h.local);
    CHECK_EQ_INT(h.family, AF_INET);
    CHECK(!h.datagram);
    CHECK(ip_is(&h.src, "192.168.0.1"));
    CHECK(ip_is(&h.dst, "192.168.0.11"));
    CHECK(sp_ip_is_v4(&h.src) && sp_ip_is_v4(&h.dst));
    CHECK_EQ_INT(h.src_port, 56324);
    CHECK_EQ_INT(h.dst_port, 443);
    CHECK_EQ_INT(h.length, strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
    CHECK_STR_EQ(in + h.length, "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    /* Nothing of v2 is set. */
    CHECK_EQ_INT(h.authority_len, 0);
    CHECK_EQ_INT(h.alpn_len, 0);
    CHECK_EQ_INT(h.unique_id_len, 0);
    CHECK(!h.crc_present && !h.ssl.present);
    CHECK_STR_EQ(h.unix_src, "");
}

/* The longest lines section 2.1 says a receiver must support. */
TEST(v1_spec_longest_lines)
{
    static const struct {
        const char *line;
        size_t len;
        bool local;
    } cases[] = {
        {"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56, false},
        {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", 104, false},
        {"PROXY UNKNOWN\r\n", 15, true},
        {"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", 107, true},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        sp_proxy_header h;
        CHECK_EQ_INT(strlen(cases[i].line), cases[i].len);
        REQUIRE(parse(cases[i].line, cases[i].len, &h) == SP_PP_OK);
        CHECK_EQ_INT(h.length, cases[i].len);
        CHECK(h.local == cases[i].local);
        CHECK(prefixes_need_more(cases[i].line, cases[i].len));
        CHECK(parses_with_data(cases[i].line, cases[i].len, &h));
    }
    sp_proxy_header h;
    REQUIRE(parse(cases[1].line, cases[1].len, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.family, AF_INET6);
    CHECK(ip_is(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK_EQ_INT(h.src_port, 65535);
}

TEST(v1_tcp6)
{
    static const char in[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    sp_proxy_header h;
    REQUIRE(parse(in, strlen(in), &h) == SP_PP_OK);
    CHECK_EQ_INT(h.family, AF_INET6);
    CHECK(!h.local);
    CHECK(ip_is(&h.src, "2001:db8::1"));
    CHECK(ip_is(&h.dst, "::1"));
    CHECK_EQ_INT(h.src_port, 65535);
    CHECK_EQ_INT(h.dst_port, 0);
    CHECK_EQ_INT(h.length, strlen(in));

    /* Upper case and uncompressed groups are IPv6 text too. */
    static const char upper[] =
        "PROXY TCP6 2001:DB8:0:0:0:0:0:00FF 0:0:0:0:0:0:0:0 1 2\r\n";
    REQUIRE(parse(upper, strlen(upper), &h) == SP_PP_OK);
    CHECK(ip_is(&h.src, "2001:db8::ff"));
    CHECK(ip_is(&h.dst, "::"));
}

/* Senders using inet_ntop (HAProxy among them) write v4-mapped peers as
 * "::ffff:a.b.c.d"; the family stays TCP6. */
TEST(v1_tcp6_v4_mapped)
{
    static const char in[] = "PROXY TCP6 ::ffff:1.2.3.4 ::ffff:102:305 1 2\r\n";
    sp_proxy_header h;
    REQUIRE(parse(in, strlen(in), &h) == SP_PP_OK);
    CHECK_EQ_INT(h.family, AF_INET6);
    CHECK(ip_is(&h.src, "1.2.3.4"));
    CHECK(ip_is(&h.dst, "1.2.3.5"));
    CHECK(prefixes_need_more(in, strlen(in)));
}

TEST(v1_unknown_is_local)
{
    static const char *const lines[] = {
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWN whatever the sender likes, \x01\x7f\xff\t \r\n",
        "PROXY UNKNOWN \r\n",
    };
    for (size_t i = 0; i < UNIT_COUNT(lines); i++) {
        sp_proxy_header h;
        size_t n = strlen(lines[i]);
        REQUIRE(parse(lines[i], n, &h) == SP_PP_OK);
        CHECK_EQ_INT(h.version, 1);
        CHECK(h.local);
        CHECK_EQ_INT(h.family, AF_UNSPEC);
        CHECK(ip_is_zero(&h.src) && ip_is_zero(&h.dst));
        CHECK_EQ_INT(h.src_port, 0);
        CHECK_EQ_INT(h.length, n);
        CHECK(prefixes_need_more(lines[i], n));
        CHECK(parses_with_data(lines[i], n, &h));
    }
}

/* "PROXY UNKNOWN " padded with 'x' to a line of n bytes, CRLF included. */
static size_t unknown_line(char *buf, size_t n)
{
    memset(buf, 'x', n);
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + n - 2, "\r\n", 2);
    return n;
}

TEST(v1_line_length_limit)
{
    char buf[200];
    sp_proxy_header h;

    unknown_line(buf, 107);
    REQUIRE(parse(buf, 107, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, 107);

    unknown_line(buf, 108);
    CHECK_STR_EQ(reason(buf, 108), "v1 line too long");
    /* Decided once the CR can no longer come in time: at byte 106, not at the CRLF. */
    CHECK_EQ_INT(invalid_from(buf, 108), 106);

    /* A line without CRLF, with plenty of data after it. */
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "PROXY UNKNOWN ", 14);
    CHECK_STR_EQ(reason(buf, sizeof buf), "v1 line too long");

    /* TCP6 with embedded dotted quads can exceed the limit while every field is good. */
    static const char dotted[] =
        "PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
        "0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n";
    CHECK_STR_EQ(reason_s(dotted), "v1 line too long");
    /* ... and it is known before the ports: the shortest end would be 108 bytes. */
    CHECK(invalid_from(dotted, strlen(dotted)) < strlen(dotted) - 10);
}

TEST(v1_rejects)
{
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", "not a PROXY header"},
        {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY header"},
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY header"},
        {"PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 signature"},
        {"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 signature"},
        {"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 signature"},
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 protocol"},
        {"PROXY UNKNOWNX\r\n", "bad v1 protocol"},
        {"PROXY TCP4\r\n", "missing v1 field"},
        {"PROXY TCP4 1.2.3.4\r\n", "missing v1 field"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "missing v1 field"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "bad v1 line end"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "bad v1 line end"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad v1 line end"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "bad v1 line end"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "bad v1 line end"},
        {"PROXY UNKNOWN\n", "bad v1 line end"},
        {"PROXY UNKNOWN foo\nbar\r\n", "bad v1 line end"},
        {"PROXY UNKNOWN foo\rbar\r\n", "bad v1 line end"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "bad address"},
        {"PROXY TCP4 ::1 ::1 1 2\r\n", "bad address"},
        {"PROXY TCP4 ::ffff:1.2.3.4 5.6.7.8 1 2\r\n", "bad address"},
        {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "bad address"},
        {"PROXY TCP6 ::1 5.6.7.8 1 2\r\n", "bad address"},
        {"PROXY TCP4 192.168.01.1 1.2.3.4 1 2\r\n", "bad address"},
        {"PROXY TCP4 256.1.1.1 1.2.3.4 1 2\r\n", "bad address"},
        {"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "bad address"},
        {"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", "bad address"},
        {"PROXY TCP4 1.2.3.4 1.2.3.4x 1 2\r\n", "bad address"},
        {"PROXY TCP4 0x1.2.3.4 1.2.3.4 1 2\r\n", "bad address"},
        {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad address"},
        {"PROXY TCP6 1::2::3 ::1 1 2\r\n", "bad address"},
        {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "bad address"},
        {"PROXY TCP6 12345::1 ::1 1 2\r\n", "bad address"},
        {"PROXY TCP6 [::1] ::1 1 2\r\n", "bad address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port out of range"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "port out of range"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "port out of range"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "bad port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "bad port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "bad port"},
    };
    /* A NUL must not cut a field short ("::f\0junk" is not "::f"). */
    static const char nul4[] = "PROXY TCP4 1.2.3.4\0junk 5.6.7.8 1 2\r\n";
    static const char nul6[] = "PROXY TCP6 ::1 ::f\0\0junk 1 2\r\n";
    static const char nul_port[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1\0 2\r\n";
    CHECK_STR_EQ(reason(nul4, sizeof nul4 - 1), "bad address");
    CHECK_STR_EQ(reason(nul6, sizeof nul6 - 1), "bad address");
    CHECK_STR_EQ(reason(nul_port, sizeof nul_port - 1), "bad port");
    CHECK_EQ_INT(invalid_from(nul6, sizeof nul6 - 1), strlen("PROXY TCP6 ::1 ::f") + 1);

    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        const char *got = reason_s(cases[i].in);
        if (strcmp(got, cases[i].why) != 0) {
            unit_fail_(__FILE__, __LINE__, "wrong verdict");
            fprintf(stderr, "    %zu: got \"%s\", expected \"%s\"\n", i, got, cases[i].why);
        }
    }
}

/* INVALID comes at the first byte that rules out every valid header, not at the CRLF:
 * each string below is NEED_MORE up to its last byte, which makes it INVALID. */
TEST(v1_invalid_as_early_as_possible)
{
    static const char *const cases[] = {
        "G",
        "\x16",
        "PROXX",
        "PROXY_",
        "PROXY TCP5",
        "PROXY UNKNOWNX",
        "PROXY TCP4 1.2.3.400",
        "PROXY TCP4 01",
        "PROXY TCP4 1..",
        "PROXY TCP4 1.2.3.4.",
        "PROXY TCP4 1:",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 655350",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx",
        "PROXY TCP6 1:2:3:4:5:6:7:8:",
        "PROXY TCP6 ::1::",
        "PROXY TCP6 :1",
        "PROXY TCP6 1.",
        "PROXY TCP6 ::ffff:1.2.3.4.",
        "PROXY TCP6 ::ffff:1.2.3.4:",
        "PROXY TCP6 g",
        "PROXY UNKNOWN abc\n",
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        size_t n = strlen(cases[i]);
        size_t got = invalid_from(cases[i], n);
        if (got != n) {
            unit_fail_(__FILE__, __LINE__, "INVALID at the wrong byte");
            fprintf(stderr, "    \"%s\": INVALID from %zu bytes, expected %zu\n", cases[i],
                    got, n);
        }
    }
}

TEST(v1_header_followed_by_data)
{
    /* Even another PROXY line is data once the first header has ended. */
    static const char two[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
                              "PROXY TCP4 9.9.9.9 9.9.9.9 3 4\r\n";
    sp_proxy_header h;
    REQUIRE(parse(two, strlen(two), &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, strlen("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
    CHECK(ip_is(&h.src, "1.2.3.4"));
    CHECK_EQ_INT(h.src_port, 1);

    /* Binary data right after the CRLF. */
    static const uint8_t bin[] = "PROXY UNKNOWN\r\n\0\r\n\xff";
    REQUIRE(parse(bin, sizeof bin - 1, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, 15);
}

/* Captured from HAProxy 2.6 "send-proxy": an IPv4 and an IPv6 client. */
TEST(v1_from_haproxy)
{
    static const char v4[] = "PROXY TCP4 127.0.0.1 127.0.0.1 49290 18001\r\n"
                             "GET / HTTP/1.0\r\n\r\n";
    static const char v6[] = "PROXY TCP6 ::1 ::1 46296 18004\r\nGET / HTTP/1.0\r\n\r\n";
    sp_proxy_header h;
    REQUIRE(parse(v4, strlen(v4), &h) == SP_PP_OK);
    CHECK(ip_is(&h.src, "127.0.0.1") && ip_is(&h.dst, "127.0.0.1"));
    CHECK_EQ_INT(h.src_port, 49290);
    CHECK_EQ_INT(h.dst_port, 18001);
    CHECK_EQ_INT(h.length, 44);
    REQUIRE(parse(v6, strlen(v6), &h) == SP_PP_OK);
    CHECK_EQ_INT(h.family, AF_INET6);
    CHECK(ip_is(&h.src, "::1") && ip_is(&h.dst, "::1"));
    CHECK_EQ_INT(h.src_port, 46296);
    CHECK_EQ_INT(h.length, 32);
}

/* ---- v2 ---------------------------------------------------------------------------- */

TEST(v2_tcp4)
{
    v2 h2;
    build_tcp4(&h2);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.version, 2);
    CHECK(!h.local);
    CHECK_EQ_INT(h.family, AF_INET);
    CHECK(!h.datagram);
    CHECK(ip_is(&h.src, "1.2.3.4"));
    CHECK(ip_is(&h.dst, "5.6.7.8"));
    CHECK_EQ_INT(h.src_port, 1000);
    CHECK_EQ_INT(h.dst_port, 80);
    CHECK_EQ_INT(h.length, 28);
    CHECK(!h.crc_present && !h.ssl.present);
    CHECK_EQ_INT(h.authority_len + h.alpn_len + h.unique_id_len, 0);
    CHECK(prefixes_need_more(h2.b, h2.n));
    CHECK(parses_with_data(h2.b, h2.n, &h));
}

TEST(v2_tcp6_udp6)
{
    uint8_t addr[36];
    sp_ip src = ip_of("2001:db8::1"), dst = ip_of("fe80::1:2");
    memcpy(addr, src.b, 16);
    memcpy(addr + 16, dst.b, 16);
    memcpy(addr + 32, "\xff\xff\x01\xbb", 4);
    for (int udp = 0; udp <= 1; udp++) {
        v2 h2;
        v2_start(&h2, 0x21, udp ? 0x22 : 0x21);
        put(&h2, addr, sizeof addr);
        v2_end(&h2);
        sp_proxy_header h;
        REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
        CHECK_EQ_INT(h.family, AF_INET6);
        CHECK(h.datagram == (udp == 1));
        CHECK(!h.local);
        CHECK(ip_is(&h.src, "2001:db8::1"));
        CHECK(ip_is(&h.dst, "fe80::1:2"));
        CHECK_EQ_INT(h.src_port, 65535);
        CHECK_EQ_INT(h.dst_port, 443);
        CHECK_EQ_INT(h.length, 52);
        CHECK(prefixes_need_more(h2.b, h2.n));
    }
}

TEST(v2_udp4)
{
    static const uint8_t addr[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x00, 0x35, 0x00, 0x35};
    v2 h2;
    v2_start(&h2, 0x21, 0x12);
    put(&h2, addr, sizeof addr);
    v2_end(&h2);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.family, AF_INET);
    CHECK(h.datagram);
    CHECK(ip_is(&h.src, "10.0.0.1"));
    CHECK(ip_is(&h.dst, "10.0.0.2"));
    CHECK_EQ_INT(h.src_port, 53);
    CHECK_EQ_INT(h.dst_port, 53);
}

TEST(v2_unix)
{
    uint8_t addr[216];
    memset(addr, 0, sizeof addr);
    memcpy(addr, "/run/client.sock", 16);
    memset(addr + 108, 'p', 108); /* a path filling the field, without NUL */
    for (int dgram = 0; dgram <= 1; dgram++) {
        v2 h2;
        v2_start(&h2, 0x21, dgram ? 0x32 : 0x31);
        put(&h2, addr, sizeof addr);
        put_tlv_s(&h2, 0x02, "example.com");
        v2_end(&h2);
        sp_proxy_header h;
        REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
        CHECK_EQ_INT(h.family, AF_UNIX);
        CHECK(!h.local);
        CHECK(h.datagram == (dgram == 1));
        CHECK_STR_EQ(h.unix_src, "/run/client.sock");
        CHECK_EQ_INT(strlen(h.unix_dst), 108);
        CHECK(h.unix_dst[0] == 'p' && h.unix_dst[107] == 'p');
        CHECK(ip_is_zero(&h.src) && ip_is_zero(&h.dst));
        CHECK_STR_EQ(h.authority, "example.com");
        CHECK_EQ_INT(h.length, 16 + 216 + 14);
        CHECK(prefixes_need_more(h2.b, h2.n));
    }

    /* An abstract address (leading NUL) reads as "". */
    memset(addr, 0, sizeof addr);
    memcpy(addr + 1, "abstract", 8);
    v2 h2;
    v2_start(&h2, 0x21, 0x31);
    put(&h2, addr, sizeof addr);
    v2_end(&h2);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_STR_EQ(h.unix_src, "");
    CHECK_STR_EQ(h.unix_dst, "");
}

TEST(v2_local)
{
    /* What senders should send for health checks: LOCAL, AF_UNSPEC, no addresses. */
    v2 h2;
    v2_start(&h2, 0x20, 0x00);
    v2_end(&h2);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.version, 2);
    CHECK(h.local);
    CHECK_EQ_INT(h.family, AF_UNSPEC);
    CHECK_EQ_INT(h.length, 16);
    CHECK(prefixes_need_more(h2.b, h2.n));
    CHECK(parses_with_data(h2.b, h2.n, &h));

    /* LOCAL with an address block: skipped, not used; TLVs after it still count. */
    static const uint8_t addr[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    v2_start(&h2, 0x20, 0x11);
    put(&h2, addr, sizeof addr);
    put_tlv_s(&h2, 0x02, "health.example");
    v2_add_crc(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK(h.local);
    CHECK_EQ_INT(h.family, AF_UNSPEC);
    CHECK(ip_is_zero(&h.src));
    CHECK_EQ_INT(h.src_port, 0);
    CHECK_STR_EQ(h.authority, "health.example");
    CHECK(h.crc_present);
    CHECK_EQ_INT(h.length, h2.n);

    /* LOCAL with TLVs right after the fixed part (HAProxy's health checks). */
    v2_start(&h2, 0x20, 0x00);
    put_tlv_s(&h2, 0x05, "id");
    v2_end(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK(h.local);
    CHECK_EQ_INT(h.unique_id_len, 2);
}

/* PROXY for an unspecified family or transport: the addresses are not to be used. */
TEST(v2_proxy_unspec_is_local)
{
    static const uint8_t addr[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    static const uint8_t fams[] = {0x00, 0x01, 0x02, 0x10, 0x20, 0x30};
    for (size_t i = 0; i < sizeof fams; i++) {
        v2 h2;
        v2_start(&h2, 0x21, fams[i]);
        size_t block = (size_t[]){0, 12, 36, 216}[fams[i] >> 4];
        for (size_t k = 0; k < block; k++)
            put(&h2, &addr[k % 12], 1);
        v2_end(&h2);
        sp_proxy_header h;
        REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
        CHECK(h.local);
        CHECK_EQ_INT(h.family, AF_UNSPEC);
        CHECK(!h.datagram);
        CHECK(ip_is_zero(&h.src));
        CHECK_EQ_INT(h.length, 16 + block);
    }
}

TEST(v2_all_tlvs)
{
    uint8_t id[128];
    for (size_t i = 0; i < sizeof id; i++)
        id[i] = (uint8_t)(i * 7);
    v2 ssl;
    ssl.n = 0;
    put(&ssl, "\x07\x00\x00\x00\x00", 5); /* SSL | CERT_CONN | CERT_SESS; verified */
    put_tlv_s(&ssl, 0x21, "TLSv1.3");
    put_tlv_s(&ssl, 0x22, "client.example");
    put_tlv_s(&ssl, 0x23, "TLS_AES_128_GCM_SHA256");
    put_tlv_s(&ssl, 0x24, "RSA-SHA256");
    put_tlv_s(&ssl, 0x25, "RSA2048");
    put_tlv_s(&ssl, 0x2f, "an unknown sub-TLV");

    v2 h2;
    build_tcp4(&h2);
    put_tlv(&h2, 0x01, "h2", 2);
    put_tlv_s(&h2, 0x04, "noop");
    put_tlv_s(&h2, 0x04, ""); /* NOOP may repeat, and be empty */
    put_tlv_s(&h2, 0x02, "www.example.com");
    put_tlv(&h2, 0x05, id, sizeof id);
    put_tlv_s(&h2, 0x30, "netns");
    put_tlv_s(&h2, 0xe0, "custom");
    put_tlv_s(&h2, 0xf7, "experiment");
    put_tlv_s(&h2, 0xff, "future");
    put_tlv(&h2, 0x20, ssl.b, ssl.n);
    v2_add_crc(&h2);

    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, h2.n);
    CHECK(ip_is(&h.src, "1.2.3.4"));
    CHECK_EQ_INT(h.alpn_len, 2);
    CHECK_STR_EQ(h.alpn, "h2");
    CHECK_EQ_INT(h.authority_len, 15);
    CHECK_STR_EQ(h.authority, "www.example.com");
    CHECK_EQ_INT(h.unique_id_len, 128);
    CHECK(memcmp(h.unique_id, id, sizeof id) == 0);
    CHECK(h.crc_present);
    CHECK(h.ssl.present);
    CHECK_EQ_INT(h.ssl.client,
                 SP_PP_CLIENT_SSL | SP_PP_CLIENT_CERT_CONN | SP_PP_CLIENT_CERT_SESS);
    CHECK_EQ_INT(h.ssl.verify, 0);
    CHECK_STR_EQ(h.ssl.version, "TLSv1.3");
    CHECK_STR_EQ(h.ssl.cn, "client.example");
    CHECK_STR_EQ(h.ssl.cipher, "TLS_AES_128_GCM_SHA256");
    CHECK_STR_EQ(h.ssl.sig_alg, "RSA-SHA256");
    CHECK_STR_EQ(h.ssl.key_alg, "RSA2048");
    CHECK(prefixes_need_more(h2.b, h2.n));
    CHECK(parses_with_data(h2.b, h2.n, &h));
}

TEST(v2_tlv_edges)
{
    sp_proxy_header h;
    v2 h2;

    /* The longest accepted values. */
    char s255[256];
    memset(s255, 'a', 255);
    s255[255] = '\0';
    build_tcp4(&h2);
    put_tlv_s(&h2, 0x02, s255);
    put_tlv(&h2, 0x01, s255, 255);
    v2_end(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.authority_len, 255);
    CHECK_EQ_INT(strlen(h.authority), 255);
    CHECK_EQ_INT(h.alpn_len, 255);

    /* ALPN is bytes: a NUL inside is kept. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x01, "a\0b", 3);
    v2_end(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.alpn_len, 3);
    CHECK(memcmp(h.alpn, "a\0b", 4) == 0);

    /* SSL with only the fixed part, verify failed (non-zero, big-endian). */
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x12\x34\x56\x78", 5);
    v2_end(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK(h.ssl.present);
    CHECK_EQ_INT(h.ssl.client, SP_PP_CLIENT_SSL);
    CHECK_EQ_INT(h.ssl.verify, 0x12345678);
    CHECK_STR_EQ(h.ssl.cn, "");

    /* Empty values. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x02, "", 0);
    put_tlv(&h2, 0x05, "", 0);
    v2_end(&h2);
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.authority_len, 0);
    CHECK_EQ_INT(h.unique_id_len, 0);
}

TEST(v2_crc32c)
{
    v2 h2;
    build_tcp4(&h2);
    put_tlv_s(&h2, 0x02, "example.com");
    v2_add_crc(&h2);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK(h.crc_present);

    /* Any changed byte breaks it: in the fixed part, an address, a TLV or the CRC. */
    static const size_t flips[] = {13, 16, 27, 31, 0};
    for (size_t i = 0; i < UNIT_COUNT(flips); i++) {
        v2 bad = h2;
        size_t at = flips[i] ? flips[i] : bad.n - 1;
        if (at == 13)
            bad.b[at] = 0x12; /* UDP instead of TCP: still a valid family byte */
        else
            bad.b[at] ^= 0x01;
        CHECK_STR_EQ(reason(bad.b, bad.n), "CRC32C mismatch");
    }

    /* CRC32C before other TLVs works the same. */
    static const uint8_t zero[4];
    build_tcp4(&h2);
    put_tlv(&h2, 0x03, zero, 4);
    put_tlv_s(&h2, 0x02, "example.com");
    v2_end(&h2);
    uint32_t c = sp_crc32c(0, h2.b, h2.n);
    uint8_t *v = h2.b + 28 + 3;
    v[0] = (uint8_t)(c >> 24), v[1] = (uint8_t)(c >> 16), v[2] = (uint8_t)(c >> 8);
    v[3] = (uint8_t)c;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK(h.crc_present);

    /* A CRC32C of all zeros is checked like any other. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x03, zero, 4);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "CRC32C mismatch");
}

/* Captured from HAProxy 2.6 "send-proxy-v2 proxy-v2-options crc32c,unique-id": real
 * CRC32C values, so our checksum agrees with a real sender's. */
TEST(v2_from_haproxy)
{
    static const uint8_t v4[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
        0x21, 0x11, 0x00, 0x16, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
        0x8f, 0xaa, 0x46, 0x53, 0x03, 0x00, 0x04, 0xd0, 0xf0, 0x48, 0x67, 0x05,
        0x00, 0x00, 'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1',
        '.', '0', '\r', '\n', '\r', '\n',
    };
    static const uint8_t v6[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
        0x21, 0x21, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x8d, 0x6a, 0x46, 0x55, 0x03, 0x00, 0x04, 0x97, 0x23, 0x5d, 0x1c,
    };
    sp_proxy_header h;
    REQUIRE(parse(v4, sizeof v4, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, 38);
    CHECK_EQ_INT(h.family, AF_INET);
    CHECK(ip_is(&h.src, "127.0.0.1") && ip_is(&h.dst, "127.0.0.1"));
    CHECK_EQ_INT(h.src_port, 36778);
    CHECK_EQ_INT(h.dst_port, 18003);
    CHECK(h.crc_present);
    CHECK_EQ_INT(h.unique_id_len, 0);
    CHECK(prefixes_need_more(v4, 38));

    REQUIRE(parse(v6, sizeof v6, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, 59);
    CHECK_EQ_INT(h.family, AF_INET6);
    CHECK(ip_is(&h.src, "::1") && ip_is(&h.dst, "::1"));
    CHECK_EQ_INT(h.src_port, 36202);
    CHECK_EQ_INT(h.dst_port, 18005);
    CHECK(h.crc_present);

    uint8_t bad[sizeof v6];
    memcpy(bad, v6, sizeof v6);
    bad[49] ^= 1; /* the source port */
    CHECK_STR_EQ(reason(bad, sizeof bad), "CRC32C mismatch");
}

TEST(v2_rejects)
{
    static const uint8_t addr4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    v2 h2;

    /* The fixed part. */
    build_tcp4(&h2);
    h2.b[5] = 0x0c;
    CHECK_STR_EQ(reason(h2.b, h2.n), "bad v2 signature");
    static const uint8_t ver_cmd[][2] = {
        {0x11, 0}, {0x31, 0}, {0x01, 0}, {0xf1, 0}, {0x22, 1}, {0x2f, 1}, {0x12, 0},
    };
    for (size_t i = 0; i < UNIT_COUNT(ver_cmd); i++) {
        build_tcp4(&h2);
        h2.b[12] = ver_cmd[i][0];
        CHECK_STR_EQ(reason(h2.b, h2.n),
                     ver_cmd[i][1] ? "unknown command" : "unsupported version");
    }
    static const uint8_t bad_fams[] = {0x41, 0x51, 0xf1, 0x40};
    for (size_t i = 0; i < sizeof bad_fams; i++) {
        build_tcp4(&h2);
        h2.b[13] = bad_fams[i];
        CHECK_STR_EQ(reason(h2.b, h2.n), "bad address family");
    }
    static const uint8_t bad_trans[] = {0x13, 0x1f, 0x03, 0x23};
    for (size_t i = 0; i < sizeof bad_trans; i++) {
        build_tcp4(&h2);
        h2.b[13] = bad_trans[i];
        CHECK_STR_EQ(reason(h2.b, h2.n), "bad transport protocol");
    }
    /* LOCAL does not excuse an unassigned family. */
    v2_start(&h2, 0x20, 0x40);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "bad address family");

    /* The address block must fit. */
    static const struct {
        uint8_t fam;
        size_t len;
    } short_blocks[] = {
        {0x11, 11}, {0x12, 0}, {0x21, 12}, {0x22, 35}, {0x31, 215}, {0x32, 36},
    };
    for (size_t i = 0; i < UNIT_COUNT(short_blocks); i++) {
        v2_start(&h2, 0x21, short_blocks[i].fam);
        memset(h2.b + h2.n, 0, short_blocks[i].len);
        h2.n += short_blocks[i].len;
        v2_end(&h2);
        CHECK_STR_EQ(reason(h2.b, h2.n), "address block overruns header");
    }
    v2_start(&h2, 0x20, 0x21); /* LOCAL too: the block is skipped, so it must be there */
    put(&h2, addr4, sizeof addr4);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "address block overruns header");

    /* TLV framing. */
    build_tcp4(&h2);
    put(&h2, "\x04\x00", 2); /* 2 bytes left: not even a TLV head */
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");
    build_tcp4(&h2);
    put(&h2, "\x04", 1);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");
    build_tcp4(&h2);
    put(&h2, "\x04\x00\x05" "abcd", 7); /* one byte short */
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");
    build_tcp4(&h2);
    put(&h2, "\xe0\xff\xff", 3);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");

    /* Value sizes. */
    uint8_t big[300];
    memset(big, 'a', sizeof big);
    build_tcp4(&h2);
    put_tlv(&h2, 0x05, big, 129);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "unique ID too long");
    build_tcp4(&h2);
    put_tlv(&h2, 0x01, big, 256);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "ALPN too long");
    build_tcp4(&h2);
    put_tlv(&h2, 0x02, big, 256);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "authority too long");
    build_tcp4(&h2);
    put_tlv(&h2, 0x02, "evil.com\0.example.com", 21);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "NUL in TLV string");
    static const size_t crc_lens[] = {0, 3, 5, 8};
    for (size_t i = 0; i < UNIT_COUNT(crc_lens); i++) {
        build_tcp4(&h2);
        put_tlv(&h2, 0x03, big, crc_lens[i]);
        v2_end(&h2);
        CHECK_STR_EQ(reason(h2.b, h2.n), "bad CRC32C length");
    }

    /* Known types at most once. */
    static const uint8_t once[] = {0x01, 0x02, 0x05, 0x20};
    for (size_t i = 0; i < sizeof once; i++) {
        build_tcp4(&h2);
        put_tlv(&h2, once[i], "abcde", 5);
        put_tlv(&h2, once[i], "abcde", 5);
        v2_end(&h2);
        CHECK_STR_EQ(reason(h2.b, h2.n), "duplicate TLV");
    }
    build_tcp4(&h2);
    put_tlv(&h2, 0x03, "\0\0\0\0", 4);
    put_tlv(&h2, 0x03, "\0\0\0\0", 4);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "duplicate TLV");

    /* SSL. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x00\x00\x00", 4);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "SSL TLV too short");
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x00\x00\x00\x00\x22\x00\x05" "abcd", 12);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x00\x00\x00\x00\x22\x00", 7);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "TLV overruns header");
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x00\x00\x00\x00\x22\x00\x01" "a" "\x22\x00\x01" "b", 13);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "duplicate TLV");
    build_tcp4(&h2);
    put_tlv(&h2, 0x20, "\x01\x00\x00\x00\x00\x21\x00\x03" "a\0b", 11);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "NUL in TLV string");
    static const struct {
        uint8_t type;
        size_t max;
    } subs[] = {{0x21, 31}, {0x22, 255}, {0x23, 127}, {0x24, 63}, {0x25, 63}};
    for (size_t i = 0; i < UNIT_COUNT(subs); i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            v2 ssl;
            ssl.n = 0;
            put(&ssl, "\x01\x00\x00\x00\x00", 5);
            put_tlv(&ssl, subs[i].type, big, subs[i].max + extra);
            build_tcp4(&h2);
            put_tlv(&h2, 0x20, ssl.b, ssl.n);
            v2_end(&h2);
            CHECK_STR_EQ(reason(h2.b, h2.n), extra ? "SSL string too long" : "(OK)");
        }
    }
}

TEST(v2_size_limit)
{
    /* Exactly SP_PP_V2_MAX_TLV bytes after the fixed part: accepted. */
    static v2 h2;
    build_tcp4(&h2);
    size_t pad = SP_PP_V2_MAX_TLV - 12 - 3;
    uint8_t zeros[SP_PP_V2_MAX_TLV];
    memset(zeros, 0, sizeof zeros);
    put_tlv(&h2, 0x04, zeros, pad);
    v2_end(&h2);
    REQUIRE(h2.n == 16 + SP_PP_V2_MAX_TLV);
    sp_proxy_header h;
    REQUIRE(parse(h2.b, h2.n, &h) == SP_PP_OK);
    CHECK_EQ_INT(h.length, 16 + SP_PP_V2_MAX_TLV);
    CHECK(prefixes_need_more(h2.b, h2.n));

    /* One more: refused as soon as the length field is in. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x04, zeros, pad + 1);
    v2_end(&h2);
    CHECK_STR_EQ(reason(h2.b, h2.n), "v2 header too large");
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 16);
    h2.b[14] = 0xff, h2.b[15] = 0xff;
    CHECK_STR_EQ(reason(h2.b, 16), "v2 header too large");
}

/* Each v2 error is decided by the first byte that shows it. */
TEST(v2_invalid_as_early_as_possible)
{
    v2 h2;
    build_tcp4(&h2);
    h2.b[7] = 'q'; /* signature */
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 8);
    build_tcp4(&h2);
    h2.b[12] = 0x11; /* version */
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 13);
    build_tcp4(&h2);
    h2.b[12] = 0x23; /* command */
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 13);
    build_tcp4(&h2);
    h2.b[13] = 0x51; /* family */
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 14);
    build_tcp4(&h2);
    h2.b[15] = 11; /* length shorter than the address block */
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 16);

    /* A TLV overrun is known from its head, long before the end of the header. */
    build_tcp4(&h2);
    put(&h2, "\x04\x01\x00", 3);
    memset(h2.b + h2.n, 0, 200);
    h2.n += 200;
    v2_end(&h2);
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 31);
    /* So is a value too long for its type. */
    build_tcp4(&h2);
    uint8_t big[200];
    memset(big, 'a', sizeof big);
    put_tlv(&h2, 0x05, big, 129);
    v2_end(&h2);
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 31);
    /* A NUL in a string needs the value; a CRC mismatch needs the whole header. */
    build_tcp4(&h2);
    put_tlv(&h2, 0x02, "a\0b", 3);
    put_tlv(&h2, 0x04, big, 10);
    v2_end(&h2);
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), 34);
    build_tcp4(&h2);
    put_tlv(&h2, 0x03, "\0\0\0\0", 4);
    v2_end(&h2);
    CHECK_EQ_INT(invalid_from(h2.b, h2.n), h2.n);
}

/* ---- writers ----------------------------------------------------------------------- */

TEST(write_v1_text)
{
    static const struct {
        const char *src, *dst;
        uint16_t sport, dport;
        const char *line;
    } cases[] = {
        {"1.2.3.4", "5.6.7.8", 1, 65535, "PROXY TCP4 1.2.3.4 5.6.7.8 1 65535\r\n"},
        {"0.0.0.0", "255.255.255.255", 0, 0, "PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n"},
        {"2001:db8::1", "::1", 443, 80, "PROXY TCP6 2001:db8::1 ::1 443 80\r\n"},
        {"1.2.3.4", "2001:db8::1", 1, 2, "PROXY TCP6 ::ffff:102:304 2001:db8::1 1 2\r\n"},
        {"::", "10.0.0.1", 1, 2, "PROXY TCP6 :: ::ffff:a00:1 1 2\r\n"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char out[SP_PP_V1_MAX + 1];
        sp_ip src = ip_of(cases[i].src), dst = ip_of(cases[i].dst);
        size_t n = sp_proxy_write_v1(out, sizeof out, &src, cases[i].sport, &dst,
                                     cases[i].dport);
        CHECK_STR_EQ(out, cases[i].line);
        CHECK_EQ_INT(n, strlen(cases[i].line));
    }
    char out[SP_PP_V1_MAX + 1];
    sp_ip ip = ip_of("1.2.3.4");
    CHECK_EQ_INT(sp_proxy_write_v1(out, sizeof out, NULL, 0, NULL, 0), 15);
    CHECK_STR_EQ(out, "PROXY UNKNOWN\r\n");
    CHECK_EQ_INT(sp_proxy_write_v1(out, sizeof out, &ip, 1, NULL, 2), 15);
}

TEST(write_v1_capacity)
{
    sp_ip a = ip_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    char out[SP_PP_V1_MAX + 1];
    size_t n = sp_proxy_write_v1(out, sizeof out, &a, 65535, &a, 65535);
    CHECK_EQ_INT(n, 104); /* the longest line we write */
    for (size_t cap = 0; cap <= n; cap++) {
        char small[SP_PP_V1_MAX + 1];
        memset(small, '#', sizeof small);
        CHECK_EQ_INT(sp_proxy_write_v1(small, cap, &a, 65535, &a, 65535), 0);
        CHECK(small[0] == '#'); /* nothing written */
    }
    CHECK_EQ_INT(sp_proxy_write_v1(out, n + 1, &a, 65535, &a, 65535), n);
}

TEST(v1_round_trip)
{
    static const char *const addrs[] = {
        "0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "::1", "2001:db8::ab:cd",
        "fe80::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:0:0", "1::",
        "0:0:1::", "::ffff:1:2:3",
    };
    static const uint16_t ports[] = {0, 1, 80, 9999, 65535};
    for (size_t i = 0; i < UNIT_COUNT(addrs); i++) {
        for (size_t j = 0; j < UNIT_COUNT(addrs); j++) {
            sp_ip src = ip_of(addrs[i]), dst = ip_of(addrs[j]);
            uint16_t sport = ports[(i + j) % 5], dport = ports[(i * 3 + j) % 5];
            char out[SP_PP_V1_MAX + 1];
            size_t n = sp_proxy_write_v1(out, sizeof out, &src, sport, &dst, dport);
            REQUIRE(n > 0);
            sp_proxy_header h;
            REQUIRE(parse(out, n, &h) == SP_PP_OK);
            CHECK_EQ_INT(h.length, n);
            CHECK(memcmp(&h.src, &src, sizeof src) == 0);
            CHECK(memcmp(&h.dst, &dst, sizeof dst) == 0);
            CHECK_EQ_INT(h.src_port, sport);
            CHECK_EQ_INT(h.dst_port, dport);
            bool v4 = sp_ip_is_v4(&src) && sp_ip_is_v4(&dst);
            CHECK_EQ_INT(h.family, v4 ? AF_INET : AF_INET6);
            CHECK(!h.local);
        }
    }
    char out[SP_PP_V1_MAX + 1];
    size_t n = sp_proxy_write_v1(out, sizeof out, NULL, 0, NULL, 0);
    sp_proxy_header h;
    REQUIRE(parse(out, n, &h) == SP_PP_OK);
    CHECK(h.local);
}

TEST(write_v2_bytes)
{
    static const uint8_t tcp4[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
        0x21, 0x11, 0x00, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 0x03, 0xe8, 0x00, 0x50,
    };
    uint8_t out[1024];
    sp_ip src = ip_of("1.2.3.4"), dst = ip_of("5.6.7.8");
    size_t n = sp_proxy_write_v2(out, sizeof out, &src, 1000, &dst, 80, NULL);
    REQUIRE(n == sizeof tcp4);
    CHECK(memcmp(out, tcp4, n) == 0);

    /* Mixed families: AF_INET6 with the v4-mapped form. */
    sp_ip v6 = ip_of("2001:db8::1");
    n = sp_proxy_write_v2(out, sizeof out, &src, 1, &v6, 2, NULL);
    REQUIRE(n == 52);
    CHECK_EQ_INT(out[13], 0x21);
    CHECK_EQ_INT(out[15], 36);
    CHECK(memcmp(out + 16, src.b, 16) == 0);
    CHECK(memcmp(out + 32, v6.b, 16) == 0);

    /* LOCAL. */
    n = sp_proxy_write_v2(out, sizeof out, NULL, 0, NULL, 0, NULL);
    REQUIRE(n == 16);
    CHECK_EQ_INT(out[12], 0x20);
    CHECK_EQ_INT(out[13], 0x00);
    CHECK_EQ_INT(out[14] | out[15], 0);

    /* Empty TLV values are left out. */
    sp_pp_tlvs empty = {.authority = "", .alpn = "h2", .alpn_len = 0,
                        .unique_id = (const uint8_t *)"x", .unique_id_len = 0};
    CHECK_EQ_INT(sp_proxy_write_v2(out, sizeof out, &src, 1, &dst, 2, &empty), 28);
}

TEST(v2_round_trip)
{
    uint8_t id[128];
    for (size_t i = 0; i < sizeof id; i++)
        id[i] = (uint8_t)(255 - i);
    static const char *const pairs[][2] = {
        {"1.2.3.4", "5.6.7.8"}, {"::1", "2001:db8::2"}, {"10.0.0.1", "::"},
        {"::ffff:1.2.3.4", "0.0.0.0"},
    };
    for (size_t i = 0; i < UNIT_COUNT(pairs); i++) {
        for (int crc = 0; crc <= 1; crc++) {
            sp_pp_tlvs t = {
                .authority = "api.example.com", .alpn = "http/1.1", .alpn_len = 8,
                .unique_id = id, .unique_id_len = sizeof id, .crc32c = crc,
            };
            sp_ip src = ip_of(pairs[i][0]), dst = ip_of(pairs[i][1]);
            uint8_t out[1024];
            size_t n = sp_proxy_write_v2(out, sizeof out, &src, 40000, &dst, 443, &t);
            REQUIRE(n > 0);
            sp_proxy_header h;
            REQUIRE(parse(out, n, &h) == SP_PP_OK);
            CHECK_EQ_INT(h.version, 2);
            CHECK_EQ_INT(h.length, n);
            CHECK(!h.local && !h.datagram);
            bool v4 = sp_ip_is_v4(&src) && sp_ip_is_v4(&dst);
            CHECK_EQ_INT(h.family, v4 ? AF_INET : AF_INET6);
            CHECK(memcmp(&h.src, &src, sizeof src) == 0);
            CHECK(memcmp(&h.dst, &dst, sizeof dst) == 0);
            CHECK_EQ_INT(h.src_port, 40000);
            CHECK_EQ_INT(h.dst_port, 443);
            CHECK_STR_EQ(h.authority, "api.example.com");
            CHECK_EQ_INT(h.alpn_len, 8);
            CHECK_STR_EQ(h.alpn, "http/1.1");
            CHECK_EQ_INT(h.unique_id_len, 128);
            CHECK(memcmp(h.unique_id, id, 128) == 0);
            CHECK(h.crc_present == (crc == 1));
            CHECK(prefixes_need_more(out, n));
            CHECK(parses_with_data(out, n, &h));

            /* Too small a buffer: 0, for every size short of the header. */
            for (size_t cap = 0; cap < n; cap++)
                CHECK_EQ_INT(sp_proxy_write_v2(out, cap, &src, 40000, &dst, 443, &t), 0);
        }
    }

    /* LOCAL with TLVs. */
    sp_pp_tlvs t = {.authority = "health", .crc32c = true};
    uint8_t out[256];
    size_t n = sp_proxy_write_v2(out, sizeof out, NULL, 0, NULL, 0, &t);
    REQUIRE(n == 16 + 9 + 7);
    sp_proxy_header h;
    REQUIRE(parse(out, n, &h) == SP_PP_OK);
    CHECK(h.local && h.crc_present);
    CHECK_STR_EQ(h.authority, "health");
}

/* The writer refuses what the parser would refuse, so everything it writes reads back. */
TEST(write_v2_refuses_oversized_tlvs)
{
    uint8_t big[300], out[2048];
    memset(big, 'a', sizeof big);
    char s256[257];
    memset(s256, 'a', 256);
    s256[256] = '\0';
    sp_ip a = ip_of("1.2.3.4");
    sp_pp_tlvs t = {.unique_id = big, .unique_id_len = 129};
    CHECK_EQ_INT(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t), 0);
    t.unique_id_len = 128;
    CHECK(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t) > 0);
    sp_pp_tlvs t2 = {.alpn = (const char *)big, .alpn_len = 256};
    CHECK_EQ_INT(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t2), 0);
    t2.alpn_len = 255;
    CHECK(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t2) > 0);
    sp_pp_tlvs t3 = {.authority = s256};
    CHECK_EQ_INT(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t3), 0);
    s256[255] = '\0';
    CHECK(sp_proxy_write_v2(out, sizeof out, &a, 1, &a, 2, &t3) > 0);
}

/* ---- both -------------------------------------------------------------------------- */

TEST(empty_and_first_byte)
{
    sp_proxy_header h;
    const char *why = "untouched";
    CHECK(sp_proxy_parse((const uint8_t *)"", 0, &h, &why) == SP_PP_NEED_MORE);
    CHECK_STR_EQ(why, "untouched");
    CHECK(sp_proxy_parse((const uint8_t *)"P", 1, &h, NULL) == SP_PP_NEED_MORE);
    CHECK(sp_proxy_parse((const uint8_t *)"\r", 1, &h, NULL) == SP_PP_NEED_MORE);
    for (int c = 0; c < 256; c++) {
        uint8_t b = (uint8_t)c;
        sp_pp_status want = c == 'P' || c == 0x0d ? SP_PP_NEED_MORE : SP_PP_INVALID;
        CHECK(sp_proxy_parse(&b, 1, &h, NULL) == want);
    }
    /* why may be NULL, and out is zeroed when the result is not OK. */
    memset(&h, 0xee, sizeof h);
    static const char partial[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r";
    CHECK(sp_proxy_parse((const uint8_t *)partial, strlen(partial), &h, NULL) ==
          SP_PP_NEED_MORE);
    CHECK_EQ_INT(h.version, 0);
    CHECK(ip_is_zero(&h.src));
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(crc32c_known_answers),
        UNIT(crc32c_continues),
        UNIT(v1_spec_example),
        UNIT(v1_spec_longest_lines),
        UNIT(v1_tcp6),
        UNIT(v1_tcp6_v4_mapped),
        UNIT(v1_unknown_is_local),
        UNIT(v1_line_length_limit),
        UNIT(v1_rejects),
        UNIT(v1_invalid_as_early_as_possible),
        UNIT(v1_header_followed_by_data),
        UNIT(v1_from_haproxy),
        UNIT(v2_tcp4),
        UNIT(v2_tcp6_udp6),
        UNIT(v2_udp4),
        UNIT(v2_unix),
        UNIT(v2_local),
        UNIT(v2_proxy_unspec_is_local),
        UNIT(v2_all_tlvs),
        UNIT(v2_tlv_edges),
        UNIT(v2_crc32c),
        UNIT(v2_from_haproxy),
        UNIT(v2_rejects),
        UNIT(v2_size_limit),
        UNIT(v2_invalid_as_early_as_possible),
        UNIT(write_v1_text),
        UNIT(write_v1_capacity),
        UNIT(v1_round_trip),
        UNIT(write_v2_bytes),
        UNIT(v2_round_trip),
        UNIT(write_v2_refuses_oversized_tlvs),
        UNIT(empty_and_first_byte),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
