/* route: sniff -> route -> act, the decisions between an accepted connection and the
 * application that serves it.
 *
 * After accept (and a trusted proxy's PROXY header, both in net/), a connection is
 * admitted (session/admit.h), then its first bytes are sniffed when its port's routes
 * need them: a TLS ClientHello gives the SNI (and the offered version), bytes that are
 * not TLS on a port whose routes read request heads go to an HTTP session, which routes
 * by its first request. The route chosen is acted on: its admission (lists, limits),
 * block, a Lua socket handler, the client's TLS handshake for terminating routes, then
 * the HTTP session (HTTP routes) or the dial to a target (streams, which get the bytes
 * read while routing).
 *
 * These are the hooks of net/app.h's sp_session_hooks, installed by session/apps.c;
 * each may end the connection. */
#ifndef SP_SESSION_ROUTE_H
#define SP_SESSION_ROUTE_H

typedef struct sp_conn sp_conn;
struct sp_route;

/* Accepted: admit, then sniff or route now (servers that speak first work: nothing
 * waits for the client when the port's routes need no first bytes). */
void sp_session_begin(sp_conn *c);
/* More first bytes in c->sniffed: route as soon as they tell enough. */
void sp_session_sniffed(sp_conn *c);
/* The client's TLS handshake (terminating route) is done: the HTTP session or the dial. */
void sp_session_handshake_done(sp_conn *c);
/* An application's first bytes chose stream route r: act on it. */
void sp_session_route_stream(sp_conn *c, const struct sp_route *r);

#endif
