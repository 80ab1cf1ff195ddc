/* stream: one TLS session driven through memory BIOs, so the event loop owns the socket.
 *
 * Bytes from the network go in with sp_tls_feed(); the handshake advances with
 * sp_tls_handshake(); plaintext comes out of sp_tls_read() and goes in through
 * sp_tls_write(); whatever TLS wants sent (handshake records, alerts, encrypted data)
 * is taken with sp_tls_take_output() and written to the socket by the caller. Nothing
 * here blocks or touches a socket. */
#ifndef SP_TLS_STREAM_H
#define SP_TLS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tls/failure.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct bio_st BIO;

typedef struct sp_tls_stream {
    SSL *ssl;
    BIO *in, *out;             /* network -> TLS, TLS -> network */
    bool established;
    bool peer_closed;          /* close_notify received */
    sp_tls_failure failure;    /* classification of the last failure */
} sp_tls_stream;

typedef enum { SP_TLS_DONE = 0, SP_TLS_WANT = 1, SP_TLS_FAILED = -1 } sp_tls_result;

int sp_tls_init_server(sp_tls_stream *t, SSL_CTX *ctx);
/* sni may be NULL; verify_host (checked against the certificate when the context
 * verifies) may be NULL to skip the name check. */
int sp_tls_init_client(sp_tls_stream *t, SSL_CTX *ctx, const char *sni, const char *verify_host);
void sp_tls_free(sp_tls_stream *t);

int sp_tls_feed(sp_tls_stream *t, const void *data, size_t len);
sp_tls_result sp_tls_handshake(sp_tls_stream *t);
/* > 0 plaintext bytes; 0 nothing yet (need more input), or the peer closed (peer_closed);
 * -1 failure. */
ssize_t sp_tls_read(sp_tls_stream *t, void *buf, size_t cap);
int sp_tls_write(sp_tls_stream *t, const void *data, size_t len);
/* Starts a close_notify. */
void sp_tls_shutdown(sp_tls_stream *t);
size_t sp_tls_output_pending(const sp_tls_stream *t);
size_t sp_tls_take_output(sp_tls_stream *t, void *buf, size_t cap);

/* Session facts for ctx and logs. */
const char *sp_tls_version(const sp_tls_stream *t);
/* The ALPN protocol chosen, or NULL; *len set. */
const unsigned char *sp_tls_alpn(const sp_tls_stream *t, unsigned *len);
bool sp_tls_resumed(const sp_tls_stream *t);

#endif
