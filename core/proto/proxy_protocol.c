#include "proto/proxy_protocol.h"

#include <string.h>

#include <sys/socket.h>

/* ---- CRC32C ------------------------------------------------------------------------ */

/* The reflected Castagnoli polynomial 0x82F63B78, one entry per byte value. */
static const uint32_t crc32c_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c,
    0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b,
    0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
    0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
    0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc,
    0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
    0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
    0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
    0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
    0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a,
    0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595, 0x417b1dbc, 0xb3109ebf,
    0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f,
    0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
    0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
    0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
    0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e,
    0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
    0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e,
    0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
    0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
    0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c,
    0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4,
    0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b,
    0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c,
    0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
    0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
    0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975,
    0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
    0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905,
    0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
    0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
    0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff,
    0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
    0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78,
    0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee,
    0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
    0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
    0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69,
    0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
    0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t sp_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < len; i++)
        c = crc32c_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- shared ------------------------------------------------------------------------ */

static sp_pp_status invalid(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return SP_PP_INVALID;
}

static sp_ip ip_from_v4(const uint8_t q[4])
{
    sp_ip ip = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}};
    memcpy(ip.b + 12, q, 4);
    return ip;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

/* ---- v1: reading ------------------------------------------------------------------- */

/* The fields after "PROXY TCP4 " / "PROXY TCP6 ". */
typedef enum { FIELD_V4, FIELD_V6, FIELD_PORT } v1_field;

/* Shortest text of each kind: "0.0.0.0", "::", "0". */
static size_t field_min_len(v1_field kind)
{
    return kind == FIELD_V4 ? 7 : kind == FIELD_V6 ? 2 : 1;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Decimal 0..max without leading zeros; n == 0 is "not yet" for prefixes, so callers
 * check emptiness themselves. Returns NULL, or the reason. */
static const char *check_decimal(const char *s, size_t n, unsigned max, size_t max_digits,
                                 const char *bad, const char *range, unsigned *value)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return bad;
        if (i == max_digits)
            return range;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (n > 1 && s[0] == '0')
        return bad; /* a leading zero: octal to some readers */
    if (v > max)
        return range;
    *value = v;
    return NULL;
}

/* Can the start s[0..n) of a dotted quad still become one? Sets *more to the fewest
 * bytes that complete it. Every prefix of a valid octet is a valid octet, so a prefix is
 * good when its finished octets are good and its last one is empty or good. */
static bool v4_prefix_ok(const char *s, size_t n, size_t *more)
{
    size_t start = 0, dots = 0;
    unsigned v;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        size_t len = i - start;
        if (i < n && len == 0)
            return false; /* an empty finished octet */
        if (check_decimal(s + start, len, 255, 3, "bad address", "bad address", &v) != NULL)
            return false;
        if (i < n && ++dots > 3)
            return false;
        start = i + 1;
    }
    *more = (3 - dots) * 2 + (start == n ? 1 : 0); /* ".0" per missing octet */
    return true;
}

/* Parses s[0..n) followed by suffix as a whole address. sp_ip_parse wants a C string,
 * so a NUL inside s, which would cut it short, is refused here. */
static bool parse_text(const char *s, size_t n, const char *suffix, sp_ip *ip)
{
    char t[SP_IP_STRLEN + 8];
    size_t k = strlen(suffix);
    if (n + k >= sizeof t || memchr(s, '\0', n) != NULL)
        return false;
    memcpy(t, s, n);
    memcpy(t + n, suffix, k + 1);
    return sp_ip_parse(t, ip) == 0;
}

/* Can the start s[0..n) of IPv6 text still become an address? Sets *more to the fewest
 * bytes that complete it. With a dotted quad begun after the last ':', the part before
 * it must be able to take a quad and the quad must be a good start. Otherwise the
 * shortest completions are among: nothing, ":" (making "::" or ending a gap), "0" (the
 * eighth group), "::" (after a group, when there is no gap yet), "0::". */
static bool v6_prefix_ok(const char *s, size_t n, size_t *more)
{
    sp_ip ip;
    const char *dot = memchr(s, '.', n);
    if (dot != NULL) {
        size_t head = n;
        while (head > 0 && s[head - 1] != ':')
            head--;
        if (head == 0 || head > (size_t)(dot - s))
            return false;
        return parse_text(s, head, "0.0.0.0", &ip) &&
               v4_prefix_ok(s + head, n - head, more);
    }
    for (size_t i = 0; i < n; i++)
        if (!is_hex(s[i]) && s[i] != ':')
            return false;
    if (n == 0) {
        *more = field_min_len(FIELD_V6);
        return true;
    }
    static const char *const tails[] = {"", ":", "0", "::", "0::"};
    for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
        if (parse_text(s, n, tails[k], &ip)) {
            *more = strlen(tails[k]);
            return true;
        }
    }
    return false;
}

/* A field the input ends in: NULL when it can still be completed, with *more the fewest
 * bytes that do; else the reason. */
static const char *field_prefix(v1_field kind, const char *s, size_t n, size_t *more)
{
    unsigned v;
    switch (kind) {
    case FIELD_V4:
        return n <= 15 && v4_prefix_ok(s, n, more) ? NULL : "bad address";
    case FIELD_V6:
        return n < SP_IP_STRLEN && v6_prefix_ok(s, n, more) ? NULL : "bad address";
    case FIELD_PORT:
        *more = n == 0 ? 1 : 0;
        return check_decimal(s, n, 65535, 5, "bad port", "port out of range", &v);
    }
    return "bad address";
}

/* A whole field. Addresses must be written in the family's own syntax. */
static const char *field_value(v1_field kind, const char *s, size_t n, sp_ip *ip,
                               uint16_t *port)
{
    unsigned v;
    const char *why;
    switch (kind) {
    case FIELD_V4:
    case FIELD_V6:
        if ((memchr(s, ':', n) != NULL) != (kind == FIELD_V6) || !parse_text(s, n, "", ip))
            return "bad address";
        return NULL;
    case FIELD_PORT:
        if (n == 0)
            return "bad port";
        why = check_decimal(s, n, 65535, 5, "bad port", "port out of range", &v);
        if (why == NULL)
            *port = (uint16_t)v;
        return why;
    }
    return "bad address";
}

/* Where the field starting at `at` ends: the next ' ', '\r' or '\n', or n. */
static size_t field_end(const uint8_t *d, size_t n, size_t at)
{
    while (at < n && d[at] != ' ' && d[at] != '\r' && d[at] != '\n')
        at++;
    return at;
}

/* The input ended after n bytes; the line needs at least `more` further bytes. */
static sp_pp_status v1_need(size_t n, size_t more, const char **why)
{
    return n + more > SP_PP_V1_MAX ? invalid(why, "v1 line too long") : SP_PP_NEED_MORE;
}

/* "UNKNOWN" ended at `at`, before n: anything, then CRLF. */
static sp_pp_status parse_v1_unknown(const uint8_t *d, size_t n, size_t at,
                                     sp_proxy_header *out, const char **why)
{
    if (d[at] != ' ' && d[at] != '\r')
        return invalid(why, d[at] == '\n' ? "bad v1 line end" : "bad v1 protocol");
    for (; at < n; at++) {
        if (d[at] == '\n')
            return invalid(why, "bad v1 line end");
        if (d[at] != '\r')
            continue;
        if (at + 1 == n)
            return v1_need(n, 1, why);
        if (d[at + 1] != '\n')
            return invalid(why, "bad v1 line end");
        out->local = true;
        out->family = AF_UNSPEC;
        out->length = at + 2;
        return SP_PP_OK;
    }
    return v1_need(n, 2, why);
}

static bool is_prefix_of(const uint8_t *s, size_t n, const char *word)
{
    return n <= strlen(word) && memcmp(s, word, n) == 0;
}

static bool equals(const uint8_t *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

static sp_pp_status parse_v1(const uint8_t *d, size_t len, sp_proxy_header *out,
                             const char **why)
{
    static const char sig[] = "PROXY ";
    const size_t sig_len = sizeof sig - 1;
    /* Nothing past SP_PP_V1_MAX can belong to the line; needing more there is "too
     * long". */
    size_t n = len < SP_PP_V1_MAX ? len : SP_PP_V1_MAX;

    if (memcmp(d, sig, n < sig_len ? n : sig_len) != 0)
        return invalid(why, "bad v1 signature");
    if (n < sig_len)
        return SP_PP_NEED_MORE;

    size_t at = sig_len, end = field_end(d, n, at);
    const uint8_t *proto = d + at;
    size_t proto_len = end - at;
    if (end == n) {
        if (!is_prefix_of(proto, proto_len, "TCP4") &&
            !is_prefix_of(proto, proto_len, "TCP6") &&
            !is_prefix_of(proto, proto_len, "UNKNOWN"))
            return invalid(why, "bad v1 protocol");
        return SP_PP_NEED_MORE;
    }
    out->version = 1;
    if (equals(proto, proto_len, "UNKNOWN"))
        return parse_v1_unknown(d, n, end, out, why);
    v1_field addr;
    if (equals(proto, proto_len, "TCP4"))
        addr = FIELD_V4;
    else if (equals(proto, proto_len, "TCP6"))
        addr = FIELD_V6;
    else
        return invalid(why, "bad v1 protocol");
    if (d[end] != ' ')
        return invalid(why, "missing v1 field");

    const v1_field kinds[4] = {addr, addr, FIELD_PORT, FIELD_PORT};
    sp_ip *ips[2] = {&out->src, &out->dst};
    uint16_t *ports[4] = {NULL, NULL, &out->src_port, &out->dst_port};
    at = end + 1;
    for (int i = 0; i < 4; i++) {
        const char *text = (const char *)d + at;
        const char *reason;
        end = field_end(d, n, at);
        if (end == n) {
            size_t more;
            reason = field_prefix(kinds[i], text, end - at, &more);
            if (reason != NULL)
                return invalid(why, reason);
            for (int k = i + 1; k < 4; k++)
                more += 1 + field_min_len(kinds[k]);
            return v1_need(n, more + 2, why);
        }
        reason = field_value(kinds[i], text, end - at, i < 2 ? ips[i] : NULL, ports[i]);
        if (reason != NULL)
            return invalid(why, reason);
        if (i < 3 && d[end] != ' ')
            return invalid(why, "missing v1 field");
        if (i == 3 && d[end] != '\r')
            return invalid(why, "bad v1 line end");
        at = end + 1;
    }
    if (at == n)
        return v1_need(n, 1, why);
    if (d[at] != '\n')
        return invalid(why, "bad v1 line end");
    out->family = addr == FIELD_V4 ? AF_INET : AF_INET6;
    out->length = at + 1;
    return SP_PP_OK;
}

/* ---- v2: reading ------------------------------------------------------------------- */

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_FIXED 16 /* signature, version/command, family/transport, length */

enum { CMD_LOCAL = 0x0, CMD_PROXY = 0x1 };
enum { FAM_UNSPEC = 0x0, FAM_INET = 0x1, FAM_INET6 = 0x2, FAM_UNIX = 0x3 };
enum { TRANS_UNSPEC = 0x0, TRANS_STREAM = 0x1, TRANS_DGRAM = 0x2 };

/* The address block by family: two addresses, then two ports for INET and INET6. */
static const size_t addr_block_len[4] = {0, 12, 36, 216};
#define UNIX_PATH_LEN 108

enum {
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_CRC32C = 0x03,
    PP2_TYPE_NOOP = 0x04,
    PP2_TYPE_UNIQUE_ID = 0x05,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_SUBTYPE_SSL_CIPHER = 0x23,
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
};

#define TLV_HEAD 3        /* type, 16-bit length */
#define SSL_HEAD 5        /* client, 32-bit verify */
#define CRC32C_LEN 4
#define UNIQUE_ID_MAX 128
#define TEXT_MAX 255      /* AUTHORITY and ALPN: what sp_proxy_header holds with a NUL */
_Static_assert(sizeof ((sp_proxy_header *)0)->authority == TEXT_MAX + 1, "authority size");
_Static_assert(sizeof ((sp_proxy_header *)0)->alpn == TEXT_MAX + 1, "ALPN size");
_Static_assert(sizeof ((sp_proxy_header *)0)->unique_id == UNIQUE_ID_MAX, "unique ID size");

/* State of one walk over the TLVs. */
typedef struct tlv_walk {
    uint32_t seen;     /* bit per known type already met: each may appear once */
    size_t crc_at;     /* offset of the CRC32C value, when crc_seen */
    bool crc_seen;
} tlv_walk;

/* A bit per known type, for refusing repeats (which one would count?); 0 for the types
 * that are skipped and may repeat. Sub-TLV types only count inside PP2_TYPE_SSL. */
static uint32_t type_bit(uint8_t type, bool in_ssl)
{
    if (in_ssl)
        return type >= PP2_SUBTYPE_SSL_VERSION && type <= PP2_SUBTYPE_SSL_KEY_ALG
                   ? 1u << (type - PP2_SUBTYPE_SSL_VERSION)
                   : 0;
    switch (type) {
    case PP2_TYPE_ALPN:
    case PP2_TYPE_AUTHORITY:
    case PP2_TYPE_CRC32C:
    case PP2_TYPE_UNIQUE_ID:
        return 1u << type;
    case PP2_TYPE_SSL:
        return 1u << 8;
    default:
        return 0; /* NOOP, NETNS, custom, experimental, future */
    }
}

/* What the type and length alone decide, so that it is known before the value arrives. */
static const char *check_tlv_head(uint8_t type, size_t vlen, uint32_t *seen)
{
    uint32_t bit = type_bit(type, false);
    if (*seen & bit)
        return "duplicate TLV";
    *seen |= bit;
    switch (type) {
    case PP2_TYPE_ALPN:
        return vlen > TEXT_MAX ? "ALPN too long" : NULL;
    case PP2_TYPE_AUTHORITY:
        return vlen > TEXT_MAX ? "authority too long" : NULL;
    case PP2_TYPE_CRC32C:
        return vlen != CRC32C_LEN ? "bad CRC32C length" : NULL;
    case PP2_TYPE_UNIQUE_ID:
        return vlen > UNIQUE_ID_MAX ? "unique ID too long" : NULL;
    case PP2_TYPE_SSL:
        return vlen < SSL_HEAD ? "SSL TLV too short" : NULL;
    default:
        return NULL;
    }
}

/* Copies a string value to a NUL-terminated field of size cap. */
static const char *copy_text(char *dst, size_t cap, const uint8_t *v, size_t n,
                             const char *too_long)
{
    if (n >= cap)
        return too_long;
    if (memchr(v, '\0', n) != NULL)
        return "NUL in TLV string";
    memcpy(dst, v, n);
    dst[n] = '\0';
    return NULL;
}

/* The value of a PP2_TYPE_SSL TLV, at least SSL_HEAD bytes. */
static const char *parse_ssl(const uint8_t *v, size_t n, sp_pp_ssl *ssl)
{
    static const char *const too_long = "SSL string too long";
    uint32_t seen = 0;
    ssl->present = true;
    ssl->client = v[0];
    ssl->verify = get32(v + 1);
    for (size_t at = SSL_HEAD; at < n;) {
        if (n - at < TLV_HEAD)
            return "TLV overruns header";
        uint8_t type = v[at];
        size_t vlen = get16(v + at + 1);
        const uint8_t *sub = v + at + TLV_HEAD;
        if (vlen > n - at - TLV_HEAD)
            return "TLV overruns header";
        uint32_t bit = type_bit(type, true);
        if (seen & bit)
            return "duplicate TLV";
        seen |= bit;
        const char *why = NULL;
        switch (type) {
        case PP2_SUBTYPE_SSL_VERSION:
            why = copy_text(ssl->version, sizeof ssl->version, sub, vlen, too_long);
            break;
        case PP2_SUBTYPE_SSL_CN:
            why = copy_text(ssl->cn, sizeof ssl->cn, sub, vlen, too_long);
            break;
        case PP2_SUBTYPE_SSL_CIPHER:
            why = copy_text(ssl->cipher, sizeof ssl->cipher, sub, vlen, too_long);
            break;
        case PP2_SUBTYPE_SSL_SIG_ALG:
            why = copy_text(ssl->sig_alg, sizeof ssl->sig_alg, sub, vlen, too_long);
            break;
        case PP2_SUBTYPE_SSL_KEY_ALG:
            why = copy_text(ssl->key_alg, sizeof ssl->key_alg, sub, vlen, too_long);
            break;
        default:
            break;
        }
        if (why != NULL)
            return why;
        at += TLV_HEAD + vlen;
    }
    return NULL;
}

/* A whole TLV value at offset `at` of the header, its head already checked. */
static const char *parse_tlv_value(uint8_t type, const uint8_t *d, size_t at, size_t vlen,
                                   tlv_walk *w, sp_proxy_header *out)
{
    const uint8_t *v = d + at;
    switch (type) {
    case PP2_TYPE_ALPN:
        memcpy(out->alpn, v, vlen);
        out->alpn[vlen] = '\0';
        out->alpn_len = vlen;
        return NULL;
    case PP2_TYPE_AUTHORITY:
        out->authority_len = vlen;
        return copy_text(out->authority, sizeof out->authority, v, vlen,
                         "authority too long");
    case PP2_TYPE_CRC32C:
        w->crc_seen = true;
        w->crc_at = at;
        return NULL;
    case PP2_TYPE_UNIQUE_ID:
        memcpy(out->unique_id, v, vlen);
        out->unique_id_len = vlen;
        return NULL;
    case PP2_TYPE_SSL:
        return parse_ssl(v, vlen, &out->ssl);
    default:
        return NULL; /* NOOP, NETNS, custom, experimental, future */
    }
}

/* The TLVs in d[at..end), of which d[..avail) has arrived. Every TLV is checked as far
 * as its bytes are there. */
static sp_pp_status parse_tlvs(const uint8_t *d, size_t at, size_t avail, size_t end,
                               tlv_walk *w, sp_proxy_header *out, const char **why)
{
    while (at < end) {
        if (end - at < TLV_HEAD)
            return invalid(why, "TLV overruns header");
        if (avail - at < TLV_HEAD)
            return SP_PP_NEED_MORE;
        uint8_t type = d[at];
        size_t vlen = get16(d + at + 1);
        if (vlen > end - at - TLV_HEAD)
            return invalid(why, "TLV overruns header");
        const char *reason = check_tlv_head(type, vlen, &w->seen);
        if (reason != NULL)
            return invalid(why, reason);
        if (avail - at - TLV_HEAD < vlen)
            return SP_PP_NEED_MORE;
        reason = parse_tlv_value(type, d, at + TLV_HEAD, vlen, w, out);
        if (reason != NULL)
            return invalid(why, reason);
        at += TLV_HEAD + vlen;
    }
    return SP_PP_OK;
}

/* CRC32C of the header with the 4 bytes at crc_at read as zeros. */
static bool crc_matches(const uint8_t *d, size_t len, size_t crc_at)
{
    static const uint8_t zeros[CRC32C_LEN] = {0};
    uint32_t c = sp_crc32c(0, d, crc_at);
    c = sp_crc32c(c, zeros, CRC32C_LEN);
    c = sp_crc32c(c, d + crc_at + CRC32C_LEN, len - crc_at - CRC32C_LEN);
    return c == get32(d + crc_at);
}

static void copy_unix_path(char dst[UNIX_PATH_LEN + 1], const uint8_t *src)
{
    const uint8_t *nul = memchr(src, '\0', UNIX_PATH_LEN);
    size_t n = nul != NULL ? (size_t)(nul - src) : UNIX_PATH_LEN;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void parse_addresses(const uint8_t *a, int fam, sp_proxy_header *out)
{
    switch (fam) {
    case FAM_INET:
        out->family = AF_INET;
        out->src = ip_from_v4(a);
        out->dst = ip_from_v4(a + 4);
        out->src_port = get16(a + 8);
        out->dst_port = get16(a + 10);
        break;
    case FAM_INET6:
        out->family = AF_INET6;
        memcpy(out->src.b, a, 16);
        memcpy(out->dst.b, a + 16, 16);
        out->src_port = get16(a + 32);
        out->dst_port = get16(a + 34);
        break;
    case FAM_UNIX:
        out->family = AF_UNIX;
        copy_unix_path(out->unix_src, a);
        copy_unix_path(out->unix_dst, a + UNIX_PATH_LEN);
        break;
    }
}

static sp_pp_status parse_v2(const uint8_t *d, size_t len, sp_proxy_header *out,
                             const char **why)
{
    if (memcmp(d, v2_sig, len < sizeof v2_sig ? len : sizeof v2_sig) != 0)
        return invalid(why, "bad v2 signature");
    if (len > 12) {
        if (d[12] >> 4 != 2)
            return invalid(why, "unsupported version");
        if ((d[12] & 0xf) > CMD_PROXY)
            return invalid(why, "unknown command");
    }
    if (len > 13) {
        if (d[13] >> 4 > FAM_UNIX)
            return invalid(why, "bad address family");
        if ((d[13] & 0xf) > TRANS_DGRAM)
            return invalid(why, "bad transport protocol");
    }
    if (len < V2_FIXED)
        return SP_PP_NEED_MORE;

    int cmd = d[12] & 0xf, fam = d[13] >> 4, trans = d[13] & 0xf;
    size_t body = get16(d + 14), block = addr_block_len[fam];
    if (body > SP_PP_V2_MAX_TLV)
        return invalid(why, "v2 header too large");
    if (body < block)
        return invalid(why, "address block overruns header");
    size_t end = V2_FIXED + body, avail = len < end ? len : end;
    if (avail < V2_FIXED + block)
        return SP_PP_NEED_MORE;

    out->version = 2;
    /* LOCAL, or PROXY for something unspecified: the addresses are not to be used. */
    out->local = cmd == CMD_LOCAL || fam == FAM_UNSPEC || trans == TRANS_UNSPEC;
    out->family = AF_UNSPEC;
    if (!out->local) {
        parse_addresses(d + V2_FIXED, fam, out);
        out->datagram = trans == TRANS_DGRAM;
    }

    /* OK from the walk means it reached the end, so the whole header is here. */
    tlv_walk w = {0};
    sp_pp_status st = parse_tlvs(d, V2_FIXED + block, avail, end, &w, out, why);
    if (st != SP_PP_OK)
        return st;
    if (w.crc_seen && !crc_matches(d, end, w.crc_at))
        return invalid(why, "CRC32C mismatch");
    out->crc_present = w.crc_seen;
    out->length = end;
    return SP_PP_OK;
}

sp_pp_status sp_proxy_parse(const uint8_t *data, size_t len, sp_proxy_header *out,
                            const char **why)
{
    sp_pp_status st;
    memset(out, 0, sizeof *out);
    if (len == 0)
        return SP_PP_NEED_MORE;
    if (data[0] == 'P')
        st = parse_v1(data, len, out, why);
    else if (data[0] == v2_sig[0])
        st = parse_v2(data, len, out, why);
    else
        st = invalid(why, "not a PROXY header");
    if (st != SP_PP_OK)
        memset(out, 0, sizeof *out);
    return st;
}

/* ---- writing ----------------------------------------------------------------------- */

/* A v1 line being built; every append fits, as the longest line is SP_PP_V1_MAX. */
typedef struct line {
    char t[SP_PP_V1_MAX + 1];
    size_t n;
} line;

static void put_str(line *l, const char *s)
{
    size_t k = strlen(s);
    memcpy(l->t + l->n, s, k);
    l->n += k;
}

static void put_dec(line *l, unsigned v)
{
    char d[5];
    int k = 0;
    do {
        d[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k > 0)
        l->t[l->n++] = d[--k];
}

static void put_hex(line *l, unsigned v)
{
    static const char digits[] = "0123456789abcdef";
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        unsigned h = (v >> shift) & 0xf;
        if (h != 0 || started || shift == 0) {
            l->t[l->n++] = digits[h];
            started = true;
        }
    }
}

/* An address in a TCP6 line: v4-mapped ones in hex, since the specification's IPv6
 * syntax has no dotted quad. */
static void put_v6(line *l, const sp_ip *ip)
{
    if (sp_ip_is_v4(ip)) {
        put_str(l, "::ffff:");
        put_hex(l, get16(ip->b + 12));
        put_str(l, ":");
        put_hex(l, get16(ip->b + 14));
    } else {
        l->n += sp_ip_format(ip, l->t + l->n, SP_IP_STRLEN);
    }
}

size_t sp_proxy_write_v1(char *out, size_t cap, const sp_ip *src, uint16_t sport,
                         const sp_ip *dst, uint16_t dport)
{
    line l = {.n = 0};
    if (src == NULL || dst == NULL) {
        put_str(&l, "PROXY UNKNOWN\r\n");
    } else if (sp_ip_is_v4(src) && sp_ip_is_v4(dst)) {
        put_str(&l, "PROXY TCP4 ");
        l.n += sp_ip_format(src, l.t + l.n, SP_IP_STRLEN);
        put_str(&l, " ");
        l.n += sp_ip_format(dst, l.t + l.n, SP_IP_STRLEN);
    } else {
        put_str(&l, "PROXY TCP6 ");
        put_v6(&l, src);
        put_str(&l, " ");
        put_v6(&l, dst);
    }
    if (src != NULL && dst != NULL) {
        put_str(&l, " ");
        put_dec(&l, sport);
        put_str(&l, " ");
        put_dec(&l, dport);
        put_str(&l, "\r\n");
    }
    if (cap <= l.n)
        return 0;
    memcpy(out, l.t, l.n);
    out[l.n] = '\0';
    return l.n;
}

static size_t put_tlv(uint8_t *p, uint8_t type, const void *v, size_t n)
{
    p[0] = type;
    put16(p + 1, n);
    memcpy(p + TLV_HEAD, v, n);
    return TLV_HEAD + n;
}

size_t sp_proxy_write_v2(uint8_t *out, size_t cap, const sp_ip *src, uint16_t sport,
                         const sp_ip *dst, uint16_t dport, const sp_pp_tlvs *tlvs)
{
    static const sp_pp_tlvs no_tlvs = {0};
    static const uint8_t zeros[CRC32C_LEN] = {0};
    if (tlvs == NULL)
        tlvs = &no_tlvs;
    size_t authority_len = tlvs->authority ? strnlen(tlvs->authority, TEXT_MAX + 1) : 0;
    size_t alpn_len = tlvs->alpn ? tlvs->alpn_len : 0;
    size_t unique_id_len = tlvs->unique_id ? tlvs->unique_id_len : 0;
    if (authority_len > TEXT_MAX || alpn_len > TEXT_MAX || unique_id_len > UNIQUE_ID_MAX)
        return 0;

    bool local = src == NULL || dst == NULL;
    bool v4 = !local && sp_ip_is_v4(src) && sp_ip_is_v4(dst);
    size_t block = local ? 0 : addr_block_len[v4 ? FAM_INET : FAM_INET6];
    size_t body = block + (authority_len ? TLV_HEAD + authority_len : 0) +
                  (alpn_len ? TLV_HEAD + alpn_len : 0) +
                  (unique_id_len ? TLV_HEAD + unique_id_len : 0) +
                  (tlvs->crc32c ? TLV_HEAD + CRC32C_LEN : 0);
    size_t total = V2_FIXED + body; /* at most 16 + 690, below SP_PP_V2_MAX_TLV */
    if (cap < total)
        return 0;

    memcpy(out, v2_sig, sizeof v2_sig);
    out[12] = (uint8_t)(0x20 | (local ? CMD_LOCAL : CMD_PROXY));
    out[13] = local ? 0x00 : (uint8_t)((v4 ? FAM_INET : FAM_INET6) << 4 | TRANS_STREAM);
    put16(out + 14, body);
    uint8_t *p = out + V2_FIXED;
    if (!local) {
        size_t alen = v4 ? 4 : 16, off = v4 ? 12 : 0;
        memcpy(p, src->b + off, alen);
        memcpy(p + alen, dst->b + off, alen);
        put16(p + 2 * alen, sport);
        put16(p + 2 * alen + 2, dport);
        p += block;
    }
    if (alpn_len)
        p += put_tlv(p, PP2_TYPE_ALPN, tlvs->alpn, alpn_len);
    if (authority_len)
        p += put_tlv(p, PP2_TYPE_AUTHORITY, tlvs->authority, authority_len);
    if (unique_id_len)
        p += put_tlv(p, PP2_TYPE_UNIQUE_ID, tlvs->unique_id, unique_id_len);
    if (tlvs->crc32c) {
        p += put_tlv(p, PP2_TYPE_CRC32C, zeros, CRC32C_LEN);
        put32(p - CRC32C_LEN, sp_crc32c(0, out, total));
    }
    return total;
}
