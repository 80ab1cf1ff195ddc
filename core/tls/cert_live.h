/* cert_live: the certificates that "auto" routes serve right now, by name, process-wide.
 *
 * The main thread (core/cert/manager.c) publishes a pair per name with sp_cert_live_set;
 * workers pick one during each handshake in sp_cert_live_select, the SSL_CTX cert
 * callback of every "auto" context (core/tls/context.c). The shared SSL_CTX is never
 * modified after it is built: the chosen pair is copied into the handshake's own SSL, so
 * a renewal is a pointer swap under a reader-writer lock and connections that are
 * already established keep the certificate they were handed.
 *
 * A name is looked up as the SNI, then as "*.<parent>" for a wildcard certificate. No
 * pair (not provisioned yet, or no SNI): the handshake fails with a handshake_failure
 * alert and is counted (sp_cert_live_missing) and logged with the name. */
#ifndef SP_TLS_CERT_LIVE_H
#define SP_TLS_CERT_LIVE_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "tls/cert_pair.h"

/* Publishes pair for name (lowercase; "*.example.com" for a wildcard), taking a
 * reference; NULL withdraws it. The old pair is released once no handshake holds it. */
int sp_cert_live_set(const char *name, sp_cert_pair *pair);
/* The pair served for an SNI name now (a new reference; release it), or NULL. */
sp_cert_pair *sp_cert_live_get(const char *sni);
/* SSL_CTX_set_cert_cb callback. */
int sp_cert_live_select(SSL *ssl, void *arg);
/* Handshakes refused because no certificate existed for the name. */
uint64_t sp_cert_live_missing(void);
/* Forgets everything (at exit). */
void sp_cert_live_clear(void);

#endif
