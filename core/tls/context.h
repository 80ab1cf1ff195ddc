/* context: the OpenSSL contexts of a generation's TLS routes.
 *
 * The main thread builds them once per load (reading certificate files there, never on a
 * worker) into a set that travels with the recorded sources; each worker attaches the
 * same contexts to its own copy of the routes. An SSL_CTX is safe to share between
 * threads once configured, and sharing it shares the session cache and ticket keys, so a
 * session resumes whichever worker the client lands on. */
#ifndef SP_TLS_CONTEXT_H
#define SP_TLS_CONTEXT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config/config.h"

typedef struct sp_tls_set {
    _Atomic int refs;
    size_t n;                  /* routes in the generation it was built for */
    SSL_CTX **server;          /* by route position; NULL when not terminating */
    SSL_CTX **client;          /* by route position; NULL unless re-encrypting */
} sp_tls_set;

/* Builds the contexts for g's routes and attaches them to g. NULL with a SPEC 10 message
 * (file, route, field, OpenSSL's reason) when a certificate or key cannot be used. */
sp_tls_set *sp_tls_set_build(sp_gen *g, char *err, size_t errlen);
/* Attaches a set built for the same configuration to another copy of its routes. */
int sp_tls_set_attach(const sp_tls_set *s, sp_gen *g, char *err, size_t errlen);
void sp_tls_set_unref(sp_tls_set *s);

/* When the certificate a terminating route serves from its files expires (Unix time);
 * false for routes without one (passthrough, plain, certificate = "auto"). For the
 * expiry metric and --check's warning. */
bool sp_tls_route_cert_expiry(const sp_route *r, time_t *not_after);

/* A client context for Lua's sp.connect: verifying against the system CAs or not.
 * Built once by the main thread (loading the CA store reads files). */
SSL_CTX *sp_tls_lua_client_ctx(bool verify);

#endif
