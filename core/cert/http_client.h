/* http_client: one blocking HTTPS request per call, for the ACME thread only.
 *
 * Never used on a worker or on the main loop: the ACME client runs each order on its
 * own thread (core/cert/manager.c), where waiting is harmless. Every request opens a
 * connection (Connection: close), verifies the server against ctx's trust store and the
 * URL's host, and gives up after timeout_ms for the connect and for each read or write.
 * Responses: Content-Length, chunked, or until close; at most 1 MiB. */
#ifndef SP_CERT_HTTP_CLIENT_H
#define SP_CERT_HTTP_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

typedef struct sp_http_resp {
    int status;
    char *location;       /* Location, or NULL */
    char *nonce;          /* Replay-Nonce, or NULL */
    char *content_type;
    char *body;           /* NUL-terminated */
    size_t body_len;
} sp_http_resp;

/* An SSL_CTX that trusts ca_file, or the system store when ca_file is NULL. */
SSL_CTX *sp_https_client_ctx(const char *ca_file, char *err, size_t errlen);
/* 0 with *out filled (any status), or -1 with a reason (connect, TLS, I/O, framing). */
int sp_https_request(SSL_CTX *ctx, const char *method, const char *url, const char *content_type,
                     const char *body, int timeout_ms, sp_http_resp *out, char *err, size_t errlen);
void sp_http_resp_free(sp_http_resp *r);

#endif
