/* app: the seam between a connection (net/) and the application that serves it.
 *
 * net/ accepts, sniffs, routes, dials, moves bytes, runs the timers and owns the one
 * cleanup path; what a connection is FOR (an HTTP/1 session, a Lua socket handler) lives
 * above net/ and is reached only through the table below: sp_conn.app points at the
 * application's operations and sp_conn.app_ctx at its state. No app (NULL) is the plain
 * stream pipe, which net/ runs itself (net/pipe.c).
 *
 * An application has its own connection state (`state`, e.g. SP_STATE_HTTP): while the
 * connection is in it (sp_app_active in net/conn_impl.h), net/ hands the app the bytes
 * read, the ends of its sides, its drained queues and its timer; in the other states
 * (sniffing, connecting, a tunnel after an Upgrade or sp.pipe) net/ runs them itself and
 * only tells the app about its target and the connection's end.
 *
 * Every operation may close the connection (sp_conn_close, sp_conn_abort): net/ re-checks
 * the connection's state after each call, as it does after its own writes.
 *
 * Which application a route gets is decided above net/ (core/session/apps.c), which
 * installs the starters below once at startup. */
#ifndef SP_NET_APP_H
#define SP_NET_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/registry.h"

typedef struct sp_conn sp_conn;
typedef struct sp_side sp_side;

typedef struct sp_app_ops {
    /* The connection state the application drives. */
    sp_conn_state state;

    /* While active. Bytes from a side (plaintext when its TLS is ours); takes the pool
     * buffer. Optional: an app that reads its sockets itself has none. */
    void (*input)(sp_conn *c, sp_side *from, void *buf, size_t len);
    /* While active. What was queued to `to` drained below the low-water mark. Optional. */
    void (*drained)(sp_conn *c, sp_side *to);
    /* While active. A side finished sending (FIN or close_notify), or failed with
     * `reason` (error). Optional. */
    void (*side_ended)(sp_conn *c, sp_side *from, bool error, sp_end_reason reason);
    /* While active, required: the connection's next deadline (UINT64_MAX: none), and what
     * happens when the timer fires (it may fire early: re-arm with sp_conn_arm_timer). */
    uint64_t (*deadline)(sp_conn *c);
    void (*timeout)(sp_conn *c);
    /* While active. The worker stops gracefully: end what only waits for more work (an
     * HTTP session between requests, a handler waiting for a request head). Optional. */
    void (*worker_stopping)(sp_conn *c);

    /* In any state. The target the app asked for (sp_connect_dest) is connected, with its
     * TLS when it has one; or every candidate failed, or its TLS handshake did. Optional:
     * without them the connection pipes, or ends with the failure. */
    void (*target_ready)(sp_conn *c);
    void (*target_failed)(sp_conn *c, sp_end_reason why);
    /* In any state. The connection starts its flushed close (sp_conn_close): last chance
     * to keep what outlives it (an idle upstream connection goes to the pool). Optional. */
    void (*closing)(sp_conn *c);
    /* In any state. The connection ends now (sp_conn_abort): close the app's own handles
     * through sp_conn_close_handle. Optional. */
    void (*abort)(sp_conn *c);
    /* Required. The connection is freed: free app_ctx (before the generation goes, which
     * the app's Lua state may still reference). */
    void (*release)(sp_conn *c);
} sp_app_ops;

/* The applications routing starts, provided by the layer above net/. */
typedef struct sp_app_starters {
    /* The first bytes are not TLS on a port whose routes read request heads: the HTTP
     * session parses them (from c->sniffed, called again as more arrive) and routes. */
    void (*http_sniffed)(sp_conn *c);
    /* A terminating HTTP route finished the client's TLS handshake: serve requests. */
    void (*http_after_handshake)(sp_conn *c);
    /* A socket-handler route: its Lua handler takes the client socket. */
    void (*socket_handler)(sp_conn *c);
} sp_app_starters;

/* Installs the starters; once, before the first worker starts. */
void sp_conn_install_apps(const sp_app_starters *starters);

#endif
