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

/* "FILE: route \"NAME\" (#N): FIELD: " and the message, with OpenSSL's reason. */
static int ctx_fail(const sp_gen *g, const sp_route *r, const char *field, char *err, size_t errlen,
                    const char *what)
{
    char why[256];
    sp_openssl_error(why, sizeof why, NULL, "unknown error");
    snprintf(err, errlen, "%s: route \"%s\" (#%d): %s: %s: %s", g->file, r->name, r->index, field, what, why);
    return -1;
}

/* action.tls.groups and .sigalgs, on either side of the handshake. */
static int set_handshake_lists(SSL_CTX *ctx, const sp_gen *g, const sp_route *r, char *err, size_t errlen)
{
    char what[300];
    const char *groups = r->tls.groups ? r->tls.groups : SP_TLS_DEFAULT_GROUPS;
    if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        snprintf(what, sizeof what, "this OpenSSL cannot use \"%s\"", groups);
        return ctx_fail(g, r, "action.tls.groups", err, errlen, what);
    }
    if (r->tls.sigalgs && SSL_CTX_set1_sigalgs_list(ctx, r->tls.sigalgs) != 1) {
        snprintf(what, sizeof what, "this OpenSSL cannot use \"%s\"", r->tls.sigalgs);
        return ctx_fail(g, r, "action.tls.sigalgs", err, errlen, what);
    }
    return 0;
}

/* The CAs of client_auth.ca (a file or inline PEM): trusted for the chain, and named to
 * the client in the CertificateRequest. */
static int load_client_cas(SSL_CTX *ctx, const char *ca)
{
    BIO *bio = is_pem(ca) ? BIO_new_mem_buf(ca, -1) : BIO_new_file(ca, "r");
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0, rc = bio && names ? 0 : -1;
    for (X509 *x; rc == 0 && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)); X509_free(x), n++) {
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(x));
        if (X509_STORE_add_cert(store, x) != 1 || !name || !sk_X509_NAME_push(names, name)) {
            X509_NAME_free(name);
            rc = -1;
        }
    }
    if (rc == 0 && n == 0)
        rc = -1; /* the PEM reader's error says why */
    else if (rc == 0)
        ERR_clear_error(); /* the end of the PEM is not an error */
    if (rc == 0)
        SSL_CTX_set_client_CA_list(ctx, names);
    else
        sk_X509_NAME_pop_free(names, X509_NAME_free);
    BIO_free(bio);
    return rc;
}

static int load_crl(SSL_CTX *ctx, const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int rc = crl && X509_STORE_add_crl(store, crl) == 1 ? 0 : -1;
    if (rc == 0)
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    X509_CRL_free(crl);
    BIO_free(bio);
    return rc;
}

/* action.tls.client_auth: mutual TLS towards clients. */
static int set_client_auth(SSL_CTX *ctx, const sp_gen *g, const sp_route *r, char *err, size_t errlen)
{
    if (r->tls.client_auth == SP_CLIENT_AUTH_NONE)
        return 0;
    char what[300];
    if (load_client_cas(ctx, r->tls.client_ca) != 0) {
        snprintf(what, sizeof what, "cannot load %s", shown(r->tls.client_ca));
        return ctx_fail(g, r, "action.tls.client_auth.ca", err, errlen, what);
    }
    if (r->tls.client_crl && load_crl(ctx, r->tls.client_crl) != 0) {
        snprintf(what, sizeof what, "cannot load %s", r->tls.client_crl);
        return ctx_fail(g, r, "action.tls.client_auth.crl", err, errlen, what);
    }
    int mode = SSL_VERIFY_PEER;
    if (r->tls.client_auth == SP_CLIENT_AUTH_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL); /* a certificate that is sent must verify, in both modes */
    return 0;
}

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
    if (set_handshake_lists(ctx, g, r, err, errlen) != 0 || set_client_auth(ctx, g, r, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
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
    if (set_handshake_lists(ctx, g, r, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (r->tls.upstream_cert) {
        bool cert_ok = load_cert(ctx, r->tls.upstream_cert) == 0;
        if (!cert_ok || load_key(ctx, r->tls.upstream_key) != 0 || SSL_CTX_check_private_key(ctx) != 1) {
            char what[300];
            snprintf(what, sizeof what, "cannot use %s", shown(cert_ok ? r->tls.upstream_key : r->tls.upstream_cert));
            ctx_fail(g, r, cert_ok ? "action.tls.upstream_key" : "action.tls.upstream_cert", err, errlen, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
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

bool sp_tls_route_cert_expiry(const sp_route *r, time_t *not_after)
{
    X509 *x = r->tls.server_ctx && !r->tls.cert_auto ? SSL_CTX_get0_certificate(r->tls.server_ctx) : NULL;
    struct tm tm;
    if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return false;
    *not_after = timegm(&tm);
    return true;
}
