/* proxy: HTTP/1.1 reverse proxying on a client connection, request by request.
 *
 * A connection becomes an HTTP one when the first request head routes to an HTTP route
 * (plain ports), or when a terminating HTTP route's TLS handshake completes. From then on
 * each request is parsed (core/proto/http_message), routed on its own (Host, path, headers),
 * checked (allow/block lists, basic_auth, rate_limit), then answered here (redirect,
 * block, errors) or forwarded: the head rewritten (core/http/head), the body streamed as
 * framed, the response head rewritten and its body streamed back. One exchange at a time;
 * pipelined requests wait in order. The upstream connection stays with the client
 * connection while it lives and goes to the worker's pool (core/http/pool) when it ends.
 * An Upgrade answered with 101 turns the connection into a plain tunnel (PIPING).
 *
 * The session is the connection's application (net/app.h): sp_conn.app_ctx, reached by
 * net/ only through the ops table, and freed with the connection; the connection's one
 * cleanup path stays the only one. */
#ifndef SP_HTTP_PROXY_H
#define SP_HTTP_PROXY_H

typedef struct sp_conn sp_conn;

/* Sniffing found no TLS on a port with HTTP routes: parse the first request from
 * c->sniffed (called again as more arrives). Routes when the head is complete. */
void sp_http_sniffed(sp_conn *c);
/* A terminating HTTP route finished the client's TLS handshake: serve requests. */
void sp_http_begin_tls(sp_conn *c);

#endif
