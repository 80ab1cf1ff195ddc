/* head: the heads smartproxy writes - a request for the upstream, a response for the
 * client, and its own short answers (errors, redirects, 401, 429). Pure.
 *
 * Hop-by-hop fields are dropped in both directions (Connection and every field it names,
 * Keep-Alive, Proxy-Connection, TE, Upgrade unless the exchange upgrades); framing fields
 * (Content-Length, Transfer-Encoding, Trailer) stay, because bodies pass through as they
 * were framed. Connection naming Content-Length, Transfer-Encoding or Host is ignored:
 * those fields always stay (else the next hop would read the body another way).
 * Upstream requests get X-Forwarded-For (appended), -Proto, -Host and -Port; then the
 * route's templates set their fields, replacing any of the same name. */
#ifndef SP_HTTP_HEAD_H
#define SP_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "proto/http_message.h"
#include "pattern/template.h"
#include "util/buf.h"

typedef struct sp_request_out {
    const sp_http_head *in;         /* the client's request */
    const char *target;             /* request target to send (rewritten or as sent) */
    size_t target_len;
    const char *client_ip;
    const char *proto;              /* "http" | "https" */
    const char *host;               /* Host as sent, or NULL */
    const char *default_host;       /* Host to add when the client sent none (HTTP/1.0) */
    unsigned port;                  /* the port the client connected to */
    bool upgrade;                   /* pass Upgrade and "Connection: upgrade" */
    const sp_header_set *sets;      /* action.headers.request */
    size_t nsets;
    const sp_template_values *vals;
} sp_request_out;

void sp_head_write_request(sp_buf *out, const sp_request_out *r);

typedef struct sp_response_out {
    const sp_http_head *in;         /* the upstream's response */
    bool close;                     /* the client connection ends after this response */
    bool keep_alive_10;             /* an HTTP/1.0 client that asked for keep-alive */
    bool upgrade;                   /* a 101 we pass on */
    bool dechunk;                   /* the body goes out without its chunked framing */
    const sp_header_set *sets;      /* action.headers.response */
    size_t nsets;
    const sp_template_values *vals;
} sp_response_out;

void sp_head_write_response(sp_buf *out, const sp_response_out *r);

/* A complete answer of our own: "<status> <reason>" then `body` (a short text/plain line
 * when NULL); `extra` holds more header lines, each ending in CRLF. HEAD: no body. */
void sp_head_write_local(sp_buf *out, int status, const char *extra, const char *body, bool close,
                         bool head_request);

const char *sp_http_reason(int status);

#endif
