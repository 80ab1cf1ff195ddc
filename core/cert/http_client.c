/* http_client: blocking HTTPS for the ACME thread (see http_client.h). */
#include "cert/http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "pattern/domain_pattern.h"
#include "tls/openssl_error.h"

#define MAX_RESPONSE (1 << 20)

/* OpenSSL's reason; none queued means the server closed the connection. */
static void ossl_reason(char *err, size_t errlen, const char *what)
{
    sp_openssl_error(err, errlen, what, "connection closed");
}

SSL_CTX *sp_https_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ossl_reason(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char what[600];
        snprintf(what, sizeof what, "cannot load %s", ca_file ? ca_file : "the system CAs");
        ossl_reason(err, errlen, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* https://host[:port]/path -> parts. */
static int split_url(const char *url, char *host, size_t hl, char *port, size_t pl, const char **path)
{
    if (strncmp(url, "https://", 8) != 0)
        return -1;
    const char *h = url + 8, *slash = strchr(h, '/');
    const char *end = slash ? slash : h + strlen(h);
    const char *colon = NULL;
    if (*h == '[') { /* [v6]:port */
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -1;
        if ((size_t)(rb - h - 1) >= hl)
            return -1;
        memcpy(host, h + 1, (size_t)(rb - h - 1));
        host[rb - h - 1] = 0;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *he = colon ? colon : end;
        if (he == h || (size_t)(he - h) >= hl)
            return -1;
        memcpy(host, h, (size_t)(he - h));
        host[he - h] = 0;
    }
    if (colon) {
        if ((size_t)(end - colon - 1) >= pl || end == colon + 1)
            return -1;
        memcpy(port, colon + 1, (size_t)(end - colon - 1));
        port[end - colon - 1] = 0;
    } else {
        snprintf(port, pl, "443");
    }
    *path = slash ? slash : "/";
    return 0;
}

static int dial(const char *host, const char *port, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = sp_name_is_invalid(host) ? EAI_NONAME : getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int so = ETIMEDOUT;
            socklen_t sl = sizeof so;
            if (poll(&p, 1, timeout_ms) == 1)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
            errno = so;
        }
        if (errno && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            fd = -1;
        }
        errno = 0;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(last ? last : ECONNREFUSED));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static char *header_value(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            s += nl + 1;
            while (*s == ' ' || *s == '\t')
                s++;
            const char *e = strstr(s, "\r\n");
            size_t n = e ? (size_t)(e - s) : strlen(s);
            while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
            return strndup(s, n);
        }
    }
    return NULL;
}

/* Decodes chunked framing in place; returns the body length or -1. */
static long dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long sz = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (end == b + in || !crlf)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (sz == 0)
            return (long)out;
        if (in + sz + 2 > n)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
    }
}

int sp_https_request(SSL_CTX *ctx, const char *method, const char *url, const char *content_type,
                     const char *body, int timeout_ms, sp_http_resp *out, char *err, size_t errlen)
{
    *out = (sp_http_resp){0};
    char host[256], port[8];
    const char *path;
    if (split_url(url, host, sizeof host, port, sizeof port, &path) != 0) {
        snprintf(err, errlen, "not an https URL: %.200s", url);
        return -1;
    }
    int fd = dial(host, port, timeout_ms, err, errlen);
    if (fd < 0)
        return -1;
    SSL *ssl = SSL_new(ctx);
    char *buf = NULL;
    int rc = -1;
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || (!literal && SSL_set_tlsext_host_name(ssl, host) != 1) ||
        (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 : SSL_set1_host(ssl, host) != 1)) {
        ossl_reason(err, errlen, "TLS setup");
        goto done;
    }
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            snprintf(err, errlen, "TLS handshake with %s:%s: certificate not trusted: %s", host, port,
                     X509_verify_cert_error_string(v));
        else {
            char what[300];
            snprintf(what, sizeof what, "TLS handshake with %s:%s", host, port);
            ossl_reason(err, errlen, what);
        }
        goto done;
    }
    size_t bl = body ? strlen(body) : 0;
    char hostport[300];
    bool v6 = strchr(host, ':') != NULL;
    if (strcmp(port, "443") == 0)
        snprintf(hostport, sizeof hostport, v6 ? "[%s]" : "%s", host);
    else
        snprintf(hostport, sizeof hostport, v6 ? "[%s]:%s" : "%s:%s", host, port);
    char head[2048];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: smartproxy/" SP_VERSION "\r\n"
                      "Accept: */*\r\nConnection: close\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                      method, path, hostport,
                      content_type ? "Content-Type: " : "", content_type ? content_type : "",
                      content_type ? "\r\n" : "", bl);
    if (hn < 0 || (size_t)hn >= sizeof head) {
        snprintf(err, errlen, "request head too long");
        goto done;
    }
    if (SSL_write(ssl, head, hn) != hn || (bl && SSL_write(ssl, body, (int)bl) != (int)bl)) {
        ossl_reason(err, errlen, "sending the request");
        goto done;
    }
    size_t cap = 16384, n = 0;
    buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        int r = SSL_read(ssl, buf + n, (int)(cap - n));
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
                break; /* close_notify, or a close without it: the response ends here */
            snprintf(err, errlen, "reading the response from %s:%s: %s", host, port,
                     e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out" : "TLS error");
            ERR_clear_error();
            goto done;
        }
        n += (size_t)r;
        if (n == cap) {
            if (cap >= MAX_RESPONSE) {
                snprintf(err, errlen, "response over %d bytes", MAX_RESPONSE);
                goto done;
            }
            cap *= 2;
            char *bigger = realloc(buf, cap + 1);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    buf[n] = 0;
    char *eoh = strstr(buf, "\r\n\r\n");
    int status = 0;
    if (!eoh || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(err, errlen, "not an HTTP response from %s:%s", host, port);
        goto done;
    }
    eoh[2] = 0; /* head: up to and including the last header line's CRLF */
    out->status = status;
    out->location = header_value(buf, "Location");
    out->nonce = header_value(buf, "Replay-Nonce");
    out->content_type = header_value(buf, "Content-Type");
    char *te = header_value(buf, "Transfer-Encoding");
    char *cl = header_value(buf, "Content-Length");
    char *b = eoh + 4;
    size_t blen = n - (size_t)(b - buf);
    if (te && strcasecmp(te, "chunked") == 0) {
        long d = dechunk(b, blen);
        if (d < 0) {
            snprintf(err, errlen, "bad chunked body from %s:%s", host, port);
            free(te);
            free(cl);
            sp_http_resp_free(out);
            goto done;
        }
        blen = (size_t)d;
    } else if (cl && strtoul(cl, NULL, 10) < blen) {
        blen = strtoul(cl, NULL, 10);
    }
    free(te);
    free(cl);
    out->body = malloc(blen + 1);
    if (!out->body) {
        sp_http_resp_free(out);
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    memcpy(out->body, b, blen);
    out->body[blen] = 0;
    out->body_len = blen;
    rc = 0;
done:
    free(buf);
    if (ssl)
        SSL_free(ssl);
    close(fd);
    return rc;
}

void sp_http_resp_free(sp_http_resp *r)
{
    free(r->location);
    free(r->nonce);
    free(r->content_type);
    free(r->body);
    *r = (sp_http_resp){0};
}
