/* acme: one RFC 8555 order, HTTP-01, blocking, on its own thread (see acme.h). */
#include "cert/acme.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cert/http_client.h"
#include "cert/jsonr.h"
#include "cert/jws.h"
#include "http/challenges.h"

#define POLL_LIMIT_MS 30000
#define NONCE_RETRIES 10

typedef struct session {
    const sp_acme_params *p;
    SSL_CTX *ctx;
    EVP_PKEY *key;
    char *kid;
    char *nonce;
    char *new_nonce, *new_account, *new_order;
    char *err;
    size_t errlen;
} session;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool cancelled(session *s)
{
    if (s->p->cancel && atomic_load(s->p->cancel)) {
        snprintf(s->err, s->errlen, "cancelled (shutting down)");
        return true;
    }
    return false;
}

/* "step: HTTP 403 urn:...:unauthorized: detail" from a problem document, if any. */
static void problem(session *s, const char *step, const sp_http_resp *r)
{
    sp_jv *doc = r->body ? sp_jv_parse(r->body, r->body_len) : NULL;
    const char *type = sp_jv_str(doc, "type"), *detail = sp_jv_str(doc, "detail");
    if (type || detail)
        snprintf(s->err, s->errlen, "%s: HTTP %d, problem %s: %s", step, r->status, type ? type : "(no type)",
                 detail ? detail : "(no detail)");
    else
        snprintf(s->err, s->errlen, "%s: HTTP %d: %.200s", step, r->status, r->body ? r->body : "");
    sp_jv_free(doc);
}

static void take_nonce(session *s, sp_http_resp *r)
{
    if (r->nonce) {
        free(s->nonce);
        s->nonce = r->nonce;
        r->nonce = NULL;
    }
}

static int fresh_nonce(session *s)
{
    sp_http_resp r;
    if (sp_https_request(s->ctx, "HEAD", s->new_nonce, NULL, NULL, s->p->timeout_ms, &r, s->err, s->errlen) != 0)
        return -1;
    take_nonce(s, &r);
    int ok = s->nonce != NULL;
    if (!ok)
        snprintf(s->err, s->errlen, "newNonce: HTTP %d without a Replay-Nonce", r.status);
    sp_http_resp_free(&r);
    return ok ? 0 : -1;
}

static bool is_bad_nonce(const sp_http_resp *r)
{
    if (r->status != 400 || !r->body)
        return false;
    sp_jv *doc = sp_jv_parse(r->body, r->body_len);
    const char *type = sp_jv_str(doc, "type");
    bool bad = type && strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
    sp_jv_free(doc);
    return bad;
}

/* A signed POST (payload NULL: POST-as-GET). 2xx -> 0 with *out; else -1 with the
 * problem document in err. */
static int post(session *s, const char *step, const char *url, const char *payload, sp_http_resp *out)
{
    for (int attempt = 0; attempt < NONCE_RETRIES; attempt++) {
        if (cancelled(s) || (!s->nonce && fresh_nonce(s) != 0))
            return -1;
        char *jws = sp_jws_sign(s->key, s->kid, s->nonce, url, payload, s->err, s->errlen);
        free(s->nonce);
        s->nonce = NULL;
        if (!jws)
            return -1;
        int rc = sp_https_request(s->ctx, "POST", url, "application/jose+json", jws, s->p->timeout_ms, out,
                                  s->err, s->errlen);
        free(jws);
        if (rc != 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", s->err);
            snprintf(s->err, s->errlen, "%s: %s", step, why);
            return -1;
        }
        take_nonce(s, out);
        if (out->status >= 200 && out->status < 300)
            return 0;
        if (is_bad_nonce(out)) { /* RFC 8555 6.5: retry with the nonce this answer carried */
            sp_http_resp_free(out);
            continue;
        }
        problem(s, step, out);
        sp_http_resp_free(out);
        return -1;
    }
    snprintf(s->err, s->errlen, "%s: the server rejected %d nonces in a row", step, NONCE_RETRIES);
    return -1;
}

static sp_jv *post_json(session *s, const char *step, const char *url, const char *payload, char **location)
{
    sp_http_resp r;
    if (post(s, step, url, payload, &r) != 0)
        return NULL;
    sp_jv *doc = sp_jv_parse(r.body, r.body_len);
    if (!doc)
        snprintf(s->err, s->errlen, "%s: HTTP %d: the answer is not JSON", step, r.status);
    if (doc && location) {
        *location = r.location;
        r.location = NULL;
    }
    sp_http_resp_free(&r);
    return doc;
}

static int directory(session *s)
{
    sp_http_resp r;
    if (sp_https_request(s->ctx, "GET", s->p->directory, NULL, NULL, s->p->timeout_ms, &r, s->err, s->errlen) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", s->err);
        snprintf(s->err, s->errlen, "directory %s: %s", s->p->directory, why);
        return -1;
    }
    if (r.status != 200) {
        problem(s, "directory", &r);
        sp_http_resp_free(&r);
        return -1;
    }
    sp_jv *doc = sp_jv_parse(r.body, r.body_len);
    sp_http_resp_free(&r);
    const char *nn = sp_jv_str(doc, "newNonce"), *na = sp_jv_str(doc, "newAccount"), *no = sp_jv_str(doc, "newOrder");
    if (nn && na && no) {
        s->new_nonce = strdup(nn);
        s->new_account = strdup(na);
        s->new_order = strdup(no);
    }
    sp_jv_free(doc);
    if (!s->new_nonce || !s->new_account || !s->new_order) {
        snprintf(s->err, s->errlen, "directory %s: not an ACME directory (newNonce, newAccount, newOrder)",
                 s->p->directory);
        return -1;
    }
    return 0;
}

static int account(session *s)
{
    char payload[600];
    if (s->p->email)
        snprintf(payload, sizeof payload, "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:%s\"]}", s->p->email);
    else
        snprintf(payload, sizeof payload, "{\"termsOfServiceAgreed\":true}");
    char *loc = NULL;
    sp_jv *doc = post_json(s, "newAccount", s->new_account, payload, &loc);
    sp_jv_free(doc);
    if (!doc)
        return -1;
    if (!loc) {
        snprintf(s->err, s->errlen, "newAccount: no Location (account URL) in the answer");
        return -1;
    }
    s->kid = loc;
    return 0;
}

/* POST-as-GET url while its "status" is "pending" or "processing" (or "ready" when
 * waiting for a "valid" order), for at most POLL_LIMIT_MS; returns the last document. */
static sp_jv *poll(session *s, const char *step, const char *url, const char *until)
{
    int waited = 0, pause = 100;
    for (;;) {
        sp_jv *doc = post_json(s, step, url, NULL, NULL);
        if (!doc)
            return NULL;
        const char *st = sp_jv_str(doc, "status");
        if (!st) {
            snprintf(s->err, s->errlen, "%s: no status in the answer", step);
            sp_jv_free(doc);
            return NULL;
        }
        bool waiting = strcmp(st, "pending") == 0 || strcmp(st, "processing") == 0 ||
                       (until && strcmp(st, "ready") == 0 && strcmp(until, "valid") == 0);
        if (!waiting)
            return doc;
        if (waited >= POLL_LIMIT_MS) {
            snprintf(s->err, s->errlen, "%s: still \"%s\" after %d s", step, st, POLL_LIMIT_MS / 1000);
            sp_jv_free(doc);
            return NULL;
        }
        sp_jv_free(doc);
        sleep_ms(pause);
        waited += pause;
        pause = pause < 1000 ? pause * 2 : 1000;
    }
}

/* The challenge's or authorization's error, for the log line. */
static void authz_error(session *s, const sp_jv *authz)
{
    const sp_jv *chs = sp_jv_get(authz, "challenges");
    for (const sp_jv *c = chs ? chs->child : NULL; c; c = c->next) {
        const sp_jv *e = sp_jv_get(c, "error");
        if (e) {
            snprintf(s->err, s->errlen, "authorization for %s invalid: problem %s: %s", s->p->domain,
                     sp_jv_str(e, "type") ? sp_jv_str(e, "type") : "(no type)",
                     sp_jv_str(e, "detail") ? sp_jv_str(e, "detail") : "(no detail)");
            return;
        }
    }
    snprintf(s->err, s->errlen, "authorization for %s invalid (no error given)", s->p->domain);
}

static int authorize(session *s, const char *url, const char *thumb)
{
    sp_jv *authz = post_json(s, "authorization", url, NULL, NULL);
    if (!authz)
        return -1;
    const char *st = sp_jv_str(authz, "status");
    if (st && strcmp(st, "valid") == 0) {
        sp_jv_free(authz);
        return 0;
    }
    const sp_jv *chs = sp_jv_get(authz, "challenges");
    const char *token = NULL, *chal = NULL;
    for (const sp_jv *c = chs ? chs->child : NULL; c && !token; c = c->next) {
        const char *type = sp_jv_str(c, "type");
        if (type && strcmp(type, "http-01") == 0) {
            token = sp_jv_str(c, "token");
            chal = sp_jv_str(c, "url");
        }
    }
    if (!token || !chal || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(token)) {
        snprintf(s->err, s->errlen, "authorization for %s: no usable http-01 challenge offered", s->p->domain);
        sp_jv_free(authz);
        return -1;
    }
    char keyauth[300];
    snprintf(keyauth, sizeof keyauth, "%s.%s", token, thumb);
    char *tok = strdup(token), *churl = strdup(chal);
    sp_jv_free(authz);
    int rc = -1;
    if (!tok || !churl || sp_challenges_put(s->p->challenges, tok, keyauth) != 0) {
        snprintf(s->err, s->errlen, "out of memory");
        goto out;
    }
    sp_jv *ack = post_json(s, "challenge", churl, "{}", NULL);
    if (ack) {
        sp_jv_free(ack);
        sp_jv *done = poll(s, "authorization", url, NULL);
        if (done) {
            st = sp_jv_str(done, "status");
            if (st && strcmp(st, "valid") == 0)
                rc = 0;
            else
                authz_error(s, done);
            sp_jv_free(done);
        }
    }
    sp_challenges_remove(s->p->challenges, tok);
out:
    free(tok);
    free(churl);
    return rc;
}

/* A fresh P-256 key and a CSR naming domain, base64url DER. */
static int make_csr(session *s, EVP_PKEY **key, char **csr64)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    unsigned char *der = NULL;
    int rc = -1;
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", s->p->domain);
    *key = EVP_EC_gen("P-256");
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (!req || !name || !exts || !*key || !ext || !sk_X509_EXTENSION_push(exts, ext))
        goto fail;
    ext = NULL;
    if (strlen(s->p->domain) <= 64 &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)s->p->domain, -1, -1, 0) != 1)
        goto fail;
    if (X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, *key) != 1 ||
        X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, *key, EVP_sha256()) <= 0)
        goto fail;
    int n = i2d_X509_REQ(req, &der);
    if (n <= 0 || !(*csr64 = malloc((size_t)n * 4 / 3 + 4)))
        goto fail;
    sp_b64url(der, (size_t)n, *csr64, (size_t)n * 4 / 3 + 4);
    rc = 0;
    goto out;
fail:
    snprintf(s->err, s->errlen, "cannot make a CSR for %s", s->p->domain);
    ERR_clear_error();
    EVP_PKEY_free(*key);
    *key = NULL;
out:
    X509_EXTENSION_free(ext);
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return rc;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1 && (n = BIO_get_mem_data(b, &data)) > 0 &&
        (out = malloc((size_t)n + 1))) {
        memcpy(out, data, (size_t)n);
        out[n] = 0;
    }
    BIO_free(b);
    return out;
}

static int order(session *s, char **cert_pem, char **key_out)
{
    char thumb[64], payload[400], *order_url = NULL, *csr64 = NULL;
    EVP_PKEY *dkey = NULL;
    sp_jv *ord = NULL;
    int rc = -1;
    if (sp_jwk_thumbprint(s->key, thumb, s->err, s->errlen) != 0)
        return -1;
    snprintf(payload, sizeof payload, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"%s\"}]}", s->p->domain);
    if (!(ord = post_json(s, "newOrder", s->new_order, payload, &order_url)))
        goto out;
    if (!order_url) {
        snprintf(s->err, s->errlen, "newOrder: no Location (order URL) in the answer");
        goto out;
    }
    const sp_jv *authzs = sp_jv_get(ord, "authorizations");
    const char *finalize = sp_jv_str(ord, "finalize");
    if (!authzs || authzs->type != SP_JV_ARR || !finalize) {
        snprintf(s->err, s->errlen, "newOrder: no authorizations or finalize URL in the order");
        goto out;
    }
    for (const sp_jv *a = authzs->child; a; a = a->next)
        if (a->type != SP_JV_STR || authorize(s, a->str, thumb) != 0)
            goto out;
    char *fin = strdup(finalize);
    sp_jv_free(ord);
    ord = NULL;
    if (!fin || make_csr(s, &dkey, &csr64) != 0) {
        free(fin);
        goto out;
    }
    char *body = malloc(strlen(csr64) + 16);
    if (body)
        sprintf(body, "{\"csr\":\"%s\"}", csr64);
    sp_jv *f = body ? post_json(s, "finalize", fin, body, NULL) : NULL;
    free(body);
    free(fin);
    if (!f)
        goto out;
    sp_jv_free(f);
    if (!(ord = poll(s, "order", order_url, "valid")))
        goto out;
    const char *st = sp_jv_str(ord, "status"), *cert_url = sp_jv_str(ord, "certificate");
    if (!st || strcmp(st, "valid") != 0 || !cert_url) {
        const sp_jv *e = sp_jv_get(ord, "error");
        snprintf(s->err, s->errlen, "order for %s ended \"%s\"%s%s", s->p->domain, st ? st : "?",
                 e ? ": " : "", e && sp_jv_str(e, "detail") ? sp_jv_str(e, "detail") : "");
        goto out;
    }
    sp_http_resp r;
    if (post(s, "certificate", cert_url, NULL, &r) != 0)
        goto out;
    if (!r.body || !strstr(r.body, "-----BEGIN CERTIFICATE-----")) {
        snprintf(s->err, s->errlen, "certificate: the answer is not a PEM chain");
        sp_http_resp_free(&r);
        goto out;
    }
    *cert_pem = r.body;
    r.body = NULL;
    sp_http_resp_free(&r);
    if (!(*key_out = key_pem(dkey))) {
        free(*cert_pem);
        *cert_pem = NULL;
        snprintf(s->err, s->errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    sp_jv_free(ord);
    free(order_url);
    free(csr64);
    EVP_PKEY_free(dkey);
    return rc;
}

int sp_acme_obtain(const sp_acme_params *p, char **cert_pem, char **key_out, char *err, size_t errlen)
{
    session s = {.p = p, .err = err, .errlen = errlen};
    *cert_pem = *key_out = NULL;
    int rc = -1;
    BIO *b = BIO_new_mem_buf(p->account_key_pem, -1);
    s.key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!s.key) {
        ERR_clear_error();
        snprintf(err, errlen, "cannot read the account key");
        return -1;
    }
    if ((s.ctx = sp_https_client_ctx(p->ca_file, err, errlen)) && directory(&s) == 0 && account(&s) == 0)
        rc = order(&s, cert_pem, key_out);
    SSL_CTX_free(s.ctx);
    EVP_PKEY_free(s.key);
    free(s.kid);
    free(s.nonce);
    free(s.new_nonce);
    free(s.new_account);
    free(s.new_order);
    return rc;
}
