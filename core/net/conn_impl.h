/* conn_impl: the connection object shared by the files that drive it.
 *
 *   conn.c         accept, a trusted proxy's PROXY header, timers, the one cleanup path
 *   connect.c      dial the route's targets (net/dial.c), candidate after candidate
 *   pipe.c         move bytes both ways (plain or through TLS) with backpressure
 *   route_admit.c  a connection's admission to its route (lists, limits)
 *
 * Private to the connection's modules, the session layer that routes connections
 * (core/session) and the applications that serve them (core/http, core/lua, through the
 * seam in net/app.h): everything else sees only net/conn.h.
 *
 * The functions below that return bool may end the connection: true, the caller may go
 * on with it; false, it ended (or, where said, another layer now drives it) and the
 * caller touches it no more in this callback. */
#ifndef SP_NET_CONN_IMPL_H
#define SP_NET_CONN_IMPL_H

#include "net/app.h"
#include "net/conn.h"
#include "net/dial.h"
#include "net/route_state.h"
#include "net/target.h"
#include "route/router.h"
#include "tls/stream.h"
#include "util/buf.h"

/* Backpressure: stop reading a side while more than this many buffer bytes wait to be
 * written to its peer; resume below the low-water mark. Counted in whole read buffers,
 * so the memory a connection can pin is bounded whatever the read sizes are. */
#define SP_HIGH_WATER (4 * SP_READ_BUF_SIZE)
#define SP_LOW_WATER (1 * SP_READ_BUF_SIZE)
/* Buffers of target-bound bytes held while the target is not ready yet. */
#define SP_EARLY_BUFS (SP_HIGH_WATER / SP_READ_BUF_SIZE)
/* How long a closing connection may spend flushing queued bytes to a peer, and how long
 * the client then has to close its side before we close regardless. */
#define SP_FLUSH_LIMIT_MS 10000
#define SP_LINGER_MS 2000

typedef struct sp_side {
    uv_tcp_t *tcp;            /* NULL when absent or handed to uv_close */
    bool reading, eof, shut;
    size_t queued;            /* buffer bytes waiting to be written to this side */
    uint64_t bytes_read;
    uint64_t bytes_written;   /* handed to this side's socket, whatever produced them */
    sp_tls_stream tls;        /* tls.ssl set when this side speaks TLS through us */
} sp_side;

struct sp_conn {
    sp_conn *prev, *next;     /* the worker's list of live connections */
    sp_worker *w;
    sp_gen *gen;              /* the generation this connection started on (a reference) */
    sp_route_states *route_states; /* the worker's state of gen's routes (a reference); NULL
                                      for a background task, which proxies nothing */
    const sp_route *route;
    uint64_t id;
    sp_conn_state state;
    sp_end_reason reason;
    bool ended;

    sp_side client, target;
    bool target_ready;        /* connected, and its TLS established when it has one */
    uv_timer_t timer;
    int handles;              /* handles whose close callback is still due */
    int lookups;              /* uv_getaddrinfo calls outstanding (target, sp.connect) */

    sp_buf sniffed;           /* first client bytes, read to choose the route */
    /* Target-bound bytes held until the target is ready: the sniffed bytes, what the
     * client sends meanwhile (reading it is how an early leaver is noticed), or
     * plaintext out of the client's TLS. */
    void *early[SP_EARLY_BUFS];
    size_t early_len[SP_EARLY_BUFS];
    int nearly;

    sp_target_choice dest;    /* the target being tried */
    size_t candidates_tried;
    sp_dial dial;             /* the dial to dest (net/connect.c), idle when none */

    const sp_app_ops *app;    /* the application serving the connection; NULL: a plain pipe */
    void *app_ctx;            /* its state (the HTTP session, the Lua task), freed by app->release */
    bool background;          /* sp.timer/sp.every: no client, not a proxied connection */

    sp_conn_info info;        /* addresses and names, for routing, Lua and logs */
    char domain[256];         /* SNI, lowercased; info.domain points here */
    char alpn[64];
    char proxied_by[SP_IP_STRLEN];  /* info.proxied_by points here */
    sp_ip orig_dst;           /* the destination a PROXY header named, for the next hop */
    uint16_t orig_dst_port;
    bool has_orig_dst;
    bool ip_admitted;         /* counted in the process's per-IP table */
    struct sp_route_counter *route_counter;  /* counted against its route's limits */
    bool route_counted_per_ip;               /* ... and per IP there */
    uint64_t started_ms, last_activity_ms, phase_started_ms, closing_deadline_ms;
};

/* The connection is in its application's own state: net/ hands the app its bytes, the
 * ends of its sides, its drained queues and its timer. */
static inline bool sp_app_active(const sp_conn *c) { return c->app && c->state == c->app->state; }

/* conn.c */
void sp_conn_set_state(sp_conn *c, sp_conn_state s);
/* Frees the connection once no close callback or DNS lookup is outstanding. */
void sp_conn_release(sp_conn *c);
/* The session layer's hooks (net/app.h), installed once at startup. */
const sp_session_hooks *sp_conn_session(void);
/* More bytes of a trusted proxy's PROXY header arrived (in c->sniffed). */
void sp_conn_proxy_header_input(sp_conn *c);
/* A trusted proxy's header is missing, malformed or late: count, log, close. */
void sp_conn_proxy_header_failed(sp_conn *c, const char *why, sp_end_reason reason);
void sp_conn_arm_timer(sp_conn *c);
/* A byte stream's deadline (inactivity, max_lifetime) and its expiry: the pipe's, and
 * an application's that moves bytes as they come (a socket handler). */
uint64_t sp_conn_stream_deadline(sp_conn *c);
void sp_conn_stream_timeout(sp_conn *c);
/* Ends after flushing what is queued to each side (bounded by SP_FLUSH_LIMIT_MS). */
void sp_conn_close(sp_conn *c, sp_end_reason reason);
/* The application's first bytes chose stream route r (an HTTP session's first request):
 * the session layer acts on it. The application has let go of the connection before. */
void sp_conn_route_stream(sp_conn *c, const sp_route *r);
/* Counts a TLS handshake failure and ends the connection. */
void sp_conn_tls_failed(sp_conn *c, sp_side *s);
void sp_conn_close_handle(sp_conn *c, uv_handle_t *h);
/* The connection as the keeper of dials (net/dial.h): its handle and lookup counts
 * cover theirs, its close path closes their sockets, its target side counts their
 * bytes. For the target's dial and the dials of sp.connect. */
extern const sp_dial_keeper sp_conn_dial_keeper;

/* route_admit.c */
/* Checks route r's security (block/allow lists, connection limits) and counts the
 * connection against it; on refusal counts it and, when asked, aborts the connection. */
bool sp_conn_admit_route(sp_conn *c, const sp_route *r, bool abort_on_refusal);

/* connect.c */
/* Sets up c->dial; once, when the connection is made. */
void sp_connect_init(sp_conn *c);
void sp_connect_next(sp_conn *c);
/* Puts the route's next candidate (round-robin) in c->dest, its functions called with
 * info (the connection's facts, or an HTTP request's); -1 when a Lua target function
 * failed (logged). */
int sp_connect_choose(sp_conn *c, const sp_conn_info *info);
/* Dials c->dest: its PROXY header and upstream TLS as the route says. Every candidate
 * may fail at once (the app is told, or the connection ends): false when the connection
 * is closing. */
bool sp_connect_dest(sp_conn *c);
/* When the attempt or upstream handshake in flight must be done (timeouts.connect from
 * the attempt's start); UINT64_MAX when there is no bound. */
uint64_t sp_connect_deadline(const sp_conn *c);
/* That deadline passed. */
void sp_connect_timed_out(sp_conn *c);

/* pipe.c */
void sp_pipe_start_reading(sp_conn *c, sp_side *s);
void sp_pipe_stop_reading(sp_side *s);
/* Starts reading s again and pumps plaintext its TLS session may hold. */
bool sp_pipe_resume(sp_conn *c, sp_side *s);
/* Sends a pool buffer's first len bytes to a side (encrypting for a TLS side we speak);
 * takes the buffer. A failed write ends the connection: false when it is closing. */
bool sp_pipe_send(sp_conn *c, sp_side *to, void *buf, size_t len);
/* Sends bytes to a side (encrypting for a TLS side we speak), copied into pool buffers;
 * false when the connection is closing (a failed write, or closing already). */
bool sp_pipe_send_bytes(sp_conn *c, sp_side *to, const char *data, size_t len);
/* Writes buf (a pool buffer with len bytes) to the socket of `to`; takes the buffer. */
bool sp_pipe_write(sp_conn *c, sp_side *to, void *buf, size_t len);
/* The end reason of a failed read or write (libuv error err) on side s. */
sp_end_reason sp_pipe_error_reason(sp_conn *c, sp_side *s, int err);
/* Counts len bytes as read from side `from` (bytes_from_* counters, route figures) and
 * as activity. */
void sp_side_count_read(sp_conn *c, sp_side *from, size_t len);
/* Counts len bytes as sent to side `to` (access log `out`, bytes_to_* counters). */
void sp_side_count_written(sp_conn *c, sp_side *to, size_t len);
/* Takes bytes bound for the target before it is ready; false when the queue is full
 * (the connection goes on: the caller decides). */
bool sp_pipe_hold_early(sp_conn *c, void *buf, size_t len);
/* Feeds what a side sent into its TLS session and pumps it (see sp_pipe_tls_pump). */
bool sp_pipe_tls_input(sp_conn *c, sp_side *from, const void *data, size_t len);
/* The target is ready: send what was held and start moving bytes both ways, or hand
 * the target to the application (false then too: the application drives). */
bool sp_pipe_start(sp_conn *c);
/* Drives the TLS session of side s: handshake, then plaintext to the peer or the active
 * application. false also when the handshake completed here: the session layer (the
 * client's) or sp_pipe_start (the target's) took the connection on. */
bool sp_pipe_tls_pump(sp_conn *c, sp_side *s);
/* Writes what the TLS session of s has for its socket. */
bool sp_pipe_flush_tls(sp_conn *c, sp_side *s);
void sp_pipe_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
void sp_pipe_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

#endif
