/*
 * The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt): the header a
 * proxy in front of us prepends to a connection to say whom it is relaying, and the one
 * we prepend when a target wants to know the same about our clients.
 *
 * Pure: no I/O, no allocation. The parser is incremental in the simplest way: call it
 * again with everything received so far until it says OK or INVALID. It is strict,
 * because the header decides which client address every ACL and log sees: anything the
 * specification does not allow is INVALID, and INVALID is decided from the first byte
 * that makes the input impossible to complete, so a peer that does not speak the
 * protocol (a browser, a TLS ClientHello, a port scanner) is refused at once instead of
 * holding the connection until a timeout.
 *
 * Only accept a header from peers configured as trusted proxies; a client allowed to
 * send one picks its own address.
 */
#ifndef SP_PROTO_PROXY_PROTOCOL_H
#define SP_PROTO_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pattern/ip_pattern.h"

/* The longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses and
 * ports). A buffer of SP_PP_V1_MAX + 1 bytes always holds what sp_proxy_write_v1 writes. */
#define SP_PP_V1_MAX 107

/* We refuse v2 headers whose length field (the bytes after the fixed 16: addresses and
 * TLVs) is above this, so a peer cannot make us buffer 64 KiB before the first byte of
 * data (configurable later). The largest v2 header is 16 + SP_PP_V2_MAX_TLV bytes. */
#define SP_PP_V2_MAX_TLV 4096

typedef enum {
    SP_PP_NEED_MORE = 0, /* everything so far is a valid start of a header */
    SP_PP_OK = 1,
    SP_PP_INVALID = -1,
} sp_pp_status;

/* Bits of sp_pp_ssl.client (PP2_CLIENT_*). */
#define SP_PP_CLIENT_SSL 0x01       /* the client connected over TLS */
#define SP_PP_CLIENT_CERT_CONN 0x02 /* it sent a certificate on this connection */
#define SP_PP_CLIENT_CERT_SESS 0x04 /* it sent one at least once in this TLS session */

/* PP2_TYPE_SSL: what the proxy saw of the client's TLS. The strings are NUL-terminated;
 * sub-TLVs that were absent are empty. */
typedef struct sp_pp_ssl {
    bool present;
    uint8_t client;  /* SP_PP_CLIENT_* bits */
    uint32_t verify; /* 0 when the client's certificate was presented and verified */
    char version[32], cn[256], cipher[128], sig_alg[64], key_alg[64];
} sp_pp_ssl;

/* A parsed header. Addresses and ports are only meaningful when local is false;
 * for local headers they are zero. */
typedef struct sp_proxy_header {
    int version;   /* 1 or 2 */
    bool local;    /* v2 LOCAL command, v1 UNKNOWN, or a v2 PROXY with an UNSPEC family or
                    * transport: keep the socket's own addresses */
    int family;    /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC (<sys/socket.h> values);
                    * AF_UNSPEC exactly when local. v1 TCP6 stays AF_INET6 even when both
                    * addresses are v4-mapped. */
    bool datagram; /* v2 UDP or UNIX datagram (parsed, reported; callers refuse it for
                    * TCP) */
    sp_ip src, dst; /* AF_INET and AF_INET6; IPv4 stored v4-mapped as everywhere */
    uint16_t src_port, dst_port; /* host order */
    /* AF_UNIX: the 108-byte sun_path fields up to their first NUL, so an abstract
     * address (leading NUL) reads as "". */
    char unix_src[109], unix_dst[109];
    /* TLVs, v2 only. The strings are NUL-terminated as well as counted; AUTHORITY and the
     * SSL strings may not contain NUL bytes (INVALID), ALPN is raw bytes. */
    char authority[256]; size_t authority_len;      /* PP2_TYPE_AUTHORITY (SNI) */
    char alpn[256]; size_t alpn_len;                /* PP2_TYPE_ALPN */
    uint8_t unique_id[128]; size_t unique_id_len;   /* PP2_TYPE_UNIQUE_ID */
    bool crc_present;   /* PP2_TYPE_CRC32C was present and verified */
    sp_pp_ssl ssl;      /* PP2_TYPE_SSL and its sub-TLVs */
    size_t length;      /* bytes of the header: the application data starts here */
} sp_proxy_header;

/* Parses a PROXY header at the start of data; *out is filled on OK (and zeroed
 * otherwise). Bytes after the header are not looked at.
 *
 * NEED_MORE while data is a proper prefix of some valid header. INVALID, with *why (when
 * why is not NULL) set to a short static reason, as soon as no continuation could make
 * it one: e.g. at the first byte when it is neither 'P' nor 0x0D, at the 13th when the v2
 * version is not 2, at the digit that takes a v1 octet above 255, as soon as a v1 CRLF
 * could no longer end the line within SP_PP_V1_MAX bytes, at the head of a v2 TLV that
 * overruns the header. TLV values are checked as each arrives; the CRC32C once the
 * whole header has.
 * Reasons: "not a PROXY header", "bad v1 signature", "bad v1 protocol", "missing v1
 * field", "bad address", "bad port", "port out of range", "bad v1 line end", "v1 line too
 * long", "bad v2 signature", "unsupported version", "unknown command", "bad address
 * family", "bad transport protocol", "v2 header too large", "address block overruns
 * header", "TLV overruns header", "bad CRC32C length", "CRC32C mismatch", "duplicate
 * TLV", "ALPN too long", "authority too long", "unique ID too long", "SSL TLV too short",
 * "SSL string too long", "NUL in TLV string".
 *
 * v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces, addresses in the
 * family's strict text (TCP4: dotted quad without leading zeros; TCP6: IPv6 text, an
 * embedded dotted quad allowed as senders using inet_ntop write v4-mapped addresses),
 * ports 0..65535 in decimal without leading zeros; or "PROXY UNKNOWN" followed by
 * anything up to the CRLF (no lone CR or LF), which is local. At most SP_PP_V1_MAX bytes.
 *
 * v2: unknown TLV types (NOOP, NETNS, custom ranges) are skipped; known ones may appear
 * once each. The CRC32C TLV, when present, must match the header. The address block is
 * sized by the family (12, 36, 216 bytes, 0 for AF_UNSPEC) and must fit in the length;
 * TLVs follow it, for LOCAL headers too. */
sp_pp_status sp_proxy_parse(const uint8_t *data, size_t len, sp_proxy_header *out,
                            const char **why);

/* Writers for the send side. Both IPv4(-mapped): TCP4 / AF_INET; otherwise TCP6 /
 * AF_INET6 for both, v4-mapped ones written as IPv6 ("::ffff:102:304" in v1, which every
 * receiver parses). src or dst NULL: a header for a connection made on our own behalf
 * (health checks), "PROXY UNKNOWN\r\n" / a v2 LOCAL with AF_UNSPEC.
 *
 * Return the header length, or 0 if cap is too small. sp_proxy_parse reads whatever
 * they write back to the same addresses. */

/* Writes the line and a NUL (not counted); cap SP_PP_V1_MAX + 1 is always enough. */
size_t sp_proxy_write_v1(char *out, size_t cap, const sp_ip *src, uint16_t sport,
                         const sp_ip *dst, uint16_t dport);

/* TLVs for sp_proxy_write_v2. Empty values (NULL, "" or length 0) are left out. */
typedef struct sp_pp_tlvs {
    const char *authority;      /* NUL-terminated, at most 255 bytes */
    const char *alpn;           /* alpn_len bytes, at most 255 */
    size_t alpn_len;
    const uint8_t *unique_id;   /* at most 128 bytes */
    size_t unique_id_len;
    bool crc32c;                /* append a CRC32C TLV computed over the final header */
} sp_pp_tlvs;

/* Also returns 0 when a TLV is longer than noted above, i.e. than sp_proxy_parse
 * accepts. tlvs may be NULL. */
size_t sp_proxy_write_v2(uint8_t *out, size_t cap, const sp_ip *src, uint16_t sport,
                         const sp_ip *dst, uint16_t dport, const sp_pp_tlvs *tlvs);

/* CRC32C (Castagnoli, as in iSCSI and SCTP). Start with crc 0 and feed the previous
 * result to continue: sp_crc32c(sp_crc32c(0, a, n), b, m) is the CRC of a then b. */
uint32_t sp_crc32c(uint32_t crc, const void *data, size_t len);

#endif
