/* proxy: HTTP/1.1 reverse proxying on a client connection, request by request.
 *
 * A connection becomes an HTTP one when the first request head routes to an HTTP route
 * (plain ports), or when a terminating HTTP route's TLS handshake completes. From then on
 * each request is parsed (core/http/message), routed on its own (Host, path, headers),
 * checked (allow/block lists, basic_auth, rate_limit), then answered here (redirect,
 * block, errors) or forwarded: the head rewritten (core/http/head), the body streamed as
 * framed, the response head rewritten and its body streamed back. One exchange at a time;
 * pipelined requests wait in order. The upstream connection stays with the client
 * connection while it lives and goes to the worker's pool (core/http/pool) when it ends.
 * An Upgrade answered with 101 turns the connection into a plain tunnel (PIPING).
 *
 * The session lives in sp_conn.http and is freed with the connection; the connection's
 * one cleanup path stays the only one. */
#ifndef SP_HTTP_PROXY_H
#define SP_HTTP_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/registry.h"

typedef struct sp_conn sp_conn;
typedef struct sp_side sp_side;
typedef struct sp_http sp_http;

/* Sniffing found no TLS on a port with HTTP routes: parse the first request from
 * c->sniffed (called again as more arrives). Routes when the head is complete. */
void sp_http_sniffed(sp_conn *c);
/* A terminating HTTP route finished the client's TLS handshake: serve requests. */
void sp_http_begin_tls(sp_conn *c);

/* Bytes from a side (plaintext when its TLS is ours). Takes the pool buffer. */
void sp_http_input(sp_conn *c, sp_side *from, void *buf, size_t len);
/* A side finished sending (FIN or close_notify), or failed with `reason`. */
void sp_http_side_ended(sp_conn *c, sp_side *from, bool error, sp_end_reason reason);
/* What was queued to `to` drained below the low-water mark. */
void sp_http_drained(sp_conn *c, sp_side *to);
/* The target connection (and its TLS) is ready; or every candidate failed. */
void sp_http_target_ready(sp_conn *c);
void sp_http_target_failed(sp_conn *c, sp_end_reason why);
/* The connection's deadline in the HTTP state, and what happens when it passes. */
uint64_t sp_http_deadline(sp_conn *c);
void sp_http_timeout(sp_conn *c);
/* Between requests, nothing of the next one read: safe to close (graceful stop). */
bool sp_http_idle(const sp_conn *c);
/* The connection ends: an idle upstream connection goes to the pool. */
void sp_http_release_target(sp_conn *c);
void sp_http_free(sp_http *h);

#endif
