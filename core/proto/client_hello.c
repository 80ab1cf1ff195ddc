#include "proto/client_hello.h"

#include <stdbool.h>
#include <string.h>

enum {
    RECORD_HANDSHAKE = 0x16,
    HANDSHAKE_CLIENT_HELLO = 1,
    RECORD_HEADER_LEN = 5,
    HANDSHAKE_HEADER_LEN = 4,
    EXT_SERVER_NAME = 0,
    EXT_ALPN = 16,
    EXT_SUPPORTED_VERSIONS = 43,
    NAME_TYPE_HOST_NAME = 0,
};

/* Reads the handshake message out of the records it is split over, as one stream of
 * bytes. Offsets (off, msg_end) count bytes of the handshake message, header included;
 * pos counts bytes of input. Every read stops at the first problem and records it in
 * status, so callers just return it. */
typedef struct ch_reader {
    const uint8_t *in;
    size_t len;
    size_t pos;             /* next input byte */
    size_t record_left;     /* payload bytes of the current record not read yet */
    size_t off;             /* bytes of the handshake message read so far */
    size_t msg_end;         /* its total length; the header's 4 until that is read */
    bool msg_len_known;
    uint16_t record_version; /* of the first record */
    sp_ch_status status;
} ch_reader;

static bool fail(ch_reader *r, sp_ch_status status)
{
    r->status = status;
    return false;
}

/* Starts the next record, deciding from as few bytes as it can: the type byte, then the
 * major version, then the length. */
static bool next_record(ch_reader *r)
{
    bool first = r->pos == 0;
    size_t avail = r->len - r->pos;

    if (r->pos + RECORD_HEADER_LEN + 1 > SP_CH_MAX_INPUT)
        return fail(r, SP_CH_TOO_LARGE); /* not even a 1-byte record fits */
    if (avail < 1)
        return fail(r, SP_CH_NEED_MORE);
    const uint8_t *h = r->in + r->pos;
    if (h[0] != RECORD_HANDSHAKE)
        return fail(r, first ? SP_CH_NOT_TLS : SP_CH_INVALID);
    if (avail < 2)
        return fail(r, SP_CH_NEED_MORE);
    if (h[1] != 3)
        return fail(r, first ? SP_CH_NOT_TLS : SP_CH_INVALID);
    if (avail < RECORD_HEADER_LEN)
        return fail(r, SP_CH_NEED_MORE);

    size_t n = (size_t)h[3] << 8 | h[4];
    if (n == 0 || n > SP_CH_MAX_RECORD)
        return fail(r, SP_CH_INVALID);
    if (r->msg_len_known && n > r->msg_end - r->off)
        return fail(r, SP_CH_INVALID); /* carries bytes past the hello */
    if (r->pos + RECORD_HEADER_LEN + n > SP_CH_MAX_INPUT)
        return fail(r, SP_CH_TOO_LARGE);
    if (first)
        r->record_version = (uint16_t)(h[1] << 8 | h[2]);
    r->pos += RECORD_HEADER_LEN;
    r->record_left = n;
    return true;
}

/* Copies the next n bytes of the message to dst, or skips them when dst is NULL. */
static bool read_bytes(ch_reader *r, void *dst, size_t n)
{
    uint8_t *out = dst;
    if (n > r->msg_end - r->off)
        return fail(r, SP_CH_INVALID);
    while (n > 0) {
        if (r->record_left == 0 && !next_record(r))
            return false;
        size_t take = n;
        if (take > r->record_left)
            take = r->record_left;
        if (take > r->len - r->pos)
            take = r->len - r->pos;
        if (take == 0)
            return fail(r, SP_CH_NEED_MORE);
        if (out != NULL) {
            memcpy(out, r->in + r->pos, take);
            out += take;
        }
        r->pos += take;
        r->record_left -= take;
        r->off += take;
        n -= take;
    }
    return true;
}

static bool read_u8(ch_reader *r, size_t *v)
{
    uint8_t b;
    if (!read_bytes(r, &b, 1))
        return false;
    *v = b;
    return true;
}

static bool read_u16(ch_reader *r, size_t *v)
{
    uint8_t b[2];
    if (!read_bytes(r, b, 2))
        return false;
    *v = (size_t)b[0] << 8 | b[1];
    return true;
}

/* Reads a vector's length (width 1 or 2 bytes) and checks it against the vector's
 * bounds and what is left before end, the end of the container; *vec_end is where the
 * vector ends. */
static bool open_vector(ch_reader *r, int width, size_t min, size_t max, size_t end,
                        size_t *vec_end)
{
    size_t n;
    if (r->off > end || (size_t)width > end - r->off)
        return fail(r, SP_CH_INVALID);
    if (!(width == 1 ? read_u8(r, &n) : read_u16(r, &n)))
        return false;
    if (n < min || n > max || n > end - r->off)
        return fail(r, SP_CH_INVALID);
    *vec_end = r->off + n;
    return true;
}

/* A vector that must fill the rest of its container exactly. */
static bool open_filling_vector(ch_reader *r, int width, size_t min, size_t end)
{
    size_t vec_end;
    if (!open_vector(r, width, min, SIZE_MAX, end, &vec_end))
        return false;
    return vec_end == end || fail(r, SP_CH_INVALID);
}

static bool is_host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

/* RFC 6066 3: a ServerNameList. Like OpenSSL and BoringSSL, only a list of exactly one
 * host_name is accepted: other name types were never defined, and a second name is
 * where two parsers would disagree on which one counts. */
static bool parse_server_name(ch_reader *r, size_t end, sp_client_hello *out)
{
    size_t type, name_end;
    if (!open_filling_vector(r, 2, 1, end) || !read_u8(r, &type))
        return false;
    if (type != NAME_TYPE_HOST_NAME)
        return fail(r, SP_CH_INVALID);
    if (!open_vector(r, 2, 1, sizeof out->sni - 1, end, &name_end))
        return false;
    if (name_end != end)
        return fail(r, SP_CH_INVALID); /* more than one name */
    size_t n = name_end - r->off;
    if (!read_bytes(r, out->sni, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_host_char((uint8_t)out->sni[i]))
            return fail(r, SP_CH_INVALID);
    out->sni[n] = '\0';
    out->sni_len = n;
    return true;
}

/* RFC 7301 3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>. */
static bool parse_alpn(ch_reader *r, size_t end, sp_client_hello *out)
{
    bool full = false;
    if (!open_filling_vector(r, 2, 2, end))
        return false;
    while (r->off < end) {
        size_t name_end;
        if (!open_vector(r, 1, 1, 255, end, &name_end))
            return false;
        size_t n = name_end - r->off;
        if (!full && out->alpn_len + 1 + n <= sizeof out->alpn) {
            out->alpn[out->alpn_len] = (char)n;
            if (!read_bytes(r, out->alpn + out->alpn_len + 1, n))
                return false;
            out->alpn_len += 1 + n;
        } else {
            full = true; /* keep the list in order: nothing after a name left out */
            if (!read_bytes(r, NULL, n))
                return false;
        }
    }
    return true;
}

/* RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa. */
static bool is_grease(size_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

/* RFC 8446 4.2.1, the ClientHello form: ProtocolVersion versions<2..254>. */
static bool parse_supported_versions(ch_reader *r, size_t end, sp_client_hello *out)
{
    if (!open_filling_vector(r, 1, 2, end))
        return false;
    if ((end - r->off) % 2 != 0)
        return fail(r, SP_CH_INVALID);
    while (r->off < end) {
        size_t v;
        if (!read_u16(r, &v))
            return false;
        if (is_grease(v))
            continue;
        if (out->nversions < sizeof out->versions / sizeof out->versions[0])
            out->versions[out->nversions++] = (uint16_t)v;
        /* Only 3.x values are TLS versions that order by number (not drafts, DTLS). */
        if (v >> 8 == 3 && v > out->max_version)
            out->max_version = (uint16_t)v;
    }
    return true;
}

static bool parse_extensions(ch_reader *r, sp_client_hello *out)
{
    bool seen_sni = false, seen_alpn = false, seen_versions = false;
    if (!open_filling_vector(r, 2, 0, r->msg_end))
        return false;
    while (r->off < r->msg_end) {
        size_t type, end;
        if (!read_u16(r, &type) || !open_vector(r, 2, 0, SIZE_MAX, r->msg_end, &end))
            return false;
        bool *seen = type == EXT_SERVER_NAME          ? &seen_sni
                     : type == EXT_ALPN               ? &seen_alpn
                     : type == EXT_SUPPORTED_VERSIONS ? &seen_versions
                                                      : NULL;
        if (seen != NULL) {
            if (*seen)
                return fail(r, SP_CH_INVALID);
            *seen = true;
        }
        bool ok = type == EXT_SERVER_NAME          ? parse_server_name(r, end, out)
                  : type == EXT_ALPN               ? parse_alpn(r, end, out)
                  : type == EXT_SUPPORTED_VERSIONS ? parse_supported_versions(r, end, out)
                                                   : read_bytes(r, NULL, end - r->off);
        if (!ok)
            return false;
        if (r->off != end)
            return fail(r, SP_CH_INVALID); /* defensive: each parser fills its extension */
    }
    if (!seen_versions)
        out->max_version = out->legacy_version;
    return true;
}

/* RFC 8446 4.1.2 / RFC 5246 7.4.1.2, after the handshake header. */
static bool parse_body(ch_reader *r, sp_client_hello *out)
{
    size_t version, end;
    if (!read_u16(r, &version))
        return false;
    if (version >> 8 != 3)
        return fail(r, SP_CH_INVALID);
    out->legacy_version = (uint16_t)version;
    if (!read_bytes(r, NULL, 32))                                  /* random */
        return false;
    if (!open_vector(r, 1, 0, 32, r->msg_end, &end) ||             /* legacy_session_id */
        !read_bytes(r, NULL, end - r->off))
        return false;
    if (!open_vector(r, 2, 2, 0xfffe, r->msg_end, &end))           /* cipher_suites */
        return false;
    if ((end - r->off) % 2 != 0)
        return fail(r, SP_CH_INVALID);
    if (!read_bytes(r, NULL, end - r->off))
        return false;
    if (!open_vector(r, 1, 1, 255, r->msg_end, &end) ||            /* compression_methods */
        !read_bytes(r, NULL, end - r->off))
        return false;
    if (r->off == r->msg_end) {                                    /* no extensions (pre-TLS 1.2) */
        out->max_version = out->legacy_version;
        return true;
    }
    return parse_extensions(r, out);
}

sp_ch_status sp_client_hello_parse(const uint8_t *data, size_t len, sp_client_hello *out)
{
    memset(out, 0, sizeof *out);
    ch_reader r = {
        .in = data, .len = data != NULL ? len : 0, .msg_end = HANDSHAKE_HEADER_LEN,
        .status = SP_CH_OK,
    };

    /* The type byte alone, so that anything but a hello is refused at once. */
    uint8_t header[HANDSHAKE_HEADER_LEN];
    if (!read_bytes(&r, header, 1))
        return r.status;
    if (header[0] != HANDSHAKE_CLIENT_HELLO)
        return SP_CH_INVALID;
    if (!read_bytes(&r, header + 1, 3))
        return r.status;
    size_t body = (size_t)header[1] << 16 | (size_t)header[2] << 8 | header[3];
    if (body > SP_CH_MAX_INPUT - RECORD_HEADER_LEN - HANDSHAKE_HEADER_LEN)
        return SP_CH_TOO_LARGE;
    r.msg_end = HANDSHAKE_HEADER_LEN + body;
    r.msg_len_known = true;
    if (r.record_left > r.msg_end - r.off)
        return SP_CH_INVALID; /* the record carries bytes past the hello */

    if (!parse_body(&r, out))
        return r.status;
    out->record_version = r.record_version;
    out->consumed = r.pos;
    return SP_CH_OK;
}

const char *sp_client_hello_alpn_next(const sp_client_hello *ch, size_t *pos, size_t *len)
{
    size_t total = ch->alpn_len < sizeof ch->alpn ? ch->alpn_len : sizeof ch->alpn;
    if (*pos >= total)
        return NULL;
    size_t n = (uint8_t)ch->alpn[*pos];
    if (n == 0 || n > total - *pos - 1)
        return NULL; /* not what the parser writes; stop rather than overrun */
    const char *name = ch->alpn + *pos + 1;
    *pos += 1 + n;
    *len = n;
    return name;
}

static const struct {
    uint16_t version;
    const char *name;
} tls_versions[] = {
    {0x0300, "SSLv3"}, {0x0301, "TLSv1"}, {0x0302, "TLSv1.1"}, {0x0303, "TLSv1.2"},
    {0x0304, "TLSv1.3"},
};

const char *sp_tls_version_name(uint16_t v)
{
    for (size_t i = 0; i < sizeof tls_versions / sizeof tls_versions[0]; i++)
        if (tls_versions[i].version == v)
            return tls_versions[i].name;
    return NULL;
}

int sp_tls_version_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof tls_versions / sizeof tls_versions[0]; i++)
        if (strcmp(tls_versions[i].name, name) == 0)
            return tls_versions[i].version;
    return -1;
}
