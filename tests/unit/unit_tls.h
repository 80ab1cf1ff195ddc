/*
 * TLS helpers for unit tests, header only like unit.h: a self-signed P-256 certificate
 * (for stores and pairs) and a server context made of one (for handshakes).
 */
#ifndef SP_TESTS_UNIT_TLS_H
#define SP_TESTS_UNIT_TLS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* A certificate for key k, valid for a day, CN "t", with the SAN list san (e.g.
 * "DNS:a.test,DNS:*.w.test") unless NULL. The caller frees it. */
static inline X509 *unit_self_signed(EVP_PKEY *k, const char *san)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    if (san) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, k, EVP_sha256());
    return x;
}

/* A TLS server context with a fresh key and its self-signed certificate. */
static inline SSL_CTX *unit_tls_server_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = unit_self_signed(k, NULL);
    SSL_CTX_use_certificate(ctx, x);
    SSL_CTX_use_PrivateKey(ctx, k);
    X509_free(x);
    EVP_PKEY_free(k);
    return ctx;
}

#endif
