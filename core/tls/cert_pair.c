/* cert_pair: parsed certificate chains with their keys (see cert_pair.h). */
#include "tls/cert_pair.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/openssl_error.h"

static void reason(char *out, size_t len, const char *what)
{
    sp_openssl_error(out, len, what, "unknown error");
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

sp_cert_pair *sp_cert_pair_parse(const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    sp_cert_pair *p = calloc(1, sizeof *p);
    BIO *b = NULL;
    if (!p || !(p->chain = sk_X509_new_null())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    atomic_init(&p->refs, 1);
    b = BIO_new_mem_buf(cert_pem, -1);
    if (!b || !(p->leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL))) {
        reason(err, errlen, "no certificate in the PEM");
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x) {
            ERR_clear_error(); /* the end of the PEM */
            break;
        }
        if (!sk_X509_push(p->chain, x)) {
            X509_free(x);
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    if (!b || !(p->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
        reason(err, errlen, "no private key in the PEM");
        goto fail;
    }
    if (X509_check_private_key(p->leaf, p->key) != 1) {
        reason(err, errlen, "the key does not match the certificate");
        goto fail;
    }
    BIO_free(b);
    p->not_before = asn1_time(X509_get0_notBefore(p->leaf));
    p->not_after = asn1_time(X509_get0_notAfter(p->leaf));
    return p;
fail:
    BIO_free(b);
    if (p) {
        atomic_init(&p->refs, 1);
        sp_cert_pair_unref(p);
    }
    return NULL;
}

void sp_cert_pair_ref(sp_cert_pair *p) { atomic_fetch_add(&p->refs, 1); }

void sp_cert_pair_unref(sp_cert_pair *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    X509_free(p->leaf);
    if (p->chain)
        sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    free(p);
}

int sp_cert_pair_covers(const sp_cert_pair *p, const char *name)
{
    if (strncmp(name, "*.", 2) == 0) { /* the literal wildcard must be among the SANs */
        GENERAL_NAMES *gens = X509_get_ext_d2i(p->leaf, NID_subject_alt_name, NULL, NULL);
        int found = 0;
        for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type == GEN_DNS) {
                const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
                found = (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(name) && strcasecmp(s, name) == 0;
            }
        }
        GENERAL_NAMES_free(gens);
        return found;
    }
    return X509_check_host(p->leaf, name, 0, 0, NULL) == 1;
}
