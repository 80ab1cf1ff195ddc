/* cert_pair: a certificate chain and its private key, parsed once and shared by reference.
 *
 * A pair is immutable after sp_cert_pair_parse(); handshakes on any worker take a
 * reference while they copy it into their SSL (see cert_live.h), so swapping in a renewed
 * pair never frees one a handshake is still reading. */
#ifndef SP_TLS_CERT_PAIR_H
#define SP_TLS_CERT_PAIR_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

typedef struct sp_cert_pair {
    _Atomic int refs;
    X509 *leaf;
    STACK_OF(X509) *chain;     /* intermediates after the leaf, maybe empty */
    EVP_PKEY *key;
    time_t not_before, not_after;
} sp_cert_pair;

/* Parses PEM text: cert_pem holds the leaf then its chain (fullchain.pem), key_pem the
 * private key. Checks that the key matches the leaf. NULL with a reason in err. */
sp_cert_pair *sp_cert_pair_parse(const char *cert_pem, const char *key_pem, char *err, size_t errlen);
void sp_cert_pair_ref(sp_cert_pair *p);
void sp_cert_pair_unref(sp_cert_pair *p);
/* True when the leaf's subjectAltName (or CN without SANs) covers name ("*.x" stored
 * names are checked as that literal wildcard). */
int sp_cert_pair_covers(const sp_cert_pair *p, const char *name);

#endif
