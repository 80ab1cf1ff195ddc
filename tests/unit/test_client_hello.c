/* The TLS ClientHello parser (core/proto/client_hello.h), on real captures from
 * shared/testdata/clienthello (see its README) and on hand-made hellos. */
#define _POSIX_C_SOURCE 200809L

#include "proto/client_hello.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#ifndef SP_TESTDATA_DIR
#error "SP_TESTDATA_DIR must name the shared testdata directory (tests/unit/CMakeLists.txt)"
#endif

/* ---- helpers ---------------------------------------------------------------------- */

/* A byte buffer big enough for any input the parser would look at, and more. */
typedef struct bytes {
    uint8_t b[40000];
    size_t n;
} bytes;

static void put(bytes *o, const void *p, size_t n)
{
    if (o->n + n > sizeof o->b) {
        unit_fail_(__FILE__, __LINE__, "test buffer overflow");
        return;
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_u8(bytes *o, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(o, &b, 1);
}

static void put_u16(bytes *o, unsigned v)
{
    put_u8(o, v >> 8);
    put_u8(o, v);
}

static void put_u24(bytes *o, unsigned v)
{
    put_u8(o, v >> 16);
    put_u16(o, v & 0xffff);
}

static void put_ext(bytes *o, unsigned type, const void *body, size_t n)
{
    put_u16(o, type);
    put_u16(o, (unsigned)n);
    put(o, body, n);
}

/* server_name with one host_name. */
static void put_sni(bytes *o, const char *name, size_t n)
{
    put_u16(o, 0);
    put_u16(o, (unsigned)n + 5);
    put_u16(o, (unsigned)n + 3);
    put_u8(o, 0);
    put_u16(o, (unsigned)n);
    put(o, name, n);
}

/* A TLS 1.3-style ClientHello handshake message (header included) with the given
 * extension block contents; exts NULL leaves the block out altogether. */
static void make_hello(bytes *hs, const bytes *exts)
{
    bytes body = {.n = 0};
    static const uint8_t random[32] = {1, 2, 3};
    put_u16(&body, 0x0303);
    put(&body, random, sizeof random);
    put_u8(&body, 0);                 /* session id */
    put_u16(&body, 4);                /* cipher suites */
    put_u16(&body, 0x1301);
    put_u16(&body, 0x1302);
    put_u8(&body, 1);                 /* compression */
    put_u8(&body, 0);
    if (exts != NULL) {
        put_u16(&body, (unsigned)exts->n);
        put(&body, exts->b, exts->n);
    }
    hs->n = 0;
    put_u8(hs, 1);
    put_u24(hs, (unsigned)body.n);
    put(hs, body.b, body.n);
}

/* Wraps handshake bytes into handshake records of at most record_size bytes. */
static void frame(bytes *out, const uint8_t *hs, size_t n, size_t record_size)
{
    out->n = 0;
    for (size_t at = 0; at < n; at += record_size) {
        size_t k = n - at < record_size ? n - at : record_size;
        put_u8(out, 0x16);
        put_u16(out, 0x0301);
        put_u16(out, (unsigned)k);
        put(out, hs + at, k);
    }
}

/* Parses a copy of exactly n bytes, so that AddressSanitizer (fuzz builds) catches any
 * read past len. */
static sp_ch_status parse_exact(const uint8_t *data, size_t n, sp_client_hello *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return SP_CH_INVALID;
    memcpy(copy, data, n);
    sp_ch_status st = sp_client_hello_parse(n ? copy : NULL, n, out);
    free(copy);
    return st;
}

/* Parses the whole input and checks that every proper prefix says NEED_MORE or the
 * same as the whole; returns the whole's answer. */
static sp_ch_status status_of(const uint8_t *data, size_t n, sp_client_hello *out)
{
    sp_client_hello whole, part;
    sp_ch_status st = parse_exact(data, n, &whole);
    for (size_t k = 0; k < n; k++) {
        sp_ch_status sk = parse_exact(data, k, &part);
        if (sk != SP_CH_NEED_MORE && sk != st) {
            unit_fail_(__FILE__, __LINE__, "a prefix answers differently from the whole");
            fprintf(stderr, "    prefix of %zu of %zu bytes: %d, whole: %d\n", k, n, sk, st);
            break;
        }
        if (sk == SP_CH_OK && memcmp(&part, &whole, sizeof part) != 0) {
            unit_fail_(__FILE__, __LINE__, "a prefix gives other fields");
            break;
        }
    }
    if (out != NULL)
        *out = whole;
    return st;
}

/* The answer for a single-record hello with the given extension block. */
static sp_ch_status with_exts(const bytes *exts, sp_client_hello *out)
{
    bytes hs, rec;
    make_hello(&hs, exts);
    frame(&rec, hs.b, hs.n, SP_CH_MAX_RECORD);
    sp_client_hello scratch;
    return status_of(rec.b, rec.n, out ? out : &scratch);
}

static sp_ch_status parse_text(const char *s)
{
    sp_client_hello ch;
    return status_of((const uint8_t *)s, strlen(s), &ch);
}

static bool alpn_is(const sp_client_hello *ch, const char *const *names, size_t n)
{
    size_t pos = 0, len, i = 0;
    const char *p;
    while ((p = sp_client_hello_alpn_next(ch, &pos, &len)) != NULL) {
        if (i >= n || len != strlen(names[i]) || memcmp(p, names[i], len) != 0)
            return false;
        i++;
    }
    return i == n && pos == ch->alpn_len;
}

/* ---- the captures --------------------------------------------------------------------- */

typedef struct capture {
    const char *file;
    size_t size;
    const char *sni; /* "" for none */
    const char *alpn[2];
    size_t nalpn;
    uint16_t versions[4];
    size_t nversions;
    uint16_t max_version;
} capture;

/* Expected fields from shared/testdata/clienthello/README.md. */
static const capture captures[] = {
    {"chromium.bin", 1957, "shop.example.test", {"h2", "http/1.1"}, 2,
     {0x0304, 0x0303}, 2, 0x0304},
    {"chromium-split-512.bin", 1972, "shop.example.test", {"h2", "http/1.1"}, 2,
     {0x0304, 0x0303}, 2, 0x0304},
    {"curl.bin", 517, "api.example.test", {"h2", "http/1.1"}, 2,
     {0x0304, 0x0303, 0x0302, 0x0301}, 4, 0x0304},
    {"openssl-sni-alpn.bin", 347, "Mixed.Case.Example.test", {"h2", "http/1.1"}, 2,
     {0x0304, 0x0303, 0x0302, 0x0301}, 4, 0x0304},
    {"openssl-nosni-tls12.bin", 188, "", {NULL, NULL}, 0, {0}, 0, 0x0303},
};

/* Reads a capture; a missing file fails the test (it must never pass by skipping). */
static size_t load(const char *file, bytes *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/clienthello/%s", SP_TESTDATA_DIR, file);
    out->n = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        unit_fail_(__FILE__, __LINE__, "capture missing");
        fprintf(stderr, "    %s\n", path);
        return 0;
    }
    out->n = fread(out->b, 1, sizeof out->b, f);
    fclose(f);
    return out->n;
}

static void check_fields(const capture *c, const sp_client_hello *ch, size_t consumed)
{
    CHECK_EQ_INT(ch->record_version, 0x0301);
    CHECK_EQ_INT(ch->legacy_version, 0x0303);
    CHECK_STR_EQ(ch->sni, c->sni);
    CHECK_EQ_INT(ch->sni_len, strlen(c->sni));
    CHECK(alpn_is(ch, c->alpn, c->nalpn));
    CHECK_EQ_INT(ch->nversions, c->nversions);
    for (size_t i = 0; i < c->nversions && i < ch->nversions; i++)
        CHECK_EQ_INT(ch->versions[i], c->versions[i]);
    CHECK_EQ_INT(ch->max_version, c->max_version);
    CHECK_EQ_INT(ch->consumed, consumed);
}

TEST(captures_whole)
{
    static bytes in;
    for (size_t i = 0; i < UNIT_COUNT(captures); i++) {
        const capture *c = &captures[i];
        REQUIRE(load(c->file, &in) == c->size);
        sp_client_hello ch;
        CHECK_EQ_INT(parse_exact(in.b, in.n, &ch), SP_CH_OK);
        check_fields(c, &ch, c->size);
    }
}

/* Bytes that follow the hello (another record, early data) are not part of it. */
TEST(captures_followed_by_more)
{
    static bytes in;
    static const uint8_t app_data[] = {0x17, 0x03, 0x03, 0x00, 0x02, 0xab, 0xcd};
    for (size_t i = 0; i < UNIT_COUNT(captures); i++) {
        const capture *c = &captures[i];
        REQUIRE(load(c->file, &in) == c->size);
        put(&in, app_data, sizeof app_data);
        sp_client_hello ch;
        CHECK_EQ_INT(parse_exact(in.b, in.n, &ch), SP_CH_OK);
        check_fields(c, &ch, c->size);
    }
}

TEST(captures_every_prefix_needs_more)
{
    static bytes in;
    for (size_t i = 0; i < UNIT_COUNT(captures); i++) {
        const capture *c = &captures[i];
        REQUIRE(load(c->file, &in) == c->size);
        for (size_t k = 0; k < in.n; k++) {
            sp_client_hello ch;
            sp_ch_status st = parse_exact(in.b, k, &ch);
            if (st != SP_CH_NEED_MORE) {
                unit_fail_(__FILE__, __LINE__, "a proper prefix is not NEED_MORE");
                fprintf(stderr, "    %s cut at %zu: %d\n", c->file, k, st);
                break;
            }
        }
    }
}

/* As a caller does it: a buffer that grows by one byte per read. */
TEST(captures_one_byte_at_a_time)
{
    static bytes in;
    for (size_t i = 0; i < UNIT_COUNT(captures); i++) {
        const capture *c = &captures[i];
        REQUIRE(load(c->file, &in) == c->size);
        uint8_t *buf = NULL;
        size_t have = 0;
        sp_client_hello ch;
        sp_ch_status st = SP_CH_NEED_MORE;
        while (st == SP_CH_NEED_MORE && have < in.n) {
            uint8_t *grown = realloc(buf, have + 1);
            REQUIRE(grown != NULL);
            buf = grown;
            buf[have] = in.b[have];
            have++;
            st = sp_client_hello_parse(buf, have, &ch);
        }
        free(buf);
        CHECK_EQ_INT(st, SP_CH_OK);
        CHECK_EQ_INT(have, c->size);
        check_fields(c, &ch, c->size);
    }
}

/* The one-record and the four-record chromium captures are the same hello. */
TEST(chromium_split_reads_as_whole)
{
    static bytes one, four;
    REQUIRE(load("chromium.bin", &one) == 1957);
    REQUIRE(load("chromium-split-512.bin", &four) == 1972);
    sp_client_hello a, b;
    REQUIRE(parse_exact(one.b, one.n, &a) == SP_CH_OK);
    REQUIRE(parse_exact(four.b, four.n, &b) == SP_CH_OK);
    CHECK_EQ_INT(a.consumed, 1957);
    CHECK_EQ_INT(b.consumed, 1972);
    b.consumed = a.consumed;
    CHECK(memcmp(&a, &b, sizeof a) == 0);
}

/* The chromium hello re-framed into records of every size from 1 byte up. */
TEST(chromium_any_record_size)
{
    static bytes in, rec;
    REQUIRE(load("chromium.bin", &in) == 1957);
    sp_client_hello ref;
    REQUIRE(parse_exact(in.b, in.n, &ref) == SP_CH_OK);
    const uint8_t *hs = in.b + 5;
    size_t hs_len = in.n - 5;
    for (size_t size = 1; size <= hs_len; size += size < 64 ? 1 : 97) {
        frame(&rec, hs, hs_len, size);
        sp_client_hello ch;
        sp_ch_status st = parse_exact(rec.b, rec.n, &ch);
        if (st != SP_CH_OK) {
            unit_fail_(__FILE__, __LINE__, "re-framed hello does not parse");
            fprintf(stderr, "    records of %zu: %d\n", size, st);
            continue;
        }
        CHECK_EQ_INT(ch.consumed, rec.n);
        ch.consumed = ref.consumed;
        CHECK(memcmp(&ch, &ref, sizeof ch) == 0);
    }
    /* Cut anywhere, including inside record headers, it still needs more. */
    frame(&rec, hs, hs_len, 3);
    for (size_t k = 0; k < rec.n; k++) {
        sp_client_hello ch;
        if (parse_exact(rec.b, k, &ch) != SP_CH_NEED_MORE) {
            unit_fail_(__FILE__, __LINE__, "a proper prefix is not NEED_MORE");
            fprintf(stderr, "    3-byte records cut at %zu\n", k);
            break;
        }
    }
}

/* ---- not TLS -------------------------------------------------------------------------- */

TEST(empty_needs_more)
{
    sp_client_hello ch;
    CHECK_EQ_INT(sp_client_hello_parse(NULL, 0, &ch), SP_CH_NEED_MORE);
    static const uint8_t b[] = {0x16};
    CHECK_EQ_INT(sp_client_hello_parse(b, 0, &ch), SP_CH_NEED_MORE);
    CHECK_EQ_INT(sp_client_hello_parse(b, 1, &ch), SP_CH_NEED_MORE);
}

TEST(http_is_not_tls)
{
    CHECK_EQ_INT(parse_text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), SP_CH_NOT_TLS);
    CHECK_EQ_INT(parse_text("G"), SP_CH_NOT_TLS);
    CHECK_EQ_INT(parse_text("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), SP_CH_NOT_TLS);
    CHECK_EQ_INT(parse_text("SSH-2.0-OpenSSH_9.2\r\n"), SP_CH_NOT_TLS);
}

TEST(not_tls_from_first_bytes)
{
    sp_client_hello ch;
    /* SSLv2-compatible hello: the first byte has the high bit set. */
    static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15};
    CHECK_EQ_INT(status_of(sslv2, sizeof sslv2, &ch), SP_CH_NOT_TLS);
    CHECK_EQ_INT(sp_client_hello_parse(sslv2, 1, &ch), SP_CH_NOT_TLS);
    /* Other record types first: application data, alert, change_cipher_spec. */
    static const uint8_t app[] = {0x17, 0x03, 0x03, 0x00, 0x01, 0x00};
    CHECK_EQ_INT(status_of(app, sizeof app, &ch), SP_CH_NOT_TLS);
    CHECK_EQ_INT(sp_client_hello_parse(app, 1, &ch), SP_CH_NOT_TLS);
    static const uint8_t alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28};
    CHECK_EQ_INT(status_of(alert, sizeof alert, &ch), SP_CH_NOT_TLS);
    static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    CHECK_EQ_INT(status_of(ccs, sizeof ccs, &ch), SP_CH_NOT_TLS);
    /* Handshake type, but not major version 3: decided at the second byte. */
    static const uint8_t v2[] = {0x16, 0x02, 0x00, 0x00, 0x04};
    CHECK_EQ_INT(status_of(v2, sizeof v2, &ch), SP_CH_NOT_TLS);
    CHECK_EQ_INT(sp_client_hello_parse(v2, 2, &ch), SP_CH_NOT_TLS);
    static const uint8_t dtls[] = {0x16, 0xfe, 0xfd, 0x00, 0x00};
    CHECK_EQ_INT(sp_client_hello_parse(dtls, 2, &ch), SP_CH_NOT_TLS);
    static const uint8_t zero[] = {0x00};
    CHECK_EQ_INT(sp_client_hello_parse(zero, 1, &ch), SP_CH_NOT_TLS);
}

/* ---- records and the handshake header ------------------------------------------------- */

TEST(record_lengths)
{
    sp_client_hello ch;
    static const uint8_t empty_record[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
    CHECK_EQ_INT(status_of(empty_record, sizeof empty_record, &ch), SP_CH_INVALID);
    CHECK_EQ_INT(sp_client_hello_parse(empty_record, 5, &ch), SP_CH_INVALID);

    /* 16384 + 256 is the largest record; one byte more is refused at the header. */
    uint8_t big[] = {0x16, 0x03, 0x01, 0x41, 0x00, 0x01};
    CHECK_EQ_INT(sp_client_hello_parse(big, sizeof big, &ch), SP_CH_NEED_MORE);
    big[4] = 0x01;
    CHECK_EQ_INT(sp_client_hello_parse(big, 5, &ch), SP_CH_INVALID);
    big[3] = 0xff;
    big[4] = 0xff;
    CHECK_EQ_INT(sp_client_hello_parse(big, 5, &ch), SP_CH_INVALID);

    /* Any 3.x record version is accepted; the first is reported. */
    bytes hs, rec;
    make_hello(&hs, NULL);
    frame(&rec, hs.b, hs.n, 1000);
    rec.b[2] = 0x00;
    REQUIRE(status_of(rec.b, rec.n, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.record_version, 0x0300);
}

TEST(handshake_type_must_be_client_hello)
{
    sp_client_hello ch;
    bytes hs, rec;
    make_hello(&hs, NULL);
    static const uint8_t others[] = {0, 2, 4, 11, 16, 20, 0xff};
    for (size_t i = 0; i < sizeof others; i++) {
        hs.b[0] = others[i];
        frame(&rec, hs.b, hs.n, 1000);
        CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
        CHECK_EQ_INT(sp_client_hello_parse(rec.b, 6, &ch), SP_CH_INVALID); /* at its byte */
    }
    /* Also when the type byte is in a one-byte record of its own. */
    frame(&rec, hs.b, hs.n, 1);
    CHECK_EQ_INT(sp_client_hello_parse(rec.b, 6, &ch), SP_CH_INVALID);
}

TEST(handshake_length_vs_records)
{
    sp_client_hello ch;
    bytes hs, rec;
    make_hello(&hs, NULL);

    /* The record carries bytes past the hello: refused once both lengths are known. */
    frame(&rec, hs.b, hs.n, 1000);
    rec.b[4] += 1;
    put_u8(&rec, 0x01);
    CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
    CHECK_EQ_INT(sp_client_hello_parse(rec.b, 9, &ch), SP_CH_INVALID);

    /* The same, found at the header of a later record. */
    frame(&rec, hs.b, hs.n, 40);
    size_t last = rec.n - (hs.n % 40 ? hs.n % 40 : 40) - 5;
    CHECK_EQ_INT(rec.b[last], 0x16);
    rec.b[last + 4] += 1;
    put_u8(&rec, 0x01);
    CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
    CHECK_EQ_INT(sp_client_hello_parse(rec.b, last + 5, &ch), SP_CH_INVALID);

    /* A handshake length shorter than the fields: the body overruns it. */
    for (unsigned short_by = 1; short_by < 40; short_by += 7) {
        bytes cut = hs;
        unsigned len = (unsigned)hs.n - 4 - short_by;
        cut.b[1] = (uint8_t)(len >> 16);
        cut.b[2] = (uint8_t)(len >> 8);
        cut.b[3] = (uint8_t)len;
        cut.n -= short_by;
        frame(&rec, cut.b, cut.n, 1000);
        CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
    }
    static const uint8_t zero_len[] = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00};
    CHECK_EQ_INT(status_of(zero_len, sizeof zero_len, &ch), SP_CH_INVALID);
}

TEST(record_of_another_type_in_the_middle)
{
    sp_client_hello ch;
    bytes hs, rec;
    make_hello(&hs, NULL);
    frame(&rec, hs.b, hs.n, 20);
    static const uint8_t types[] = {0x14, 0x15, 0x17, 0x18, 0x00};
    for (size_t i = 0; i < sizeof types; i++) {
        bytes bad = rec;
        bad.b[25] = types[i]; /* the second record's header */
        CHECK_EQ_INT(status_of(bad.b, bad.n, &ch), SP_CH_INVALID);
        CHECK_EQ_INT(sp_client_hello_parse(bad.b, 26, &ch), SP_CH_INVALID);
    }
    bytes bad = rec;
    bad.b[26] = 0x02; /* major version */
    CHECK_EQ_INT(status_of(bad.b, bad.n, &ch), SP_CH_INVALID);
    bad = rec;
    bad.b[28] = 0; /* empty record */
    bad.b[29] = 0;
    CHECK_EQ_INT(sp_client_hello_parse(bad.b, 30, &ch), SP_CH_INVALID);
}

TEST(too_large)
{
    sp_client_hello ch;
    static const uint8_t huge[] = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff};
    CHECK_EQ_INT(sp_client_hello_parse(huge, sizeof huge, &ch), SP_CH_TOO_LARGE);
    CHECK_EQ_INT(sp_client_hello_parse(huge, sizeof huge - 1, &ch), SP_CH_NEED_MORE);

    /* The largest message that fits one header of each in SP_CH_MAX_INPUT. */
    unsigned fits = SP_CH_MAX_INPUT - 9;
    uint8_t edge[] = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01,
                      (uint8_t)(fits >> 16), (uint8_t)(fits >> 8), (uint8_t)fits};
    CHECK_EQ_INT(sp_client_hello_parse(edge, sizeof edge, &ch), SP_CH_NEED_MORE);
    fits++;
    edge[7] = (uint8_t)(fits >> 8);
    edge[8] = (uint8_t)fits;
    CHECK_EQ_INT(sp_client_hello_parse(edge, sizeof edge, &ch), SP_CH_TOO_LARGE);

    /* A valid 6 KB hello: fine in big records, too large in 1-byte records (6 bytes of
     * input per byte of hello). */
    static bytes exts, hs, rec;
    exts.n = 0;
    static const uint8_t padding[6000];
    put_ext(&exts, 21, padding, sizeof padding);
    make_hello(&hs, &exts);
    frame(&rec, hs.b, hs.n, 16);
    CHECK_EQ_INT(parse_exact(rec.b, rec.n, &ch), SP_CH_OK);
    frame(&rec, hs.b, hs.n, 1);
    REQUIRE(rec.n > SP_CH_MAX_INPUT);
    CHECK_EQ_INT(parse_exact(rec.b, rec.n, &ch), SP_CH_TOO_LARGE);
    CHECK_EQ_INT(parse_exact(rec.b, SP_CH_MAX_INPUT, &ch), SP_CH_TOO_LARGE);
    CHECK_EQ_INT(parse_exact(rec.b, SP_CH_MAX_INPUT - 6, &ch), SP_CH_NEED_MORE);
}

/* ---- the body -------------------------------------------------------------------------- */

TEST(minimal_hello_without_extensions)
{
    sp_client_hello ch;
    bytes hs, rec;
    make_hello(&hs, NULL);
    frame(&rec, hs.b, hs.n, 1000);
    REQUIRE(status_of(rec.b, rec.n, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.legacy_version, 0x0303);
    CHECK_EQ_INT(ch.max_version, 0x0303);
    CHECK_EQ_INT(ch.sni_len, 0);
    CHECK_STR_EQ(ch.sni, "");
    CHECK_EQ_INT(ch.alpn_len, 0);
    CHECK_EQ_INT(ch.nversions, 0);
    CHECK_EQ_INT(ch.consumed, rec.n);
    size_t pos = 0, len = 0;
    CHECK(sp_client_hello_alpn_next(&ch, &pos, &len) == NULL);

    /* An empty extension block is allowed too. */
    bytes none = {.n = 0};
    CHECK_EQ_INT(with_exts(&none, &ch), SP_CH_OK);
    CHECK_EQ_INT(ch.max_version, 0x0303);
}

TEST(body_field_lengths)
{
    sp_client_hello ch;
    bytes hs, rec;
    make_hello(&hs, NULL);
    /* Offsets in hs: 4 version, 6 random, 38 session id length, 39 suites length,
     * 41 suites, 45 compression length, 46 compression. */
    static const struct {
        size_t at;
        uint8_t value;
    } bad[] = {
        {4, 0x02}, {4, 0x04}, {4, 0x00},  /* legacy_version major */
        {38, 33}, {38, 0xff}, {38, 1},   /* session id too long / overruns */
        {39, 0xff}, {40, 3}, {40, 0}, {40, 5}, /* suites: overrun, odd, empty */
        {45, 0}, {45, 2}, {45, 0xff},    /* compression: empty, overrun */
    };
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        bytes b = hs;
        b.b[bad[i].at] = bad[i].value;
        frame(&rec, b.b, b.n, 1000);
        if (status_of(rec.b, rec.n, &ch) != SP_CH_INVALID) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad body");
            fprintf(stderr, "    byte %zu = 0x%02x\n", bad[i].at, bad[i].value);
        }
    }
    /* A version of 3.x other than 3.3 is fine (old clients send 3.1). */
    bytes b = hs;
    b.b[5] = 0x01;
    frame(&rec, b.b, b.n, 1000);
    REQUIRE(status_of(rec.b, rec.n, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.legacy_version, 0x0301);
    CHECK_EQ_INT(ch.max_version, 0x0301);
    /* A byte left after the compression methods is not an extension block. */
    b = hs;
    put_u8(&b, 0);
    b.b[3] += 1;
    frame(&rec, b.b, b.n, 1000);
    CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
}

TEST(extension_block_lengths)
{
    sp_client_hello ch;
    bytes exts = {.n = 0};
    put_sni(&exts, "a.example", 9);
    bytes hs, rec;
    make_hello(&hs, &exts);
    size_t block = 47; /* the block's length field in hs */
    REQUIRE(hs.b[block] == 0 && hs.b[block + 1] == exts.n);
    for (int delta = -3; delta <= 3; delta++) {
        if (delta == 0)
            continue;
        bytes b = hs;
        b.b[block + 1] = (uint8_t)(exts.n + (size_t)delta);
        frame(&rec, b.b, b.n, 1000);
        CHECK_EQ_INT(status_of(rec.b, rec.n, &ch), SP_CH_INVALID);
    }
    /* One extension's length overruns the block, or leaves less than a header. */
    bytes e = {.n = 0};
    put_u16(&e, 0x1234);
    put_u16(&e, 5);
    put_u8(&e, 0);
    CHECK_EQ_INT(with_exts(&e, NULL), SP_CH_INVALID);
    e.n = 0;
    put_u16(&e, 0x1234);
    put_u16(&e, 0xffff);
    CHECK_EQ_INT(with_exts(&e, NULL), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 0x1234, "", 0);
    put_u16(&e, 0x1235);
    CHECK_EQ_INT(with_exts(&e, NULL), SP_CH_INVALID);
    e.n = 0;
    put_u8(&e, 0);
    CHECK_EQ_INT(with_exts(&e, NULL), SP_CH_INVALID);
}

TEST(unknown_and_empty_extensions)
{
    sp_client_hello ch;
    bytes e = {.n = 0};
    put_ext(&e, 0x1234, "", 0);
    put_ext(&e, 23, "", 0);           /* extended_master_secret, always empty */
    put_ext(&e, 0x0a0a, "", 0);       /* GREASE */
    put_ext(&e, 0xfafa, "\0", 1);
    put_ext(&e, 0xffff, "xyz", 3);
    put_ext(&e, 0x1234, "", 0);       /* a repeat of one not routed on: left to TLS */
    put_sni(&e, "x.test", 6);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_STR_EQ(ch.sni, "x.test");

    /* The ones routed on may not be empty. */
    static const unsigned routed[] = {0, 16, 43};
    for (size_t i = 0; i < UNIT_COUNT(routed); i++) {
        e.n = 0;
        put_ext(&e, routed[i], "", 0);
        CHECK_EQ_INT(with_exts(&e, NULL), SP_CH_INVALID);
    }
}

/* ---- server_name ------------------------------------------------------------------------ */

static sp_ch_status sni_status(const char *name, size_t n, sp_client_hello *ch)
{
    bytes e = {.n = 0};
    put_sni(&e, name, n);
    return with_exts(&e, ch);
}

TEST(sni_kept_as_sent)
{
    sp_client_hello ch;
    REQUIRE(sni_status("Mixed.CASE.example", 18, &ch) == SP_CH_OK);
    CHECK_STR_EQ(ch.sni, "Mixed.CASE.example");
    CHECK_EQ_INT(ch.sni_len, 18);
    REQUIRE(sni_status("a-b_c.0-9.", 10, &ch) == SP_CH_OK);
    CHECK_STR_EQ(ch.sni, "a-b_c.0-9.");
    REQUIRE(sni_status("x", 1, &ch) == SP_CH_OK);
    CHECK_STR_EQ(ch.sni, "x");
    REQUIRE(sni_status("192.0.2.1", 9, &ch) == SP_CH_OK);

    char name[256];
    memset(name, 'a', sizeof name);
    REQUIRE(sni_status(name, 255, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.sni_len, 255);
    CHECK_EQ_INT(strlen(ch.sni), 255);
    CHECK_EQ_INT(sni_status(name, 256, &ch), SP_CH_INVALID);
    CHECK_EQ_INT(sni_status(name, 0, &ch), SP_CH_INVALID);
}

TEST(sni_bad_characters)
{
    static const char *const bad[] = {
        "a b.test", "a\tb", "nul\0x", "a/b", "a:443", "a@b", "*.test", "a%2e", "a\\b",
        "caf\xc3\xa9.test", "a\nb", "\x7f", "a,b", "[::1]", "a+b", "\xff",
    };
    static const size_t lens[] = {8, 3, 5, 3, 5, 3, 6, 4, 3, 10, 3, 1, 3, 5, 3, 1};
    sp_client_hello ch;
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        if (sni_status(bad[i], lens[i], &ch) != SP_CH_INVALID) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad host_name");
            fprintf(stderr, "    entry %zu\n", i);
        }
    }
}

TEST(sni_list_shape)
{
    sp_client_hello ch;
    bytes e = {.n = 0};
    /* Two host_names. */
    put_u16(&e, 0);
    put_u16(&e, 2 + 2 * 6);
    put_u16(&e, 2 * 6);
    put_u8(&e, 0);
    put_u16(&e, 3);
    put(&e, "a.b", 3);
    put_u8(&e, 0);
    put_u16(&e, 3);
    put(&e, "c.d", 3);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);

    /* Another name type. */
    e.n = 0;
    put_sni(&e, "a.b", 3);
    e.b[6] = 1;
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);

    /* List length not matching the extension, name length not matching the list. */
    static const struct {
        size_t at;
        int delta;
    } off[] = {{5, 1}, {5, -1}, {8, 1}, {8, -1}, {7, 1}, {3, 1}, {3, -1}};
    for (size_t i = 0; i < UNIT_COUNT(off); i++) {
        e.n = 0;
        put_sni(&e, "a.b", 3);
        e.b[off[i].at] = (uint8_t)(e.b[off[i].at] + off[i].delta);
        if (with_exts(&e, &ch) != SP_CH_INVALID) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad server_name length");
            fprintf(stderr, "    byte %zu %+d\n", off[i].at, off[i].delta);
        }
    }

    /* A list with the type byte only, and an extension too short for the list length. */
    e.n = 0;
    put_ext(&e, 0, "\x00\x01\x00", 3);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 0, "\x00", 1);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
}

TEST(sni_duplicate)
{
    sp_client_hello ch;
    bytes e = {.n = 0};
    put_sni(&e, "a.test", 6);
    put_sni(&e, "b.test", 6);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_sni(&e, "a.test", 6);
    put_ext(&e, 0x1234, "", 0);
    put_sni(&e, "a.test", 6);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
}

/* ---- ALPN --------------------------------------------------------------------------------- */

static void put_alpn(bytes *e, const char *const *names, size_t n)
{
    size_t list = 0;
    for (size_t i = 0; i < n; i++)
        list += 1 + strlen(names[i]);
    put_u16(e, 16);
    put_u16(e, (unsigned)list + 2);
    put_u16(e, (unsigned)list);
    for (size_t i = 0; i < n; i++) {
        put_u8(e, (unsigned)strlen(names[i]));
        put(e, names[i], strlen(names[i]));
    }
}

TEST(alpn_list)
{
    sp_client_hello ch;
    static const char *const names[] = {"h2", "http/1.1", "acme-tls/1", "x"};
    bytes e = {.n = 0};
    put_alpn(&e, names, 4);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.alpn_len, 3 + 9 + 11 + 2);
    CHECK(alpn_is(&ch, names, 4));
    CHECK(memcmp(ch.alpn, "\x02h2\x08http/1.1", 12) == 0);

    e.n = 0;
    put_alpn(&e, names + 3, 1);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK(alpn_is(&ch, names + 3, 1));
}

TEST(alpn_malformed)
{
    sp_client_hello ch;
    static const char *const with_empty[] = {"h2", "", "x"};
    bytes e = {.n = 0};
    put_alpn(&e, with_empty, 3);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);

    static const char *const one[] = {"h2"};
    static const struct {
        size_t at;
        int delta;
    } off[] = {{3, 1}, {3, -1}, {5, 1}, {5, -1}, {6, 1}, {6, -1}, {6, -2}};
    for (size_t i = 0; i < UNIT_COUNT(off); i++) {
        e.n = 0;
        put_alpn(&e, one, 1);
        e.b[off[i].at] = (uint8_t)(e.b[off[i].at] + off[i].delta);
        if (with_exts(&e, &ch) != SP_CH_INVALID) {
            unit_fail_(__FILE__, __LINE__, "accepted a bad ALPN length");
            fprintf(stderr, "    byte %zu %+d\n", off[i].at, off[i].delta);
        }
    }
    e.n = 0;
    put_ext(&e, 16, "\x00\x00", 2);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_alpn(&e, one, 1);
    put_alpn(&e, one, 1);
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
}

/* Names that do not fit whole in alpn[256] are left out, from the first that does not. */
TEST(alpn_longer_than_the_buffer)
{
    sp_client_hello ch;
    char n200[201], n60[61], n255[256];
    memset(n200, 'a', 200);
    n200[200] = '\0';
    memset(n60, 'b', 60);
    n60[60] = '\0';
    memset(n255, 'c', 255);
    n255[255] = '\0';

    const char *const list[] = {"h2", n200, n60, "x"};
    bytes e = {.n = 0};
    put_alpn(&e, list, 4);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.alpn_len, 3 + 201);
    CHECK(alpn_is(&ch, list, 2));

    const char *const biggest[] = {n255};
    e.n = 0;
    put_alpn(&e, biggest, 1);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.alpn_len, 256);
    CHECK(alpn_is(&ch, biggest, 1));

    const char *const after_big[] = {"h2", n255};
    e.n = 0;
    put_alpn(&e, after_big, 2);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK(alpn_is(&ch, after_big, 1));
}

/* The iterator stops inside the buffer whatever the struct holds. */
TEST(alpn_next_on_hostile_struct)
{
    sp_client_hello ch;
    memset(&ch, 0, sizeof ch);
    ch.alpn_len = 100000;
    memset(ch.alpn, 10, sizeof ch.alpn);
    size_t pos = 0, len = 0, steps = 0;
    while (sp_client_hello_alpn_next(&ch, &pos, &len) != NULL) {
        CHECK(pos <= sizeof ch.alpn);
        steps++;
    }
    CHECK_EQ_INT(steps, 23); /* 23 * 11 = 253; the 24th would end at 264 */

    ch.alpn_len = 5;
    memcpy(ch.alpn, "\x02h2\x07x", 5);
    pos = 0;
    CHECK(sp_client_hello_alpn_next(&ch, &pos, &len) != NULL);
    CHECK(sp_client_hello_alpn_next(&ch, &pos, &len) == NULL);
    ch.alpn[0] = 0;
    pos = 0;
    CHECK(sp_client_hello_alpn_next(&ch, &pos, &len) == NULL);
}

/* ---- supported_versions and GREASE -------------------------------------------------------- */

static void put_versions(bytes *e, const uint16_t *v, size_t n)
{
    put_u16(e, 43);
    put_u16(e, (unsigned)(1 + 2 * n));
    put_u8(e, (unsigned)(2 * n));
    for (size_t i = 0; i < n; i++)
        put_u16(e, v[i]);
}

TEST(supported_versions_grease_dropped)
{
    sp_client_hello ch;
    static const uint16_t offered[] = {0x2a2a, 0x0304, 0xfafa, 0x0303, 0x0a1a, 0x0a0a};
    bytes e = {.n = 0};
    put_versions(&e, offered, UNIT_COUNT(offered));
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    REQUIRE(ch.nversions == 3);
    CHECK_EQ_INT(ch.versions[0], 0x0304);
    CHECK_EQ_INT(ch.versions[1], 0x0303);
    CHECK_EQ_INT(ch.versions[2], 0x0a1a); /* not GREASE: the two bytes differ */
    CHECK_EQ_INT(ch.max_version, 0x0304);
    CHECK_STR_EQ(sp_tls_version_name(ch.max_version), "TLSv1.3");

    /* All sixteen GREASE values, and nothing else: no version offered at all. */
    uint16_t grease[16];
    for (unsigned i = 0; i < 16; i++)
        grease[i] = (uint16_t)(0x0a0a + 0x1010 * i);
    e.n = 0;
    put_versions(&e, grease, 16);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.nversions, 0);
    CHECK_EQ_INT(ch.max_version, 0);
}

TEST(supported_versions_max_is_over_tls_versions)
{
    sp_client_hello ch;
    /* Drafts (7f xx) and DTLS (fe fd) are kept but do not count as higher. */
    static const uint16_t offered[] = {0x7f1c, 0x0303, 0xfefd, 0x0302};
    bytes e = {.n = 0};
    put_versions(&e, offered, UNIT_COUNT(offered));
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.nversions, 4);
    CHECK_EQ_INT(ch.max_version, 0x0303);

    /* Present, it decides over legacy_version even when lower. */
    static const uint16_t old[] = {0x0301};
    e.n = 0;
    put_versions(&e, old, 1);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.legacy_version, 0x0303);
    CHECK_EQ_INT(ch.max_version, 0x0301);
}

TEST(supported_versions_more_than_32)
{
    sp_client_hello ch;
    uint16_t many[127];
    for (size_t i = 0; i < UNIT_COUNT(many); i++)
        many[i] = (uint16_t)(0x0300 + (i == 100 ? 0x50 : i % 5));
    bytes e = {.n = 0};
    put_versions(&e, many, UNIT_COUNT(many));
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.nversions, 32);
    CHECK_EQ_INT(ch.versions[31], many[31]);
    CHECK_EQ_INT(ch.max_version, 0x0350); /* seen past the 32 kept */
}

TEST(supported_versions_malformed)
{
    sp_client_hello ch;
    bytes e = {.n = 0};
    put_ext(&e, 43, "\x03\x03\x04\x03", 4); /* odd list */
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 43, "\x00", 1); /* empty list */
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 43, "\x04\x03\x04", 3); /* list longer than the extension */
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 43, "\x02\x03\x04\x00", 4); /* shorter */
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 43, "\x02\x03\x04", 3);
    put_ext(&e, 43, "\x02\x03\x03", 3); /* twice */
    CHECK_EQ_INT(with_exts(&e, &ch), SP_CH_INVALID);
    e.n = 0;
    put_ext(&e, 43, "\x02\x03\x04", 3);
    REQUIRE(with_exts(&e, &ch) == SP_CH_OK);
    CHECK_EQ_INT(ch.max_version, 0x0304);
}

/* ---- garbage ------------------------------------------------------------------------------- */

/* Every single-byte change to a capture gives some answer, and cutting it gives
 * NEED_MORE or the same answer (status_of checks that on each). */
TEST(capture_with_each_byte_changed)
{
    static bytes in;
    REQUIRE(load("curl.bin", &in) == 517);
    sp_client_hello ch;
    size_t ok = 0, invalid = 0;
    for (size_t at = 0; at < in.n; at++) {
        static const uint8_t flips[] = {0x01, 0x80, 0xff};
        for (size_t f = 0; f < sizeof flips; f++) {
            static bytes bad;
            bad = in;
            bad.b[at] ^= flips[f];
            sp_ch_status st = at % 7 == 0 ? status_of(bad.b, bad.n, &ch)
                                          : parse_exact(bad.b, bad.n, &ch);
            CHECK(st >= SP_CH_TOO_LARGE && st <= SP_CH_OK);
            if (st == SP_CH_OK) {
                ok++;
                CHECK(ch.sni_len <= 255 && ch.consumed <= bad.n);
            } else if (st == SP_CH_INVALID) {
                invalid++;
            }
        }
    }
    /* The random, session id and key share bytes are opaque: changing them is fine. */
    CHECK(ok > 100);
    CHECK(invalid > 100);
}

/* ---- version names ------------------------------------------------------------------------- */

TEST(version_names)
{
    CHECK_STR_EQ(sp_tls_version_name(0x0304), "TLSv1.3");
    CHECK_STR_EQ(sp_tls_version_name(0x0303), "TLSv1.2");
    CHECK_STR_EQ(sp_tls_version_name(0x0302), "TLSv1.1");
    CHECK_STR_EQ(sp_tls_version_name(0x0301), "TLSv1");
    CHECK_STR_EQ(sp_tls_version_name(0x0300), "SSLv3");
    CHECK(sp_tls_version_name(0x0305) == NULL);
    CHECK(sp_tls_version_name(0x0a0a) == NULL);
    CHECK(sp_tls_version_name(0) == NULL);

    CHECK_EQ_INT(sp_tls_version_parse("TLSv1.3"), 0x0304);
    CHECK_EQ_INT(sp_tls_version_parse("TLSv1.2"), 0x0303);
    CHECK_EQ_INT(sp_tls_version_parse("TLSv1.1"), 0x0302);
    CHECK_EQ_INT(sp_tls_version_parse("TLSv1"), 0x0301);
    CHECK_EQ_INT(sp_tls_version_parse("SSLv3"), 0x0300);
    static const char *const bad[] = {"", "TLSv1.0", "tlsv1.2", "TLSv1.2 ", "TLS1.2",
                                      "TLSv1.4", "1.2", "TLSv1.", "SSLv2"};
    for (size_t i = 0; i < UNIT_COUNT(bad); i++)
        CHECK_EQ_INT(sp_tls_version_parse(bad[i]), -1);
    CHECK_EQ_INT(sp_tls_version_parse(NULL), -1);

    for (unsigned v = 0; v <= 0xffff; v++) {
        const char *name = sp_tls_version_name((uint16_t)v);
        if (name != NULL)
            CHECK_EQ_INT(sp_tls_version_parse(name), v);
    }
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(captures_whole),
        UNIT(captures_followed_by_more),
        UNIT(captures_every_prefix_needs_more),
        UNIT(captures_one_byte_at_a_time),
        UNIT(chromium_split_reads_as_whole),
        UNIT(chromium_any_record_size),
        UNIT(empty_needs_more),
        UNIT(http_is_not_tls),
        UNIT(not_tls_from_first_bytes),
        UNIT(record_lengths),
        UNIT(handshake_type_must_be_client_hello),
        UNIT(handshake_length_vs_records),
        UNIT(record_of_another_type_in_the_middle),
        UNIT(too_large),
        UNIT(minimal_hello_without_extensions),
        UNIT(body_field_lengths),
        UNIT(extension_block_lengths),
        UNIT(unknown_and_empty_extensions),
        UNIT(sni_kept_as_sent),
        UNIT(sni_bad_characters),
        UNIT(sni_list_shape),
        UNIT(sni_duplicate),
        UNIT(alpn_list),
        UNIT(alpn_malformed),
        UNIT(alpn_longer_than_the_buffer),
        UNIT(alpn_next_on_hostile_struct),
        UNIT(supported_versions_grease_dropped),
        UNIT(supported_versions_max_is_over_tls_versions),
        UNIT(supported_versions_more_than_32),
        UNIT(supported_versions_malformed),
        UNIT(capture_with_each_byte_changed),
        UNIT(version_names),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
