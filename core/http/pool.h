/* pool: idle upstream HTTP connections of one worker, kept for reuse.
 *
 * A connection goes in when the client connection that used it ends with it idle (the
 * last response complete, nothing queued) and comes out for the next request to the same
 * key (target host and port, and the TLS context and SNI of a re-encrypting route).
 * While idle it is read: any byte, EOF or error means the server gave up on it and it is
 * closed at once. At most limits.upstream_keepalive idle connections per key; each is
 * closed after timeouts.upstream_idle. The pool owns what is in it: its sockets and TLS
 * sessions, closed when evicted or when the worker stops. */
#ifndef SP_HTTP_POOL_H
#define SP_HTTP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "tls/stream.h"

typedef struct sp_http_pool sp_http_pool;

sp_http_pool *sp_http_pool_new(uv_loop_t *loop);
/* Closes every idle connection and then frees the pool (asynchronously). */
void sp_http_pool_close(sp_http_pool *p);

/* Takes an idle connection (its reading must be stopped; tls may be NULL/empty). Returns
 * false, taking nothing, when the key already has `max` idle connections (or max is 0). */
bool sp_http_pool_put(sp_http_pool *p, const char *key, uv_tcp_t *tcp, sp_tls_stream *tls,
                      size_t max, uint64_t idle_ms);
/* An idle connection for key, or NULL. The caller owns *tcp and *tls afterwards (tcp's
 * data pointer and reading are the caller's to set). */
uv_tcp_t *sp_http_pool_take(sp_http_pool *p, const char *key, sp_tls_stream *tls);

/* Idle connections now, for /stats. */
size_t sp_http_pool_size(const sp_http_pool *p);

#endif
