/* app: the seams between a connection (net/) and the layers above it.
 *
 * net/ accepts, reads a trusted proxy's PROXY header, dials, moves bytes (plain or
 * through TLS), runs the timers and owns the one cleanup path. What a connection is FOR
 * is decided above net/: the session layer (core/session/) admits it, sniffs its first
 * bytes, picks its route and starts the application that serves it, reached through the
 * hooks of sp_session_hooks; the application (an HTTP/1 session, a Lua socket handler)
 * is reached through sp_app_ops: sp_conn.app points at its operations and sp_conn.app_ctx
 * at its state. No app (NULL) is the plain stream pipe, which net/ runs itself
 * (net/pipe.c).
 *
 * An application has its own connection state (`state`, e.g. SP_STATE_HTTP): while the
 * connection is in it (sp_app_active in net/conn_impl.h), net/ hands the app the bytes
 * read, the ends of its sides, its drained queues and its timer; in the other states
 * (sniffing, connecting, a tunnel after an Upgrade or sp.pipe) net/ runs them itself and
 * only tells the app about its target and the connection's end.
 *
 * Who may end the connection, and how the caller learns it: every session hook and every
 * app operation but deadline, closing, abort and release (which run while it ends) may
 * end the connection (sp_conn_close, sp_conn_abort), so net/ calls them last, touching
 * the connection no more in that callback; net/'s own functions that
 * may end it (writes, the TLS pump, the start of piping) say so by returning false. The
 * one place net/ goes on after an app operation is the TLS pump handing an active app
 * its plaintext record by record: it stops once the connection has ended. */
#ifndef SP_NET_APP_H
#define SP_NET_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/registry.h"

typedef struct sp_conn sp_conn;
typedef struct sp_side sp_side;
struct sp_route;

typedef struct sp_app_ops {
    /* The connection state the application drives. */
    sp_conn_state state;

    /* While active. Bytes from a side (plaintext when its TLS is ours); takes the pool
     * buffer. Optional: an app that reads its sockets itself has none. May end the
     * connection (the TLS pump then hands it nothing more). */
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

/* The session layer above net/, installed once at startup (core/session/apps.c): the
 * decisions net/ does not take. Each hook may end the connection. */
typedef struct sp_session_hooks {
    /* The connection is accepted, and a trusted proxy's PROXY header read: admit it,
     * then sniff its first bytes or route it. */
    void (*begin)(sp_conn *c);
    /* While SNIFFING: more first bytes arrived. net/ keeps every one in c->sniffed (a
     * stream route forwards them); the hook routes when they suffice. */
    void (*sniffed)(sp_conn *c);
    /* While HANDSHAKE: the client's TLS handshake for a terminating route is done (the
     * plaintext that came with it is held in the connection's early queue). */
    void (*handshake_done)(sp_conn *c);
    /* An application hands the connection to a stream route that its first bytes
     * chose (an HTTP session whose first request matched one): act on that route. */
    void (*route_stream)(sp_conn *c, const struct sp_route *r);
} sp_session_hooks;

/* Installs the session layer; once, before the first worker starts. */
void sp_conn_install_session(const sp_session_hooks *hooks);

#endif
