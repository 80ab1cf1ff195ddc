/*
 * libFuzzer target for core/proto/proxy_protocol.h.
 *
 * The input is parsed as received data. Whatever the verdict, shorter inputs must agree
 * with it (a prefix of an accepted header is NEED_MORE, a prefix of anything is never
 * OK unless the whole is OK with the same header). An accepted header is checked for
 * consistency, then its addresses and TLVs are written back with the writer of the same
 * version (and of the other one) and parsed again to the same values; a TCP4 line, which
 * has only one spelling, must come back byte for byte. Separately, the first 36 bytes are
 * taken as two raw addresses and two ports for both writers, so the writers see every
 * address, not only ones that parsed.
 */
#define _POSIX_C_SOURCE 200809L

#include "proto/proxy_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#define ENSURE(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static bool same_ip(const sp_ip *a, const sp_ip *b) { return memcmp(a, b, sizeof *a) == 0; }

static bool is_zero_ip(const sp_ip *a)
{
    static const sp_ip zero;
    return same_ip(a, &zero);
}

static bool same_ssl(const sp_pp_ssl *a, const sp_pp_ssl *b)
{
    return a->present == b->present && a->client == b->client && a->verify == b->verify &&
           strcmp(a->version, b->version) == 0 && strcmp(a->cn, b->cn) == 0 &&
           strcmp(a->cipher, b->cipher) == 0 && strcmp(a->sig_alg, b->sig_alg) == 0 &&
           strcmp(a->key_alg, b->key_alg) == 0;
}

/* The TLVs our writer can carry. */
static bool same_tlvs(const sp_proxy_header *a, const sp_proxy_header *b)
{
    return a->authority_len == b->authority_len &&
           memcmp(a->authority, b->authority, a->authority_len + 1) == 0 &&
           a->alpn_len == b->alpn_len && memcmp(a->alpn, b->alpn, a->alpn_len + 1) == 0 &&
           a->unique_id_len == b->unique_id_len &&
           memcmp(a->unique_id, b->unique_id, a->unique_id_len) == 0;
}

static bool same_header(const sp_proxy_header *a, const sp_proxy_header *b)
{
    return a->version == b->version && a->local == b->local && a->family == b->family &&
           a->datagram == b->datagram && same_ip(&a->src, &b->src) &&
           same_ip(&a->dst, &b->dst) && a->src_port == b->src_port &&
           a->dst_port == b->dst_port && strcmp(a->unix_src, b->unix_src) == 0 &&
           strcmp(a->unix_dst, b->unix_dst) == 0 && same_tlvs(a, b) &&
           a->crc_present == b->crc_present && same_ssl(&a->ssl, &b->ssl) &&
           a->length == b->length;
}

static bool terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

/* What every accepted header satisfies. */
static void check_header(const sp_proxy_header *h, size_t len)
{
    ENSURE(h->length <= len);
    ENSURE(h->version == 1 || h->version == 2);
    if (h->version == 1) {
        ENSURE(h->length >= 15 && h->length <= SP_PP_V1_MAX);
        ENSURE(h->family == AF_INET || h->family == AF_INET6 || h->family == AF_UNSPEC);
        ENSURE(!h->datagram && !h->crc_present && !h->ssl.present);
        ENSURE(h->authority_len == 0 && h->alpn_len == 0 && h->unique_id_len == 0);
    } else {
        ENSURE(h->length >= 16 && h->length <= 16 + SP_PP_V2_MAX_TLV);
    }
    ENSURE(h->local == (h->family == AF_UNSPEC));
    if (h->local || h->family == AF_UNIX) {
        ENSURE(is_zero_ip(&h->src) && is_zero_ip(&h->dst));
        ENSURE(h->src_port == 0 && h->dst_port == 0);
    }
    if (h->local)
        ENSURE(!h->datagram);
    if (h->family == AF_INET)
        ENSURE(sp_ip_is_v4(&h->src) && sp_ip_is_v4(&h->dst));
    if (h->family != AF_UNIX)
        ENSURE(h->unix_src[0] == '\0' && h->unix_dst[0] == '\0');
    ENSURE(terminated(h->unix_src, sizeof h->unix_src));
    ENSURE(terminated(h->unix_dst, sizeof h->unix_dst));
    ENSURE(h->authority_len < sizeof h->authority);
    ENSURE(strlen(h->authority) == h->authority_len);
    ENSURE(h->alpn_len < sizeof h->alpn && h->alpn[h->alpn_len] == '\0');
    ENSURE(h->unique_id_len <= sizeof h->unique_id);
    const sp_pp_ssl *s = &h->ssl;
    ENSURE(terminated(s->version, sizeof s->version) && terminated(s->cn, sizeof s->cn));
    ENSURE(terminated(s->cipher, sizeof s->cipher));
    ENSURE(terminated(s->sig_alg, sizeof s->sig_alg));
    ENSURE(terminated(s->key_alg, sizeof s->key_alg));
    if (!s->present)
        ENSURE(s->client == 0 && s->verify == 0 && s->version[0] == '\0' &&
               s->cn[0] == '\0' && s->cipher[0] == '\0');
}

static sp_pp_status parse(const uint8_t *d, size_t n, sp_proxy_header *h)
{
    const char *why = NULL;
    sp_pp_status st = sp_proxy_parse(d, n, h, &why);
    ENSURE(st == SP_PP_OK || st == SP_PP_NEED_MORE || st == SP_PP_INVALID);
    if (st == SP_PP_INVALID)
        ENSURE(why != NULL && why[0] != '\0');
    if (st == SP_PP_OK)
        check_header(h, n);
    else
        ENSURE(h->version == 0 && h->length == 0 && is_zero_ip(&h->src));
    return st;
}

/* A prefix of the input must agree with the verdict on the whole. */
static void check_prefix(const uint8_t *d, size_t k, sp_pp_status whole,
                         const sp_proxy_header *h)
{
    sp_proxy_header p;
    sp_pp_status st = parse(d, k, &p);
    if (whole == SP_PP_OK && k < h->length)
        ENSURE(st == SP_PP_NEED_MORE);
    else if (whole == SP_PP_OK)
        ENSURE(st == SP_PP_OK && same_header(&p, h));
    else if (whole == SP_PP_NEED_MORE)
        ENSURE(st == SP_PP_NEED_MORE);
    else
        ENSURE(st != SP_PP_OK);
}

static void check_prefixes(const uint8_t *d, size_t n, sp_pp_status whole,
                           const sp_proxy_header *h)
{
    if (n <= 160) {
        for (size_t k = 0; k < n; k++)
            check_prefix(d, k, whole, h);
        return;
    }
    for (size_t k = 0; k < 64; k++)
        check_prefix(d, k, whole, h);
    for (size_t k = 64; k < n; k += n / 32)
        check_prefix(d, k, whole, h);
    check_prefix(d, n - 1, whole, h);
    if (whole == SP_PP_OK && h->length > 0) {
        check_prefix(d, h->length - 1, whole, h);
        check_prefix(d, h->length, whole, h);
    }
}

static sp_pp_tlvs tlvs_of(const sp_proxy_header *h)
{
    sp_pp_tlvs t = {
        .authority = h->authority_len ? h->authority : NULL,
        .alpn = h->alpn,
        .alpn_len = h->alpn_len,
        .unique_id = h->unique_id,
        .unique_id_len = h->unique_id_len,
        .crc32c = h->crc_present,
    };
    return t;
}

/* Writes an accepted header's content again with both writers and reads it back. */
static void check_rewrite(const uint8_t *d, const sp_proxy_header *h)
{
    bool addresses = !h->local && (h->family == AF_INET || h->family == AF_INET6);
    const sp_ip *src = addresses ? &h->src : NULL, *dst = addresses ? &h->dst : NULL;
    bool v4 = addresses && sp_ip_is_v4(src) && sp_ip_is_v4(dst);
    sp_proxy_header back;

    char line[SP_PP_V1_MAX + 1];
    size_t n = sp_proxy_write_v1(line, sizeof line, src, h->src_port, dst, h->dst_port);
    ENSURE(n > 0 && n <= SP_PP_V1_MAX && strlen(line) == n);
    ENSURE(parse((const uint8_t *)line, n, &back) == SP_PP_OK && back.length == n);
    ENSURE(back.version == 1 && back.local == !addresses);
    if (addresses) {
        ENSURE(back.family == (v4 ? AF_INET : AF_INET6));
        ENSURE(same_ip(&back.src, src) && same_ip(&back.dst, dst));
        ENSURE(back.src_port == h->src_port && back.dst_port == h->dst_port);
    }
    /* A TCP4 line has exactly one spelling. */
    if (h->version == 1 && h->family == AF_INET)
        ENSURE(n == h->length && memcmp(line, d, n) == 0);

    uint8_t bin[16 + SP_PP_V2_MAX_TLV];
    sp_pp_tlvs t = tlvs_of(h);
    n = sp_proxy_write_v2(bin, sizeof bin, src, h->src_port, dst, h->dst_port, &t);
    ENSURE(n >= 16);
    ENSURE(parse(bin, n, &back) == SP_PP_OK && back.length == n);
    ENSURE(back.version == 2 && back.local == !addresses && !back.datagram);
    if (addresses) {
        ENSURE(back.family == (v4 ? AF_INET : AF_INET6));
        ENSURE(same_ip(&back.src, src) && same_ip(&back.dst, dst));
        ENSURE(back.src_port == h->src_port && back.dst_port == h->dst_port);
    }
    ENSURE(same_tlvs(&back, h) && back.crc_present == h->crc_present);
    /* One byte short of the buffer it needs: refused. */
    ENSURE(sp_proxy_write_v2(bin, n - 1, src, h->src_port, dst, h->dst_port, &t) == 0);
}

/* Raw addresses through both writers. */
static void check_writers(const uint8_t *d, size_t size)
{
    sp_ip src, dst;
    memcpy(src.b, d, 16);
    memcpy(dst.b, d + 16, 16);
    /* Random bytes are rarely v4-mapped; the low bits of the last byte make them so. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (d[35] & 1)
        memcpy(src.b, mapped, 12);
    if (d[35] & 2)
        memcpy(dst.b, mapped, 12);
    uint16_t sport = (uint16_t)(d[32] << 8 | d[33]), dport = (uint16_t)(d[34] << 8 | d[35]);
    bool v4 = sp_ip_is_v4(&src) && sp_ip_is_v4(&dst);
    sp_proxy_header h;

    char line[SP_PP_V1_MAX + 1];
    size_t n = sp_proxy_write_v1(line, sizeof line, &src, sport, &dst, dport);
    ENSURE(n > 0 && n <= SP_PP_V1_MAX);
    ENSURE(parse((const uint8_t *)line, n, &h) == SP_PP_OK && h.length == n);
    ENSURE(h.family == (v4 ? AF_INET : AF_INET6) && !h.local);
    ENSURE(same_ip(&h.src, &src) && same_ip(&h.dst, &dst));
    ENSURE(h.src_port == sport && h.dst_port == dport);
    ENSURE(sp_proxy_write_v1(line, n, &src, sport, &dst, dport) == 0);

    /* TLV values from the rest of the input. */
    const uint8_t *rest = d + 36;
    size_t rest_len = size - 36;
    char authority[256];
    size_t alen = rest_len < 255 ? rest_len : 255;
    memcpy(authority, rest, alen);
    authority[alen] = '\0';
    sp_pp_tlvs t = {
        .authority = authority,
        .alpn = (const char *)rest,
        .alpn_len = rest_len < 255 ? rest_len : 255,
        .unique_id = rest,
        .unique_id_len = rest_len < 128 ? rest_len : 128,
        .crc32c = (d[35] & 4) != 0,
    };
    uint8_t bin[16 + SP_PP_V2_MAX_TLV];
    n = sp_proxy_write_v2(bin, sizeof bin, &src, sport, &dst, dport, &t);
    ENSURE(n >= 16 + 12);
    ENSURE(parse(bin, n, &h) == SP_PP_OK && h.length == n);
    ENSURE(h.family == (v4 ? AF_INET : AF_INET6) && !h.local && !h.datagram);
    ENSURE(same_ip(&h.src, &src) && same_ip(&h.dst, &dst));
    ENSURE(h.src_port == sport && h.dst_port == dport);
    ENSURE(h.authority_len == strlen(authority) && strcmp(h.authority, authority) == 0);
    ENSURE(h.alpn_len == t.alpn_len && memcmp(h.alpn, rest, t.alpn_len) == 0);
    ENSURE(h.unique_id_len == t.unique_id_len);
    ENSURE(memcmp(h.unique_id, rest, t.unique_id_len) == 0);
    ENSURE(h.crc_present == t.crc32c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_proxy_header h;
    sp_pp_status st = parse(data, size, &h);
    check_prefixes(data, size, st, &h);
    if (st == SP_PP_OK)
        check_rewrite(data, &h);
    if (size >= 36)
        check_writers(data, size);

    /* CRC32C continues across a split anywhere. */
    size_t k = size ? data[0] % (size + 1) : 0;
    uint32_t whole = sp_crc32c(0, data, size);
    ENSURE(sp_crc32c(sp_crc32c(0, data, k), data + k, size - k) == whole);
    return 0;
}
