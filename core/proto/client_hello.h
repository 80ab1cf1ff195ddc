/*
 * The TLS ClientHello, read from the first bytes a client sends, for routing on SNI,
 * ALPN and the offered TLS versions before any TLS library sees the connection
 * (RFC 8446 4.1.2, RFC 5246 7.4.1.2, RFC 6066 3, RFC 7301 3.1, RFC 8701 for GREASE).
 *
 * Pure: no I/O, no allocation, no state between calls. The caller keeps the bytes and
 * calls again with all of them (not just the new ones) while the answer is
 * SP_CH_NEED_MORE; each call costs time linear in len, so call once per read, not
 * once per byte.
 *
 * Strict, because the proxy routes on what it reads here and the backend's TLS library
 * then reads the same bytes: anything two parsers could read differently (duplicate
 * extensions we route on, a server_name list with several names, bytes after the
 * hello inside its last record) is refused rather than guessed at.
 *
 * The answer is a function of the bytes alone and depends only on bytes already seen:
 * for any prefix of an input, the answer is SP_CH_NEED_MORE or the same answer (and
 * fields) as for the whole input. Problems are reported as early as the bytes allow:
 * NOT_TLS from the first byte, a wrong handshake type from its byte, a length that
 * overruns its container as soon as the length is read.
 */
#ifndef SP_PROTO_CLIENT_HELLO_H
#define SP_PROTO_CLIENT_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* Give up (SP_CH_TOO_LARGE) past this many bytes of records: hellos with large
 * post-quantum key shares are about 2 KB, so this leaves room to grow while bounding
 * what a connection can make the proxy buffer before routing. */
#define SP_CH_MAX_INPUT 32768

/* Largest record length accepted (2^14 of plaintext plus the 256 bytes of slack some
 * stacks allow); longer is SP_CH_INVALID. */
#define SP_CH_MAX_RECORD (16384 + 256)

typedef enum {
    SP_CH_NEED_MORE = 0,  /* a proper prefix of something that may still be a hello */
    SP_CH_OK = 1,
    SP_CH_NOT_TLS = -1,   /* first byte not 0x16 (handshake), or record major version not 3 */
    SP_CH_INVALID = -2,   /* TLS records, but not a well-formed ClientHello */
    SP_CH_TOO_LARGE = -3, /* would need more than SP_CH_MAX_INPUT bytes */
} sp_ch_status;

typedef struct sp_client_hello {
    uint16_t record_version;         /* of the first record (usually 0x0301) */
    uint16_t legacy_version;         /* ClientHello.legacy_version (0x0303 for TLS 1.3) */
    char sni[256];                   /* host_name from server_name, as sent (case kept), */
    size_t sni_len;                  /*   NUL-terminated; sni_len 0 = no server_name */
    char alpn[256];                  /* ALPN protocol list in wire form (each name after */
    size_t alpn_len;                 /*   its length byte); 0 = no ALPN. See below */
    uint16_t versions[32];           /* supported_versions as offered, GREASE dropped; */
    size_t nversions;                /*   the first 32 when more were offered */
    uint16_t max_version;            /* highest offered: see sp_client_hello_parse */
    size_t consumed;                 /* bytes of input up to the end of the record
                                        completing the hello */
} sp_client_hello;

/* Parses the ClientHello at the start of `data` (the first bytes a client sent). The
 * handshake message may span several records and the records may be cut anywhere: call
 * again with more bytes while it returns SP_CH_NEED_MORE. Never reads past len (data
 * may be NULL when len is 0). *out is meaningful only after SP_CH_OK.
 *
 * SP_CH_INVALID, among others, for: a zero-length or over-long record; a record of
 * another type, or with another major version, after the first; a handshake type other
 * than client_hello; a record that carries bytes past the end of the hello (a client
 * has nothing else to send before the server answers); lengths that overrun their
 * container or leave bytes over; a second server_name, ALPN or supported_versions
 * extension; a server_name list that is not exactly one host_name; a host_name that is
 * empty, over 255 bytes, or has a byte other than A-Z a-z 0-9 . - _ ; empty ALPN
 * names; an odd-length or empty supported_versions list.
 *
 * ALPN: names that do not fit whole in alpn[] are left out, from the first that does
 * not fit on (a list over 255 bytes is far beyond what real clients send).
 *
 * max_version: the highest 3.x value in supported_versions when the extension is
 * present (0 when it offers none, e.g. only GREASE: no TLS version the backend could
 * pick), else legacy_version. */
sp_ch_status sp_client_hello_parse(const uint8_t *data, size_t len, sp_client_hello *out);

/* Iterates the ALPN list: start with *pos = 0; returns the next protocol (not
 * NUL-terminated; its length in *len) or NULL at the end. */
const char *sp_client_hello_alpn_next(const sp_client_hello *ch, size_t *pos, size_t *len);

/* Names as OpenSSL and the config spell them: 0x0300 "SSLv3", 0x0301 "TLSv1",
 * 0x0302 "TLSv1.1", 0x0303 "TLSv1.2", 0x0304 "TLSv1.3"; NULL for anything else. */
const char *sp_tls_version_name(uint16_t v);

/* The reverse, exact and case-sensitive: "TLSv1.2" -> 0x0303; -1 if unknown. */
int sp_tls_version_parse(const char *name);

#endif
