#include "tls/context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/cert_live.h"
#include "tls/openssl_error.h"

/* Mozilla's "intermediate" TLS 1.2 suites; TLS 1.3 keeps OpenSSL's defaults. */
#define TLS12_CIPHERS                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                         \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                         \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                         \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

static bool is_pem(const char *s) { return strncmp(s, "-----BEGIN", 10) == 0; }

/* Chooses http/1.1 when the client offers it; otherwise no ALPN (the connection goes on:
 * a byte stream does not care, and refusing would break clients that only offer h2). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int load_cert(SSL_CTX *ctx, const char *cert)
{
    if (!is_pem(cert))
        return SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 ? 0 : -1;
    BIO *bio = BIO_new_mem_buf(cert, -1);
    X509 *x = bio ? PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL) : NULL;
    int rc = x && SSL_CTX_use_certificate(ctx, x) == 1 ? 0 : -1;
    X509_free(x);
    while (rc == 0) { /* the rest of the PEM is the chain */
        X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!ca) {
            ERR_clear_error(); /* the end of the PEM is not an error */
            break;
        }
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            rc = -1;
        }
    }
    BIO_free(bio);
    return rc;
}

static int load_key(SSL_CTX *ctx, const char *key)
{
    if (!is_pem(key))
        return SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 ? 0 : -1;
    BIO *bio = BIO_new_mem_buf(key, -1);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    int rc = k && SSL_CTX_use_PrivateKey(ctx, k) == 1 ? 0 : -1;
    EVP_PKEY_free(k);
    BIO_free(bio);
    return rc;
}

static const char *shown(const char *s) { return is_pem(s) ? "inline PEM" : s; }

static SSL_CTX *build_server(const sp_gen *g, const sp_route *r, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        sp_openssl_error(why, sizeof why, NULL, "unknown error");
        snprintf(err, errlen, "%s: route \"%s\" (#%d): action.tls: %s", g->file, r->name, r->index, why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, r->tls.min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections keep no buffers */
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)r->name,
                                   (unsigned)(strlen(r->name) > 32 ? 32 : strlen(r->name)));
    if (r->tls.cert_auto) { /* chosen per handshake by name: core/tls/cert_live.h */
        SSL_CTX_set_cert_cb(ctx, sp_cert_live_select, NULL);
        return ctx;
    }
    const char *field = "action.tls.certificate.cert", *what = r->tls.cert;
    if (load_cert(ctx, r->tls.cert) == 0) {
        field = "action.tls.certificate.key";
        what = r->tls.key;
        if (load_key(ctx, r->tls.key) == 0) {
            if (SSL_CTX_check_private_key(ctx) == 1)
                return ctx;
            sp_openssl_error(why, sizeof why, NULL, "unknown error");
            snprintf(err, errlen, "%s: route \"%s\" (#%d): action.tls.certificate: the key does not match the certificate (%s)",
                     g->file, r->name, r->index, why);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    sp_openssl_error(why, sizeof why, NULL, "unknown error");
    snprintf(err, errlen, "%s: route \"%s\" (#%d): %s: cannot load %s: %s", g->file, r->name, r->index,
             field, shown(what), why);
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *build_client(const sp_gen *g, const sp_route *r, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (r->tls.upstream_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = r->tls.upstream_ca_file ? SSL_CTX_load_verify_locations(ctx, r->tls.upstream_ca_file, NULL)
                                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            sp_openssl_error(why, sizeof why, NULL, "unknown error");
            snprintf(err, errlen, "%s: route \"%s\" (#%d): action.tls.upstream_ca_file: cannot load %s: %s",
                     g->file, r->name, r->index, r->tls.upstream_ca_file ? r->tls.upstream_ca_file : "the system CAs", why);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
fail:
    sp_openssl_error(why, sizeof why, NULL, "unknown error");
    snprintf(err, errlen, "%s: route \"%s\" (#%d): action.tls: %s", g->file, r->name, r->index, why);
    return NULL;
}

sp_tls_set *sp_tls_set_build(sp_gen *g, char *err, size_t errlen)
{
    sp_tls_set *s = calloc(1, sizeof *s);
    if (s)
        atomic_init(&s->refs, 1);
    if (!s || !(s->server = calloc(g->nroutes + 1, sizeof *s->server)) ||
        !(s->client = calloc(g->nroutes + 1, sizeof *s->client))) {
        snprintf(err, errlen, "%s: out of memory", g->file);
        sp_tls_set_unref(s);
        return NULL;
    }
    s->n = g->nroutes;
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        if (r->tls.mode == SP_TLS_TERMINATE || r->tls.mode == SP_TLS_REENCRYPT)
            if (!(s->server[i] = build_server(g, r, err, errlen)))
                goto fail;
        if (r->tls.mode == SP_TLS_REENCRYPT)
            if (!(s->client[i] = build_client(g, r, err, errlen)))
                goto fail;
    }
    if (sp_tls_set_attach(s, g, err, errlen) == 0)
        return s;
fail:
    sp_tls_set_unref(s);
    return NULL;
}

int sp_tls_set_attach(const sp_tls_set *s, sp_gen *g, char *err, size_t errlen)
{
    if (s->n != g->nroutes) {
        snprintf(err, errlen, "%s: the configuration produced %zu routes here but %zu when it was checked "
                              "(does it depend on something that changes between loads?)",
                 g->file, g->nroutes, s->n);
        return -1;
    }
    for (size_t i = 0; i < s->n; i++) {
        sp_route_tls *t = &g->routes[i].tls;
        if (s->server[i] && SSL_CTX_up_ref(s->server[i]))
            t->server_ctx = s->server[i];
        if (s->client[i] && SSL_CTX_up_ref(s->client[i]))
            t->client_ctx = s->client[i];
    }
    return 0;
}

void sp_tls_set_unref(sp_tls_set *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; s->server && s->client && i < s->n; i++) {
        SSL_CTX_free(s->server[i]);
        SSL_CTX_free(s->client[i]);
    }
    free(s->server);
    free(s->client);
    free(s);
}

SSL_CTX *sp_tls_lua_client_ctx(bool verify)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            ERR_clear_error(); /* no system store: every verification fails, as it should */
    }
    return ctx;
}
