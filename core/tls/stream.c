#include "tls/stream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Sorts an OpenSSL failure into the few classes /stats counts. */
static sp_tls_failure classify(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return SP_TLSFAIL_EOF;
    }
    unsigned long err = ERR_peek_last_error();
    ERR_clear_error();
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        return SP_TLSFAIL_VERIFY;
    if (ERR_GET_LIB(err) != ERR_LIB_SSL)
        return SP_TLSFAIL_OTHER;
    int reason = ERR_GET_REASON(err);
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
        return SP_TLSFAIL_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
        return SP_TLSFAIL_NO_SHARED_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
        return SP_TLSFAIL_NOT_TLS;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return SP_TLSFAIL_VERIFY;
    default:
        /* alerts the peer sent us: SSL_AD_REASON_OFFSET + alert code */
        if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
            return SP_TLSFAIL_PEER_ALERT;
        return SP_TLSFAIL_OTHER;
    }
}

static int init(sp_tls_stream *t, SSL_CTX *ctx)
{
    *t = (sp_tls_stream){0};
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        *t = (sp_tls_stream){0};
        ERR_clear_error();
        return -1;
    }
    /* an empty input BIO means "want more", not end of file */
    BIO_set_mem_eof_return(t->in, -1);
    BIO_set_mem_eof_return(t->out, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    return 0;
}

int sp_tls_init_server(sp_tls_stream *t, SSL_CTX *ctx)
{
    if (init(t, ctx) != 0)
        return -1;
    SSL_set_accept_state(t->ssl);
    return 0;
}

int sp_tls_init_client(sp_tls_stream *t, SSL_CTX *ctx, const char *sni, const char *verify_host)
{
    if (init(t, ctx) != 0)
        return -1;
    SSL_set_connect_state(t->ssl);
    if (sni && *sni)
        SSL_set_tlsext_host_name(t->ssl, sni);
    if (verify_host && *verify_host && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
        /* names are checked against the certificate; addresses against its IP SANs */
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, verify_host) != 1) {
            ERR_clear_error();
            SSL_set1_host(t->ssl, verify_host);
        }
    }
    return 0;
}

void sp_tls_free(sp_tls_stream *t)
{
    if (t->ssl)
        SSL_free(t->ssl); /* frees both BIOs */
    *t = (sp_tls_stream){0};
}

int sp_tls_feed(sp_tls_stream *t, const void *data, size_t len)
{
    return BIO_write(t->in, data, (int)len) == (int)len ? 0 : -1;
}

sp_tls_result sp_tls_handshake(sp_tls_stream *t)
{
    if (t->established)
        return SP_TLS_DONE;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->established = true;
        return SP_TLS_DONE;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return SP_TLS_WANT;
    t->failure = classify(t->ssl, rc);
    return SP_TLS_FAILED;
}

ssize_t sp_tls_read(sp_tls_stream *t, void *buf, size_t cap)
{
    int n = SSL_read(t->ssl, buf, (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->peer_closed = true;
        return 0;
    }
    t->failure = classify(t->ssl, n);
    return -1;
}

int sp_tls_write(sp_tls_stream *t, const void *data, size_t len)
{
    /* a memory BIO never fills, so a write is whole or a failure */
    if (SSL_write(t->ssl, data, (int)len) == (int)len)
        return 0;
    t->failure = classify(t->ssl, -1);
    return -1;
}

void sp_tls_shutdown(sp_tls_stream *t)
{
    if (t->established && SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
}

size_t sp_tls_output_pending(const sp_tls_stream *t)
{
    return BIO_ctrl_pending(t->out);
}

size_t sp_tls_take_output(sp_tls_stream *t, void *buf, size_t cap)
{
    int n = BIO_read(t->out, buf, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

int sp_tls_flush(sp_tls_stream *t, const sp_tls_io *io, void *ctx)
{
    while (sp_tls_output_pending(t) > 0) {
        size_t cap;
        void *buf = io->get_buf(ctx, &cap);
        if (!buf)
            return -2;
        if (io->send(ctx, buf, sp_tls_take_output(t, buf, cap)) != 0)
            return -1;
    }
    return 0;
}

static sp_tls_pump_status flush_status(int rc)
{
    return rc == -2 ? SP_TLS_PUMP_OUT_OF_MEMORY : SP_TLS_PUMP_OWNER_ENDED;
}

sp_tls_pump_status sp_tls_pump(sp_tls_stream *t, const sp_tls_io *io, void *ctx)
{
    if (!t->established) {
        sp_tls_result r = sp_tls_handshake(t);
        int rc = sp_tls_flush(t, io, ctx); /* the next flight, or the alert of a failure */
        if (r == SP_TLS_FAILED)
            return SP_TLS_PUMP_HANDSHAKE_FAILED;
        if (rc != 0)
            return flush_status(rc);
        return r == SP_TLS_WANT ? SP_TLS_PUMP_HANDSHAKING : SP_TLS_PUMP_ESTABLISHED;
    }
    for (;;) {
        if (io->has_room && !io->has_room(ctx))
            return SP_TLS_PUMP_FULL;
        size_t cap;
        void *buf = io->get_buf(ctx, &cap);
        if (!buf)
            return SP_TLS_PUMP_OUT_OF_MEMORY;
        ssize_t n = sp_tls_read(t, buf, cap);
        if (n <= 0) {
            io->put_buf(ctx, buf);
            int rc = sp_tls_flush(t, io, ctx); /* post-handshake messages, alerts */
            if (n < 0)
                return SP_TLS_PUMP_FAILED;
            if (rc != 0)
                return flush_status(rc);
            return t->peer_closed ? SP_TLS_PUMP_PEER_CLOSED : SP_TLS_PUMP_DRAINED;
        }
        if (io->receive(ctx, buf, (size_t)n) != 0)
            return SP_TLS_PUMP_OWNER_ENDED;
    }
}

const char *sp_tls_version(const sp_tls_stream *t)
{
    return SSL_get_version(t->ssl);
}

const unsigned char *sp_tls_alpn(const sp_tls_stream *t, unsigned *len)
{
    const unsigned char *p = NULL;
    SSL_get0_alpn_selected(t->ssl, &p, len);
    return *len ? p : NULL;
}

bool sp_tls_resumed(const sp_tls_stream *t)
{
    return SSL_session_reused(t->ssl) == 1;
}
