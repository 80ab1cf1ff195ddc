/*
 * libFuzzer target for core/proto/client_hello.h.
 *
 * The input is the client's first bytes. It is parsed whole and the result checked
 * against invariants; then cut at a few points, one of them chosen by the input (a hash
 * of its bytes), each of which must answer NEED_MORE or exactly what the whole did; then,
 * when the whole was a hello, its handshake message is re-framed into records of an
 * input-chosen size, which must read the same (or be TOO_LARGE past SP_CH_MAX_INPUT).
 * Every parse gets a copy of exactly the bytes it may read, so ASan sees any over-read.
 */
#include "proto/client_hello.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENSURE(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static sp_ch_status parse_copy(const uint8_t *data, size_t n, sp_client_hello *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    ENSURE(copy != NULL);
    if (n)
        memcpy(copy, data, n);
    sp_ch_status st = sp_client_hello_parse(n ? copy : NULL, n, out);
    free(copy);
    return st;
}

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static bool is_grease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static void check_hello(const sp_client_hello *ch, size_t size)
{
    ENSURE(ch->consumed >= 5 + 4 + 41 && ch->consumed <= size);
    ENSURE(ch->consumed <= SP_CH_MAX_INPUT);
    ENSURE(ch->record_version >> 8 == 3);
    ENSURE(ch->legacy_version >> 8 == 3);

    ENSURE(ch->sni_len <= 255);
    ENSURE(ch->sni[ch->sni_len] == '\0' && strlen(ch->sni) == ch->sni_len);
    for (size_t i = 0; i < ch->sni_len; i++)
        ENSURE(is_host_char(ch->sni[i]));

    /* The ALPN list iterates to exactly its end, in non-empty steps. */
    ENSURE(ch->alpn_len <= sizeof ch->alpn);
    size_t pos = 0, len = 0, steps = 0, total = 0;
    const char *name;
    while ((name = sp_client_hello_alpn_next(ch, &pos, &len)) != NULL) {
        ENSURE(len >= 1 && pos <= ch->alpn_len);
        ENSURE(name >= ch->alpn && name + len <= ch->alpn + ch->alpn_len);
        total += 1 + len;
        ENSURE(++steps <= sizeof ch->alpn / 2);
    }
    ENSURE(pos == ch->alpn_len && total == ch->alpn_len);

    ENSURE(ch->nversions <= 32);
    for (size_t i = 0; i < ch->nversions; i++) {
        ENSURE(!is_grease(ch->versions[i]));
        if (ch->versions[i] >> 8 == 3)
            ENSURE(ch->versions[i] <= ch->max_version);
    }
    ENSURE(ch->max_version == 0 || ch->max_version >> 8 == 3);
    if (ch->nversions == 0 && ch->max_version != 0)
        ENSURE(ch->max_version == ch->legacy_version);
}

/* A cut after k of size bytes must answer NEED_MORE, or what the whole answered with
 * the same fields. */
static void check_prefix(const uint8_t *data, size_t size, size_t k, sp_ch_status whole_st,
                         const sp_client_hello *whole)
{
    if (k > size)
        return;
    sp_client_hello part;
    sp_ch_status st = parse_copy(data, k, &part);
    if (st == SP_CH_NEED_MORE)
        return;
    ENSURE(st == whole_st);
    if (st == SP_CH_OK)
        ENSURE(memcmp(&part, whole, sizeof part) == 0);
}

/* The handshake message of a parsed hello, out of its records. */
static size_t handshake_of(const uint8_t *data, size_t consumed, uint8_t *hs)
{
    size_t n = 0;
    for (size_t at = 0; at < consumed;) {
        ENSURE(consumed - at >= 5);
        size_t len = (size_t)data[at + 3] << 8 | data[at + 4];
        ENSURE(len >= 1 && len <= consumed - at - 5);
        memcpy(hs + n, data + at + 5, len);
        n += len;
        at += 5 + len;
    }
    return n;
}

static void check_reframed(const uint8_t *data, const sp_client_hello *whole, size_t record)
{
    uint8_t *hs = malloc(whole->consumed);
    ENSURE(hs != NULL);
    size_t n = handshake_of(data, whole->consumed, hs);
    size_t framed_len = n + 5 * ((n + record - 1) / record);
    uint8_t *framed = malloc(framed_len);
    ENSURE(framed != NULL);
    size_t at = 0;
    for (size_t off = 0; off < n; off += record) {
        size_t k = n - off < record ? n - off : record;
        framed[at++] = 0x16;
        framed[at++] = 0x03;
        framed[at++] = 0x01;
        framed[at++] = (uint8_t)(k >> 8);
        framed[at++] = (uint8_t)k;
        memcpy(framed + at, hs + off, k);
        at += k;
    }
    ENSURE(at == framed_len);

    sp_client_hello ch;
    sp_ch_status st = parse_copy(framed, framed_len, &ch);
    if (framed_len > SP_CH_MAX_INPUT) {
        ENSURE(st == SP_CH_TOO_LARGE);
    } else {
        ENSURE(st == SP_CH_OK);
        ENSURE(ch.consumed == framed_len && ch.record_version == 0x0301);
        ch.consumed = whole->consumed;
        ch.record_version = whole->record_version;
        ENSURE(memcmp(&ch, whole, sizeof ch) == 0);
    }
    free(framed);
    free(hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_client_hello whole;
    sp_ch_status st = parse_copy(data, size, &whole);
    ENSURE(st == SP_CH_NEED_MORE || st == SP_CH_OK || st == SP_CH_NOT_TLS ||
           st == SP_CH_INVALID || st == SP_CH_TOO_LARGE);
    if (st == SP_CH_OK)
        check_hello(&whole, size);
    /* Decided from the first byte (or two) when not TLS at all. */
    if (size >= 1 && data[0] != 0x16)
        ENSURE(st == SP_CH_NOT_TLS);
    if (size >= 2 && data[0] == 0x16 && data[1] != 0x03)
        ENSURE(st == SP_CH_NOT_TLS);
    if (st == SP_CH_NOT_TLS) {
        ENSURE(size >= 1);
        ENSURE(data[0] != 0x16 || (size >= 2 && data[1] != 0x03));
    }

    /* FNV-1a over the input picks the cut and the record size. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    if (size > 0) {
        check_prefix(data, size, h % size, st, &whole);
        check_prefix(data, size, size - 1, st, &whole);
        check_prefix(data, size, size / 2, st, &whole);
        check_prefix(data, size, 5, st, &whole);
        check_prefix(data, size, 9, st, &whole);
    }
    if (st == SP_CH_OK) {
        /* The hello ends where consumed says: those bytes alone read the same. */
        sp_client_hello again;
        ENSURE(parse_copy(data, whole.consumed, &again) == SP_CH_OK);
        ENSURE(memcmp(&again, &whole, sizeof again) == 0);
        check_prefix(data, size, whole.consumed - 1, st, &whole);
        size_t record = 1 + (h >> 8) % 700;
        if ((h & 3) == 0)
            record = 1 + (h >> 8) % 8;
        check_reframed(data, &whole, record);
    }
    return 0;
}
