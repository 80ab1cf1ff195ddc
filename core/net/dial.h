/* dial: from a host name (or address) and a port to one connected TCP socket, with its
 * TLS session established when asked.
 *
 * One dial resolves the host with uv_getaddrinfo (never blocking the loop; an IP literal
 * is used as it is; a name under "invalid" fails at once, as RFC 6761 asks, and no
 * query leaves the machine), tries its addresses in the order the resolver gave them, writes the
 * caller's preamble (a PROXY header) before anything else and, for an upstream TLS
 * client context, runs the handshake through the TLS pump (tls/stream.h). Each attempt,
 * its handshake included, is bounded by the dial's connect timeout. It ends by calling
 * `done` once: with the connected socket (TCP_NODELAY set, the preamble written or
 * queued in order, the TLS session in d->tls), or with why it failed. What to do next
 * (another target, an error to Lua, a 502) is the caller's.
 *
 * Forward routes and the HTTP engine dial through net/connect.c, Lua's sp.connect
 * through lua/cosocket.c; each embeds an sp_dial in its own state.
 *
 * Ownership. The handles a dial opens belong to a keeper (the connection: its single
 * cleanup path counts every handle and DNS lookup before it frees anything), told of
 * each through sp_dial_keeper. A socket is the first member of a malloc'd block that the
 * keeper frees in its close callback. sp_dial_cancel is the one call that ends a dial
 * early: it closes the socket connecting or handshaking through the keeper and cancels
 * the lookup (whose callback still comes; the keeper hears of it then and may free
 * everything, the dial included). After a cancel, `done` is not called. A keeper stays
 * alive while any of its dials is active (the connection cancels its dials before it
 * can be freed).
 *
 * Timeout. A dial has no timer of its own: its keeper has one anyway, and a second
 * handle per connection would cost on the hot path. The owner arms its timer for
 * sp_dial_deadline and calls sp_dial_timed_out when it passes: a connect is abandoned
 * and the next address tried, a handshake fails. */
#ifndef SP_NET_DIAL_H
#define SP_NET_DIAL_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "tls/stream.h"

typedef struct sp_dial sp_dial;

typedef enum {
    SP_DIAL_CONNECTED = 0,
    SP_DIAL_RESOLVE_NOT_STARTED,  /* uv_getaddrinfo refused the lookup (status: its error) */
    SP_DIAL_RESOLVE_FAILED,       /* the lookup failed (status: its error; UV_ECANCELED) */
    SP_DIAL_CONNECT_FAILED,       /* every address failed; status: the last one's error
                                     (UV_ETIMEDOUT: timed out), 0 when none was tried */
    SP_DIAL_PREAMBLE_FAILED,      /* connected, but the preamble could not be written */
    SP_DIAL_TLS_NOT_STARTED,      /* the TLS session could not be set up */
    SP_DIAL_TLS_FAILED,           /* the handshake failed (d->tls_failure says how), or
                                     status: writing to the socket failed */
    SP_DIAL_OUT_OF_MEMORY,
} sp_dial_result;

/* The upstream TLS of a dial: the client context, the name sent as SNI (NULL: none)
 * and the name the certificate is checked against (NULL: no name check). */
typedef struct sp_dial_tls {
    SSL_CTX *ctx;
    const char *sni, *verify_host;
} sp_dial_tls;

/* The keeper of a dial's handles (see above); ctx is the keeper's own pointer. */
typedef struct sp_dial_keeper {
    /* A socket the dial opened: count it until its close callback comes. */
    void (*adopt)(void *ctx, uv_handle_t *h);
    /* Closes a socket the dial opened and gives up; the close callback frees h. */
    void (*close)(void *ctx, uv_handle_t *h);
    /* A lookup started (true) or its callback came back (false). After the callback of
     * a cancelled dial's lookup the keeper may free everything, the dial included. */
    void (*lookup)(void *ctx, bool started);
    /* Bytes read from or written to a connected socket (the preamble, the handshake),
     * as they move, for the keeper's counters. */
    void (*count)(void *ctx, size_t read, size_t written);
} sp_dial_keeper;

typedef struct sp_dial_ops {
    /* The dial ended: r == SP_DIAL_CONNECTED with tcp (now the owner's, data pointer and
     * reading its to set), else tcp NULL and status as described at sp_dial_result.
     * Called at most once per sp_dial_start, possibly from within it. The dial is idle
     * when this runs: the callback may start it again. */
    void (*done)(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp);
    /* An attempt started (the owner arms its timer for sp_dial_deadline). Optional. */
    void (*attempt_started)(sp_dial *d);
    /* An attempt's connect came back failed (status); the dial goes on with the next
     * address. For logs; optional. */
    void (*attempt_failed)(sp_dial *d, int status);
} sp_dial_ops;

/* One attempt at one address: its socket comes first, so freeing the socket frees it. */
typedef struct sp_dial_attempt {
    uv_tcp_t tcp;
    uv_connect_t req;
    sp_dial *d;
} sp_dial_attempt;

struct sp_dial {
    /* Set by sp_dial_init. */
    uv_loop_t *loop;
    const sp_dial_ops *ops;
    const sp_dial_keeper *keeper;
    void *keeper_ctx;
    void *owner;                  /* the owner's own pointer, for its callbacks */

    /* One dial's state. */
    bool active;                  /* started, not yet done nor cancelled */
    bool resolving;               /* a lookup's callback is due (also after a cancel) */
    uv_getaddrinfo_t gai;
    uint16_t port;
    uint64_t timeout_ms;          /* per attempt; 0: unbounded */
    char *preamble;               /* malloc'd copy while dialing, or NULL */
    size_t preamble_len;
    bool have_literal;            /* the host was an address: the one candidate */
    struct sockaddr_storage literal;
    struct addrinfo *addrs, *next_addr;
    sp_dial_attempt *attempt;     /* the connect in flight, or NULL */
    int last_status;
    uint64_t attempt_started_ms;  /* loop time, for the deadline */
    uint64_t attempt_started_ns;
    uint64_t connect_ns;          /* how long the TCP connect took; 0 until one succeeds */
    /* Upstream TLS: the session (set up at start, established when done), the socket
     * it is handshaking on, and a buffer for its reads and writes. */
    bool want_tls;
    sp_tls_stream tls;
    sp_tls_failure tls_failure;   /* of the last dial, when it ended SP_DIAL_TLS_FAILED */
    uv_tcp_t *handshaking;
    char *tls_buf;
    int write_error;
    /* How the last dial ended (for an owner that reports it later). */
    sp_dial_result result;
    int status;
};

void sp_dial_init(sp_dial *d, uv_loop_t *loop, const sp_dial_ops *ops, const sp_dial_keeper *keeper,
                  void *keeper_ctx, void *owner);

/* Starts dialing host:port (host: a name, an IPv4 or IPv6 address, or "[v6]"). The
 * preamble (may be NULL) is copied; tls (may be NULL: plain TCP) is used at once. The
 * dial must be idle (never started, done, or cancelled with no lookup outstanding).
 * `done` may run before this returns. */
void sp_dial_start(sp_dial *d, const char *host, uint16_t port, uint64_t timeout_ms,
                   const void *preamble, size_t preamble_len, const sp_dial_tls *tls);

/* Moves the established TLS session of a connected dial into *into (empty without TLS). */
void sp_dial_take_tls(sp_dial *d, sp_tls_stream *into);

/* Ends a dial early: the attempt in flight is closed (through the keeper), the lookup
 * cancelled; `done` is not called. Does nothing to an idle dial; safe to call twice. */
void sp_dial_cancel(sp_dial *d);

/* True while a connect attempt is in flight (not during the handshake). */
bool sp_dial_attempting(const sp_dial *d);
/* Loop time by which the attempt in flight must connect and finish its handshake;
 * UINT64_MAX when there is none or the dial's timeout is 0. */
uint64_t sp_dial_deadline(const sp_dial *d);
/* The attempt in flight took too long: a connect is closed and the next address tried
 * (status UV_ETIMEDOUT when it was the last); a handshake fails the dial
 * (SP_DIAL_TLS_FAILED, SP_TLSFAIL_TIMEOUT). */
void sp_dial_timed_out(sp_dial *d);

/* True when host is an IPv4 or IPv6 literal (IPv6 possibly in brackets); fills ss with
 * the address and port. */
bool sp_dial_literal(const char *host, uint16_t port, struct sockaddr_storage *ss);

#endif
