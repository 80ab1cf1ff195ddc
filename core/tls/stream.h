/* stream: one TLS session driven through memory BIOs, so the event loop owns the socket.
 *
 * Bytes from the network go in with sp_tls_feed(); the handshake advances with
 * sp_tls_handshake(); plaintext comes out of sp_tls_read() and goes in through
 * sp_tls_write(); whatever TLS wants sent (handshake records, alerts, encrypted data)
 * is taken with sp_tls_take_output() and written to the socket by the caller. Nothing
 * here blocks or touches a socket.
 *
 * The pump (sp_tls_pump, sp_tls_flush) is the one driver of a session between a socket
 * and its owner, used by the connection's pipe (net/pipe.c) and Lua's sockets
 * (lua/cosocket.c): after the owner feeds what its socket read, it advances the
 * handshake, hands the plaintext to the owner buffer by buffer and sends what the
 * session wants sent through the owner's writer. The owner keeps its own semantics
 * (where plaintext goes, backpressure, what a failure ends). */
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

/* What the pump needs of its owner; ctx is the owner's pointer. */
typedef struct sp_tls_io {
    /* A buffer of *cap bytes (plaintext or ciphertext), or NULL when out of memory. */
    void *(*get_buf)(void *ctx, size_t *cap);
    void (*put_buf)(void *ctx, void *buf);
    /* Writes ciphertext to the socket; takes buf. 0, or -1 when the owner cannot go on
     * (the write failed and ended it). */
    int (*send)(void *ctx, void *buf, size_t len);
    /* Plaintext for the owner; takes buf. 0 to go on, -1 when the owner ended. */
    int (*receive)(void *ctx, void *buf, size_t len);
    /* Can the owner take more plaintext now? NULL: always. */
    bool (*has_room)(void *ctx);
} sp_tls_io;

typedef enum {
    SP_TLS_PUMP_HANDSHAKING,   /* the handshake wants more input */
    SP_TLS_PUMP_ESTABLISHED,   /* it completed just now: pump again for the plaintext */
    SP_TLS_PUMP_DRAINED,       /* no plaintext left for now */
    SP_TLS_PUMP_FULL,          /* the owner has no room: pump again when it has */
    SP_TLS_PUMP_PEER_CLOSED,   /* close_notify received */
    SP_TLS_PUMP_HANDSHAKE_FAILED, /* t->failure says why */
    SP_TLS_PUMP_FAILED,        /* a failure after the handshake */
    SP_TLS_PUMP_OUT_OF_MEMORY,
    SP_TLS_PUMP_OWNER_ENDED,   /* send or receive returned -1 */
} sp_tls_pump_status;

/* Sends whatever the session wants sent; 0, -1 when the owner ended, or -2 when out
 * of memory. */
int sp_tls_flush(sp_tls_stream *t, const sp_tls_io *io, void *ctx);
/* Advances the session with what was fed: the handshake (its output sent), else the
 * plaintext to io->receive until none is left or the owner has no room. */
sp_tls_pump_status sp_tls_pump(sp_tls_stream *t, const sp_tls_io *io, void *ctx);

/* Session facts for ctx and logs. */
const char *sp_tls_version(const sp_tls_stream *t);
/* The ALPN protocol chosen, or NULL; *len set. */
const unsigned char *sp_tls_alpn(const sp_tls_stream *t, unsigned *len);
bool sp_tls_resumed(const sp_tls_stream *t);

#endif
