/* proxy: HTTP/1.1 request by request on a client connection (see proxy.h). */
#include "http/proxy.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/body_clock.h"
#include "http/challenges.h"
#include "http/head.h"
#include "proto/http_message.h"
#include "pattern/path_pattern.h"
#include "http/pool.h"
#include "http/rate_limit.h"
#include "net/conn_impl.h"
#include "net/route_limits.h"
#include "util/access_log.h"
#include "util/log.h"

typedef enum {
    P_HEAD = 0,     /* waiting for / reading a request head */
    P_CONNECT,      /* the request waits for its target connection */
    P_EXCHANGE,     /* the request goes out (head, then body) and the response comes back */
} http_phase;

typedef struct sp_http {
    sp_conn *c;
    http_phase phase;
    sp_http_msg req, resp;
    sp_buf in;                 /* client bytes not parsed yet, from in_off */
    size_t in_off;
    size_t sniff_seen;         /* sniffing: how much of c->sniffed is already in `in` */
    bool sniffing;             /* the first request decides between HTTP and a stream */
    const sp_route *route;     /* the current request's route */
    uint64_t requests;

    /* the current request */
    char host[256];            /* Host as sent (without nothing removed) */
    char domain[256];          /* lowercased, without port */
    char *path;                /* normalised, for matching */
    size_t path_cap;
    sp_buf upstream_head;      /* kept until the response begins, for one retry */
    bool req_sent;             /* head and whole body written upstream */
    bool resp_head_sent;
    bool close_after;          /* the client connection ends after this response */
    bool upgrade;              /* asked for an upgrade we pass on */
    bool head_method;
    bool keep_alive_10;
    bool dechunk;              /* an HTTP/1.0 client gets a chunked response de-chunked */
    bool reused;               /* the upstream connection served an exchange before */
    bool retried;
    uint64_t body_bytes;       /* request body bytes forwarded, as framed */
    sp_body_clock body_clock;  /* timeouts.request_body */
    uint64_t exchange_ms;      /* when the request went out (for upstream_response) */
    uint64_t head_ms;          /* when its head was complete (for the access log) */
    uint64_t head_us;          /* the same, finer, for the duration histogram */
    uint64_t resp_bytes;       /* response bytes sent to the client */
    sp_buf pend;               /* a response head waiting to go out in one write with the
                                  first body bytes (one syscall instead of two) */

    /* the upstream connection in c->target */
    char key[600];             /* its pool key; "" when there is none */
    bool poolable;
} sp_http;

static void parse_client(sp_http *h);
static const sp_app_ops http_app;
static void respond_local(sp_http *h, int status, sp_http_local why, const char *extra, const char *body, bool close);

/* ---- small helpers ---- */

static sp_worker *W(const sp_http *h) { return h->c->w; }

static void client_reading(sp_http *h, bool on)
{
    sp_conn *c = h->c;
    if (on)
        sp_pipe_start_reading(c, &c->client);
    else
        sp_pipe_stop_reading(&c->client);
}

static size_t in_len(const sp_http *h) { return h->in.len - h->in_off; }
static const char *in_data(const sp_http *h) { return h->in.data + h->in_off; }

static void in_consume(sp_http *h, size_t n)
{
    h->in_off += n;
    if (h->in_off == h->in.len) {
        h->in.len = 0;
        h->in_off = 0;
    } else if (h->in_off > 65536) {
        memmove(h->in.data, h->in.data + h->in_off, h->in.len - h->in_off);
        h->in.len -= h->in_off;
        h->in_off = 0;
    }
}

static void count_local(sp_http *h, int status, sp_http_local why)
{
    sp_counter_add(&W(h)->counters.http_local[why], 1);
    sp_counter_add(&W(h)->counters.http_responses[status / 100], 1);
}

/* A request ended: counted on its route (status, duration) and logged when access
 * logging is on. */
static void record_request(sp_http *h, int status, bool upstream)
{
    sp_conn *c = h->c;
    if (h->route) {
        sp_route *mr = (sp_route *)h->route; /* the cache is per worker: generations are */
        if (!mr->counter)
            mr->counter = sp_route_limits_get(W(h)->process->routes, mr->name);
        if (mr->counter)
            sp_route_counter_http(mr->counter, status,
                                  h->req.head_ready ? (uv_hrtime() / 1000 - h->head_us) : 0);
    }
    if (!c->gen->settings.log_access)
        return;
    const sp_http_head *q = &h->req.head;
    char client[SP_IP_STRLEN], target[300], time[32];
    sp_ip_format(&c->info.client_ip, client, sizeof client);
    if (upstream && c->dest.host)
        snprintf(target, sizeof target, strchr(c->dest.host, ':') ? "[%s]:%s" : "%s:%s", c->dest.host,
                 c->dest.port_text);
    bool parsed = h->req.head_ready;
    sp_access_request e = {
        .conn = c->id, .route = h->route ? h->route->name : NULL, .client_ip = client,
        .client_port = c->info.client_port,
        .method = parsed ? llhttp_method_name((llhttp_method_t)q->method) : "-",
        .host = parsed && h->host[0] ? h->host : NULL, .url = parsed ? sp_http_url(q) : "-",
        .status = status, .target = upstream && c->dest.host ? target : NULL, .bytes_out = h->resp_bytes,
        .duration_ms = parsed ? uv_now(&W(h)->loop) - h->head_ms : 0,
    };
    sp_buf line;
    sp_buf_init(&line);
    sp_log_time(time);
    sp_access_format_request(&line, &e, time, sp_log_json());
    sp_access_log_write(&line);
    sp_buf_free(&line);
}

/* Drops the upstream connection: not reusable (or unwanted). */
static void drop_target(sp_http *h)
{
    sp_conn *c = h->c;
    if (c->target.tcp) {
        sp_conn_close_handle(c, (uv_handle_t *)c->target.tcp);
        c->target.tcp = NULL;
    }
    sp_tls_free(&c->target.tls);
    c->target.reading = c->target.eof = c->target.shut = false;
    c->target_ready = false;
    h->key[0] = 0;
}

/* An idle upstream connection goes to the worker's pool, else it is closed. */
static void pool_target(sp_http *h)
{
    sp_conn *c = h->c;
    sp_side *t = &c->target;
    if (!t->tcp)
        return;
    bool idle = h->phase == P_HEAD && h->poolable && h->key[0] && !t->eof && !t->shut && t->queued == 0 &&
                uv_stream_get_write_queue_size((uv_stream_t *)t->tcp) == 0 &&
                (!t->tls.ssl || sp_tls_output_pending(&t->tls) == 0);
    if (idle && !W(h)->stopping) { /* a stopping worker keeps nothing for later */
        if (!W(h)->http_pool)
            W(h)->http_pool = sp_http_pool_new(&W(h)->loop);
        sp_pipe_stop_reading(t);
        const sp_settings *st = &c->gen->settings;
        if (sp_http_pool_put(W(h)->http_pool, h->key, t->tcp, &t->tls, st->upstream_keepalive,
                             st->timeouts.upstream_idle)) {
            t->tcp = NULL; /* the pool owns the handle now */
            c->handles--;
            c->target_ready = false;
            h->key[0] = 0;
            return;
        }
    }
    drop_target(h);
}

/* The connection starts its flushed close: an idle upstream connection outlives its client. */
static void http_closing(sp_conn *c) { pool_target(c->app_ctx); }

static void http_free(sp_http *h)
{
    sp_http_msg_free(&h->req);
    sp_http_msg_free(&h->resp);
    sp_buf_free(&h->in);
    sp_buf_free(&h->upstream_head);
    sp_buf_free(&h->pend);
    free(h->path);
    free(h);
}

static void http_release(sp_conn *c) { http_free(c->app_ctx); }

/* A stream route took the connection from its first request: the session goes. */
static void session_end(sp_conn *c)
{
    sp_http *h = c->app_ctx;
    c->app = NULL;
    c->app_ctx = NULL;
    http_free(h);
}

static sp_http *session(sp_conn *c)
{
    if (c->app == &http_app)
        return c->app_ctx;
    sp_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->c = c;
    sp_http_msg_init(&h->req, true, c->gen->settings.max_header_bytes);
    sp_http_msg_init(&h->resp, false, 65536);
    c->app = &http_app;
    c->app_ctx = h;
    return h;
}

/* ---- the next request ---- */

static void next_request(sp_http *h)
{
    sp_conn *c = h->c;
    sp_http_msg_next(&h->req);
    sp_http_msg_next(&h->resp);
    sp_buf_reset(&h->upstream_head);
    h->phase = P_HEAD;
    h->req_sent = h->resp_head_sent = h->close_after = h->upgrade = false;
    h->head_method = h->keep_alive_10 = h->reused = h->retried = h->dechunk = false;
    h->resp.on_body = NULL;
    h->route = NULL;
    h->body_bytes = h->resp_bytes = 0;
    sp_body_clock_stop(&h->body_clock);
    c->phase_started_ms = uv_now(&W(h)->loop);
    if (c->target.tcp) /* notice an idle upstream closing */
        sp_pipe_start_reading(c, &c->target);
    if (!h->sniffing)
        sp_pipe_start_reading(c, &c->client); /* the next request, or the client leaving */
    sp_conn_arm_timer(c);
}

/* ---- answers of our own ---- */

static void send_bytes(sp_http *h, sp_side *to, const char *data, size_t len)
{
    sp_pipe_send_bytes(h->c, to, data, len);
}

/* Why the connection ends after an answer of our own with this status. */
static sp_end_reason closing_reason(int status)
{
    switch (status) {
    case 400: case 413: case 431: return SP_END_HTTP_BAD_REQUEST;
    case 408: return SP_END_REQUEST_BODY_TIMEOUT;
    default: return SP_END_HTTP_DONE;
    }
}

static void respond_local(sp_http *h, int status, sp_http_local why, const char *extra, const char *body, bool close)
{
    sp_conn *c = h->c;
    /* a request whose body we did not read leaves the connection unusable */
    if (!h->req.done && h->req.head_ready)
        close = true;
    if (!h->req.head.keep_alive)
        close = true;
    sp_buf out;
    sp_buf_init(&out);
    if (h->keep_alive_10 && !close)
        extra = extra ? extra : "Connection: keep-alive\r\n";
    sp_head_write_local(&out, status, extra, body, close, h->head_method);
    count_local(h, status, why);
    h->resp_bytes = out.len;
    record_request(h, status, false);
    if (out.oom) {
        sp_buf_free(&out);
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    send_bytes(h, &c->client, out.data, out.len);
    sp_buf_free(&out);
    if (c->state == SP_STATE_CLOSING)
        return;
    if (close) {
        sp_conn_close(c, closing_reason(status));
        return;
    }
    next_request(h);
}

/* ---- routing one request ---- */

/* Host (or the authority of an absolute-form target) into h->host / h->domain. */
static bool read_host(sp_http *h, const char **path, size_t *path_len)
{
    const sp_http_head *q = &h->req.head;
    const char *url = sp_http_url(q);
    size_t ulen = q->url_len;
    const char *host = NULL;
    size_t hlen = 0;
    *path = url;
    *path_len = ulen;
    if (url[0] != '/' && url[0] != '*') { /* absolute-form: the authority wins (RFC 9112 3.2.2) */
        const char *s = strstr(url, "://");
        if (s && q->method != HTTP_CONNECT) {
            host = s + 3;
            const char *e = host;
            while (*e && *e != '/' && *e != '?')
                e++;
            hlen = (size_t)(e - host);
            *path = *e ? e : "/";
            *path_len = *e ? ulen - (size_t)(e - url) : 1;
        }
    }
    if (!host) {
        const sp_http_field *f = sp_http_find(q, "host", NULL);
        if (f) {
            host = sp_http_value(q, f);
            hlen = f->value_len;
        } else if (!(q->major == 1 && q->minor == 0)) {
            return false; /* HTTP/1.1 requires Host */
        }
    }
    if (hlen >= sizeof h->host)
        return false;
    memcpy(h->host, host ? host : "", hlen);
    h->host[hlen] = 0;
    /* the domain: without port, lowercased; "[v6]" stays bracketed */
    size_t dlen = hlen;
    if (hlen && h->host[0] == '[') {
        const char *rb = memchr(h->host, ']', hlen);
        dlen = rb ? (size_t)(rb - h->host) + 1 : hlen;
    } else {
        const char *colon = memchr(h->host, ':', hlen);
        if (colon)
            dlen = (size_t)(colon - h->host);
    }
    while (dlen && h->host[dlen - 1] == '.')
        dlen--;
    for (size_t i = 0; i < dlen; i++) {
        unsigned char ch = (unsigned char)h->host[i];
        if (ch <= ' ' || ch == '/' || ch == '\\' || ch == '@' || ch >= 0x7f)
            return false;
        h->domain[i] = (char)tolower(ch);
    }
    h->domain[dlen] = 0;
    return true;
}

static void template_values(sp_http *h, sp_template_values *v, char *ip, char *cport, char *port, char *id)
{
    sp_conn *c = h->c;
    const sp_http_head *q = &h->req.head;
    memset(v, 0, sizeof *v);
    sp_ip_format(&c->info.client_ip, ip, SP_IP_STRLEN);
    snprintf(cport, 8, "%u", c->info.client_port);
    snprintf(port, 8, "%u", c->info.server_port);
    snprintf(id, 24, "%llu", (unsigned long long)c->id);
    const char *url = sp_http_url(q);
    const char *qm = memchr(url, '?', q->url_len);
    size_t plen = qm ? (size_t)(qm - url) : q->url_len;
#define SETV(k, s, n) (v->v[k] = (s), v->len[k] = (n))
    SETV(SP_TV_CLIENT_IP, ip, strlen(ip));
    SETV(SP_TV_CLIENT_PORT, cport, strlen(cport));
    SETV(SP_TV_DOMAIN, h->domain, strlen(h->domain));
    SETV(SP_TV_HOST, h->host, strlen(h->host));
    SETV(SP_TV_PORT, port, strlen(port));
    SETV(SP_TV_PATH, url, plen);
    SETV(SP_TV_QUERY, qm ? qm + 1 : "", qm ? q->url_len - plen - 1 : 0);
    SETV(SP_TV_URL, url, q->url_len);
    SETV(SP_TV_PROTO, c->info.tls ? "https" : "http", c->info.tls ? 5 : 4);
    SETV(SP_TV_ROUTE_NAME, h->route ? h->route->name : "", h->route ? strlen(h->route->name) : 0);
    SETV(SP_TV_CONNECTION_ID, id, strlen(id));
#undef SETV
}

/* security.basic_auth: "Authorization: Basic base64(user:password)", compared in constant
 * time against every configured pair. */
static bool auth_ok(const sp_route *r, const sp_http_head *q)
{
    const sp_http_field *f = sp_http_find(q, "authorization", NULL);
    if (!f || f->value_len < 7 || strncasecmp(sp_http_value(q, f), "basic ", 6) != 0)
        return false;
    const char *b64 = sp_http_value(q, f) + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    if (n == 0 || n > 1024 || n % 4)
        return false;
    unsigned char dec[800];
    int len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return false;
    while (n && b64[n - 1] == '=') { /* EVP_DecodeBlock counts padding as data */
        n--;
        len--;
    }
    bool ok = false;
    for (size_t i = 0; i < r->http.nauth; i++) {
        const char *cred = r->http.auth_credentials[i];
        size_t cl = strlen(cred);
        /* the length is not secret-dependent in a useful way; the bytes are compared in
         * constant time */
        if (cl == (size_t)len && CRYPTO_memcmp(cred, dec, cl) == 0)
            ok = true;
    }
    OPENSSL_cleanse(dec, sizeof dec);
    return ok;
}

/* security.rate_limit: 0 when admitted, else the seconds to tell in Retry-After. */
static uint64_t rate_limited(sp_http *h, const sp_route *r)
{
    sp_conn *c = h->c;
    char key[600];
    size_t n;
    if (r->http.rate_key == SP_RATE_KEY_ROUTE) {
        n = (size_t)snprintf(key, sizeof key, "%s", r->name);
    } else if (r->http.rate_key == SP_RATE_KEY_HEADER) {
        const sp_http_field *f = sp_http_find(&h->req.head, r->http.rate_header, NULL);
        n = (size_t)snprintf(key, sizeof key, "%s\nh\n%.400s", r->name, f ? sp_http_value(&h->req.head, f) : "");
    } else {
        char ip[SP_IP_STRLEN];
        sp_ip_format(&c->info.client_ip, ip, sizeof ip);
        n = (size_t)snprintf(key, sizeof key, "%s\nip\n%s", r->name, ip);
    }
    if (n >= sizeof key)
        n = sizeof key - 1;
    uint64_t retry = 0;
    if (!W(h)->process->rates ||
        sp_rate_admit(W(h)->process->rates, key, n, r->http.rate_requests, r->http.rate_window_ms,
                      uv_now(&W(h)->loop), &retry) == 0)
        return 0;
    return retry / 1000 + 1;
}

static bool idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_PUT || method == HTTP_DELETE ||
           method == HTTP_OPTIONS || method == HTTP_TRACE;
}

static void build_upstream_head(sp_http *h)
{
    sp_conn *c = h->c;
    const sp_route *r = h->route;
    const sp_http_head *q = &h->req.head;
    char ip[SP_IP_STRLEN], cport[8], port[8], id[24];
    sp_template_values vals;
    if (r->http.nrequest_headers || r->http.has_rewrite)
        template_values(h, &vals, ip, cport, port, id);
    else
        sp_ip_format(&c->info.client_ip, ip, sizeof ip); /* X-Forwarded-For needs only this */
    const char *url = sp_http_url(q);
    size_t ulen = q->url_len;
    sp_buf rewritten;
    sp_buf_init(&rewritten);
    if (url[0] != '/' && url[0] != '*' && q->method != HTTP_CONNECT) { /* absolute-form -> origin-form */
        const char *s = strstr(url, "://");
        const char *p = s ? strpbrk(s + 3, "/?") : NULL;
        url = p ? p : "/";
        ulen = p ? strlen(p) : 1;
    }
    if (r->http.has_rewrite) {
        sp_template_expand(&r->http.rewrite_path, &vals, &rewritten);
        unsigned uses = r->http.rewrite_path.uses;
        const char *qm = memchr(url, '?', ulen);
        if (qm && !(uses & (1u << SP_TV_QUERY)) && !(uses & (1u << SP_TV_URL)))
            sp_buf_append(&rewritten, qm, ulen - (size_t)(qm - url));
        if (!rewritten.oom && rewritten.len) {
            url = rewritten.data;
            ulen = rewritten.len;
        }
    }
    char dflt[300] = "";
    if (!h->host[0]) /* an HTTP/1.0 request without Host: the target's name stands in */
        snprintf(dflt, sizeof dflt, strchr(c->dest.host ? c->dest.host : "", ':') ? "[%s]:%u" : "%s:%u",
                 c->dest.host ? c->dest.host : "localhost", c->dest.port);
    sp_request_out out = {
        .in = q, .target = url, .target_len = ulen, .client_ip = ip,
        .proto = c->info.tls ? "https" : "http", .host = h->host[0] ? h->host : NULL,
        .default_host = dflt, .port = c->info.server_port, .upgrade = h->upgrade,
        .sets = r->http.request_headers, .nsets = r->http.nrequest_headers, .vals = &vals,
    };
    sp_buf_reset(&h->upstream_head);
    sp_head_write_request(&h->upstream_head, &out);
    sp_buf_free(&rewritten);
}

/* The pool key of c->dest for route r; false when the connection must not be pooled
 * (a PROXY header names one client). */
static bool make_key(sp_http *h, const sp_route *r, char *key, size_t len)
{
    sp_conn *c = h->c;
    const sp_route_tls *t = &r->tls;
    if (r->send_proxy_protocol) {
        snprintf(key, len, "pp|%llu|%s|%u", (unsigned long long)c->id, c->dest.host, c->dest.port);
        return false;
    }
    if (t->mode == SP_TLS_REENCRYPT)
        snprintf(key, len, "%s|%u|tls|%p|%s", c->dest.host, c->dest.port, (void *)t->client_ctx,
                 t->upstream_sni ? t->upstream_sni : c->domain); /* the SNI the upstream gets */
    else
        snprintf(key, len, "%s|%u", c->dest.host, c->dest.port);
    return true;
}

static void start_exchange(sp_http *h);

/* ---- the request body's clock (timeouts.request_body, see http/body_clock.h) ---- */

/* The proxy waits for body bytes from now on (once per request). */
static void body_clock_start(sp_http *h)
{
    if (h->body_clock.running || h->req_sent)
        return;
    sp_body_clock_start(&h->body_clock, uv_now(&W(h)->loop));
    sp_conn_arm_timer(h->c);
}

/* The target holds the body back (its queue above the high-water mark), or takes it
 * again: held time is not the client's. */
static void body_held(sp_http *h, bool held)
{
    bool was = h->body_clock.held;
    sp_body_clock_hold(&h->body_clock, held, uv_now(&W(h)->loop));
    if (was && !held)
        sp_conn_arm_timer(h->c); /* the body's deadline is back, maybe before the armed one */
}

static uint64_t body_due(const sp_http *h)
{
    const sp_settings *st = &h->c->gen->settings;
    return sp_body_clock_due(&h->body_clock, h->body_bytes, st->timeouts.request_body, st->request_body_min_rate);
}

/* The body came too slowly: 408 when the client has no response yet, else a cut; the
 * upstream connection, with half a body sent, is closed. */
static void body_timed_out(sp_http *h)
{
    sp_conn *c = h->c;
    sp_info("conn=%llu route=%s: request body not complete within timeouts.request_body "
            "(%llu bytes in %llu ms), closing", (unsigned long long)c->id, h->route->name,
            (unsigned long long)h->body_bytes,
            (unsigned long long)sp_body_clock_elapsed(&h->body_clock, uv_now(&W(h)->loop)));
    drop_target(h);
    if (h->resp_head_sent) {
        sp_conn_abort(c, SP_END_REQUEST_BODY_TIMEOUT);
        return;
    }
    h->phase = P_HEAD;
    respond_local(h, 408, SP_HTTP_LOCAL_REQUEST_BODY_TIMEOUT, NULL, NULL, true);
}

/* Finds the upstream connection for the request: the one this client used last when it
 * goes to the same place, an idle one from the pool, or a new one. */
static void acquire_target(sp_http *h)
{
    sp_conn *c = h->c;
    const sp_route *r = h->route;
    c->route = r;
    c->candidates_tried = 0;
    c->dest.last_error = SP_END_CONNECT_ERROR;
    if (sp_connect_choose(c) != 0) {
        respond_local(h, 502, SP_HTTP_LOCAL_BAD_GATEWAY, NULL, NULL, false);
        return;
    }
    build_upstream_head(h);
    char key[sizeof h->key];
    bool poolable = make_key(h, r, key, sizeof key);
    if (c->target.tcp && strcmp(key, h->key) == 0 && !c->target.eof) {
        h->reused = true;
        sp_counter_add(&W(h)->counters.http_upstream_reused, 1);
        start_exchange(h);
        return;
    }
    pool_target(h); /* the previous target, if any */
    h->poolable = poolable;
    sp_tls_stream tls = {0};
    uv_tcp_t *tcp = poolable ? sp_http_pool_take(W(h)->http_pool, key, &tls) : NULL;
    snprintf(h->key, sizeof h->key, "%s", key);
    if (tcp) {
        tcp->data = c;
        c->target.tcp = tcp;
        c->target.tls = tls;
        c->target.eof = c->target.shut = c->target.reading = false;
        c->handles++;
        c->target_ready = true;
        h->reused = true;
        sp_counter_add(&W(h)->counters.http_upstream_reused, 1);
        start_exchange(h);
        return;
    }
    h->reused = false;
    h->phase = P_CONNECT;
    sp_counter_add(&W(h)->counters.http_upstream_new, 1);
    sp_conn_set_state(c, SP_STATE_CONNECTING);
    sp_conn_arm_timer(c);
    sp_connect_dest(c);
}

static void http_target_ready(sp_conn *c)
{
    sp_http *h = c->app_ctx;
    sp_conn_set_state(c, SP_STATE_HTTP);
    if (h->phase == P_CONNECT)
        start_exchange(h);
}

static void http_target_failed(sp_conn *c, sp_end_reason why)
{
    sp_http *h = c->app_ctx;
    sp_conn_set_state(c, SP_STATE_HTTP);
    drop_target(h);
    h->phase = P_HEAD; /* the request was not sent: answer it here */
    bool timeout = why == SP_END_CONNECT_TIMEOUT;
    sp_info("conn=%llu route=%s: %s %s:%s (%s)", (unsigned long long)c->id, h->route ? h->route->name : "-",
            timeout ? "504, target timed out" : "502, target unreachable", c->dest.host ? c->dest.host : "-",
            c->dest.port_text, sp_end_reason_name(why));
    respond_local(h, timeout ? 504 : 502, timeout ? SP_HTTP_LOCAL_GATEWAY_TIMEOUT : SP_HTTP_LOCAL_BAD_GATEWAY,
                  NULL, NULL, false);
    if (c->state == SP_STATE_HTTP && h->phase == P_HEAD)
        parse_client(h);
}

/* Writes the head, then whatever body bytes are already here. */
static void start_exchange(sp_http *h)
{
    sp_conn *c = h->c;
    h->phase = P_EXCHANGE;
    h->exchange_ms = uv_now(&W(h)->loop);
    c->phase_started_ms = h->exchange_ms;
    h->resp.skip_body = h->head_method;
    send_bytes(h, &c->target, h->upstream_head.data, h->upstream_head.len);
    if (c->state == SP_STATE_CLOSING)
        return;
    h->req_sent = h->req.done;
    sp_pipe_start_reading(c, &c->target);
    if (!h->req.head.expect_continue) /* else once told to continue, or when it starts */
        body_clock_start(h);
    sp_conn_arm_timer(c);
    if (!h->req_sent)
        parse_client(h); /* body bytes that came with the head */
    else
        client_reading(h, in_len(h) < SP_HIGH_WATER); /* to notice a client that leaves */
}

/* A complete request head: route it, check it, answer it or send it on. */
static void dispatch(sp_http *h)
{
    sp_conn *c = h->c;
    const sp_http_head *q = &h->req.head;
    const sp_settings *st = &c->gen->settings;
    sp_counter_add(&W(h)->counters.http_requests, 1);
    h->requests++;
    h->head_ms = uv_now(&W(h)->loop);
    h->head_us = uv_hrtime() / 1000;
    bool first = h->sniffing; /* this request chooses between HTTP and a stream */
    if (first) {
        h->sniffing = false;
        sp_conn_set_state(c, SP_STATE_HTTP);
    }
    h->head_method = q->method == HTTP_HEAD;
    h->keep_alive_10 = q->keep_alive && q->major == 1 && q->minor == 0;
    if (q->method == HTTP_CONNECT) { /* a reverse proxy opens no tunnels on request */
        respond_local(h, 405, SP_HTTP_LOCAL_BAD_REQUEST, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n",
                      NULL, true);
        return;
    }
    const char *path;
    size_t path_len;
    if (!read_host(h, &path, &path_len)) {
        respond_local(h, 400, SP_HTTP_LOCAL_BAD_REQUEST, NULL, NULL, true);
        return;
    }
    const char *qm = memchr(path, '?', path_len);
    if (qm)
        path_len = (size_t)(qm - path);
    if (path_len + 1 > h->path_cap) {
        free(h->path);
        h->path_cap = path_len + 64;
        h->path = malloc(h->path_cap);
        if (!h->path) {
            h->path_cap = 0;
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return;
        }
    }
    long plen = path[0] == '*' ? 1 : sp_path_normalize(path, path_len, h->path);
    if (path[0] == '*')
        h->path[0] = '*';
    if (plen < 0) {
        respond_local(h, 400, SP_HTTP_LOCAL_BAD_REQUEST, NULL, NULL, true);
        return;
    }
    h->path[plen] = 0;

    /* ACME HTTP-01 (plain HTTP only): answered here for a token being validated */
    const size_t pre = sizeof SP_ACME_CHALLENGE_PREFIX - 1;
    if (!c->info.tls && (size_t)plen > pre && memcmp(h->path, SP_ACME_CHALLENGE_PREFIX, pre) == 0 &&
        (q->method == HTTP_GET || q->method == HTTP_HEAD)) {
        char answer[512];
        if (sp_challenges_get(W(h)->process->challenges, h->path + pre, (size_t)plen - pre, answer, sizeof answer)) {
            respond_local(h, 200, SP_HTTP_LOCAL_ACME, NULL, answer, false);
            return;
        }
    }

    /* route it: Host is the domain of an HTTP request */
    sp_conn_info info = c->info;
    info.domain = h->domain;
    info.domain_len = strlen(h->domain);
    info.http = q;
    info.path = h->path;
    info.path_len = (size_t)plen;
    info.per_request = !first;
    const sp_route *r = sp_route_select(c->gen, c->info.server_port, &info);
    if (first && r && !r->is_http) {
        /* a stream route won: forward the connection's bytes as they are */
        snprintf(c->domain, sizeof c->domain, "%s", h->domain);
        c->info.domain = c->domain;
        c->info.domain_len = strlen(c->domain);
        session_end(c);
        sp_conn_route_stream(c, r);
        return;
    }
    if (first)
        sp_buf_free(&c->sniffed);
    h->route = r;
    if (r)
        c->route = r; /* for logs, connect and the timers: the current request's route */
    if (!r) {
        char client[SP_IP_STRLEN];
        sp_ip_format(&c->info.client_ip, client, sizeof client);
        const sp_port_entry *pe = sp_gen_port(c->gen, c->info.server_port);
        if (first && !(pe && pe->http)) { /* a stream port: no HTTP answer, as for any stream */
            sp_info("conn=%llu port=%u client=%s host=%s: no route matched, closing", (unsigned long long)c->id,
                    c->info.server_port, client, h->domain);
            sp_conn_abort(c, SP_END_NO_ROUTE);
            return;
        }
        sp_info("conn=%llu port=%u client=%s host=%s path=%s: no route matched, 404", (unsigned long long)c->id,
                c->info.server_port, client, h->domain, h->path);
        respond_local(h, 404, SP_HTTP_LOCAL_NO_ROUTE, NULL, NULL, false);
        return;
    }
    c->info.route_name = r->name;
    c->info.domain = c->domain; /* keep SNI for logs; Lua sees the request's Host via ctx */
    if (first && !sp_conn_admit_route(c, r, false)) {
        respond_local(h, 503, SP_HTTP_LOCAL_UNAVAILABLE, NULL, NULL, true); /* the route's limits */
        return;
    }
    if (sp_ip_policy(&r->ip_allow_list, &r->ip_block_list, &c->info.client_ip) != SP_IP_ADMITTED) {
        respond_local(h, 403, SP_HTTP_LOCAL_BLOCKED, NULL, NULL, false);
        return;
    }
    if (r->http.auth_realm && !auth_ok(r, q)) {
        char extra[300];
        snprintf(extra, sizeof extra, "WWW-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n", r->http.auth_realm);
        respond_local(h, 401, SP_HTTP_LOCAL_UNAUTHORIZED, extra, NULL, false);
        return;
    }
    if (r->http.rate_requests) {
        uint64_t retry = rate_limited(h, r);
        if (retry) {
            char extra[64];
            snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)retry);
            respond_local(h, 429, SP_HTTP_LOCAL_RATE_LIMITED, extra, NULL, false);
            return;
        }
    }
    if (r->action == SP_ACTION_BLOCK) {
        respond_local(h, 403, SP_HTTP_LOCAL_BLOCKED, NULL, NULL, false);
        return;
    }
    if (r->action == SP_ACTION_REDIRECT) {
        char ip[SP_IP_STRLEN], cport[8], port[8], id[24];
        sp_template_values vals;
        template_values(h, &vals, ip, cport, port, id);
        sp_buf loc;
        sp_buf_init(&loc);
        sp_buf_append(&loc, "Location: ", 10);
        sp_template_expand(&r->http.redirect_to, &vals, &loc);
        for (size_t i = 10; i < loc.len && loc.data; i++)
            if (loc.data[i] == '\r' || loc.data[i] == '\n')
                loc.data[i] = ' ';
        sp_buf_append(&loc, "\r\n", 2);
        respond_local(h, r->http.redirect_status, SP_HTTP_LOCAL_REDIRECT, loc.oom ? NULL : loc.data, "", false);
        sp_buf_free(&loc);
        return;
    }
    if (st->max_body_bytes && q->content_length > (int64_t)st->max_body_bytes) {
        respond_local(h, 413, SP_HTTP_LOCAL_TOO_LARGE, NULL, NULL, true);
        return;
    }
    h->upgrade = q->upgrade && r->http.websocket && sp_http_find(q, "upgrade", NULL) != NULL;
    if (!q->keep_alive)
        h->close_after = true;
    /* the target is chosen per request; the head is written once it is known */
    c->info.domain = h->domain;
    c->info.domain_len = strlen(h->domain);
    c->info.http = q;
    c->info.path = h->path;
    c->info.path_len = (size_t)plen;
    c->info.path_pattern = r->http.has_path ? &r->http.path : NULL;
    acquire_target(h);
    if (c->app_ctx != h)
        return;
    /* the request's view ends with the target's choice: the connection's domain is its
     * SNI again (logs, the upstream SNI of a re-encrypting route) */
    c->info.http = NULL;
    c->info.path_pattern = NULL;
    c->info.domain = c->domain;
    c->info.domain_len = strlen(c->domain);
    if (h->phase == P_CONNECT)
        client_reading(h, false); /* the body waits for the target */
}

/* ---- bytes from the client ---- */

/* Forwards raw request body bytes (as framed) to the target. */
static void forward_body(sp_http *h, const char *data, size_t n)
{
    sp_conn *c = h->c;
    const sp_settings *st = &c->gen->settings;
    body_clock_start(h);
    h->body_bytes += n;
    if (st->max_body_bytes && h->body_bytes > st->max_body_bytes + 64) {
        sp_info("conn=%llu route=%s: request body over limits.max_body_bytes, closing", (unsigned long long)c->id,
                h->route->name);
        if (!h->resp_head_sent) {
            drop_target(h);
            h->phase = P_HEAD;
            respond_local(h, 413, SP_HTTP_LOCAL_TOO_LARGE, NULL, NULL, true);
        } else {
            sp_conn_abort(c, SP_END_HTTP_BAD_REQUEST);
        }
        return;
    }
    send_bytes(h, &c->target, data, n);
}

/* The first bytes on a port are not an HTTP request: a stream route that needs no
 * domain takes the connection as it would without HTTP routes; else they get a 400. */
static bool stream_fallback(sp_http *h)
{
    sp_conn *c = h->c;
    sp_conn_info info = c->info;
    info.domain = "";
    info.domain_len = 0;
    const sp_route *r = sp_route_select(c->gen, c->info.server_port, &info);
    if (!r || r->is_http)
        return false;
    session_end(c);
    sp_conn_route_stream(c, r);
    return true;
}

static void parse_client(sp_http *h)
{
    sp_conn *c = h->c;
    while (c->state == SP_STATE_HTTP || (h->sniffing && c->state == SP_STATE_SNIFFING)) {
        if (h->phase == P_HEAD) {
            if (h->req.done)
                return; /* a request is being answered */
            size_t used = 0;
            sp_msg_event ev = sp_http_msg_feed(&h->req, in_data(h), in_len(h), &used);
            in_consume(h, used);
            if (ev == SP_MSG_ERROR) {
                if (h->sniffing && stream_fallback(h))
                    return; /* not HTTP: a stream route without domains took it */
                sp_info("conn=%llu: bad request: %s", (unsigned long long)c->id, h->req.error ? h->req.error : "?");
                h->req.head.keep_alive = false;
                if (h->sniffing) {
                    h->sniffing = false;
                    sp_conn_set_state(c, SP_STATE_HTTP);
                }
                respond_local(h, h->req.error_status, h->req.error_status == 431 ? SP_HTTP_LOCAL_HEAD_TOO_LARGE
                                                                                 : SP_HTTP_LOCAL_BAD_REQUEST,
                              NULL, NULL, true);
                return;
            }
            if (ev == SP_MSG_MORE) {
                if (!h->sniffing)
                    client_reading(h, true);
                return;
            }
            /* a head (and, for bodiless requests, the whole request) */
            dispatch(h);
            if (c->app_ctx != h)
                return; /* a stream route took the connection: the session is gone */
            continue;
        }
        if (h->phase == P_EXCHANGE && !h->req_sent) {
            if (in_len(h) == 0) {
                bool held = c->target.queued > SP_HIGH_WATER;
                body_held(h, held);
                client_reading(h, !held);
                return;
            }
            size_t used = 0;
            sp_msg_event ev = sp_http_msg_feed(&h->req, in_data(h), in_len(h), &used);
            if (ev == SP_MSG_ERROR) {
                sp_info("conn=%llu: bad request body: %s", (unsigned long long)c->id, h->req.error);
                if (!h->resp_head_sent) {
                    drop_target(h);
                    h->phase = P_HEAD;
                    respond_local(h, 400, SP_HTTP_LOCAL_BAD_REQUEST, NULL, NULL, true);
                } else {
                    sp_conn_abort(c, SP_END_HTTP_BAD_REQUEST);
                }
                return;
            }
            const char *d = in_data(h);
            in_consume(h, used);
            forward_body(h, d, used);
            if (c->state != SP_STATE_HTTP)
                return;
            if (ev == SP_MSG_DONE) {
                /* pipelined requests wait in `in` for this response; reading goes on (up
                 * to the high-water mark) so that a client that resets is noticed */
                h->req_sent = true;
                sp_conn_arm_timer(c);
            }
            continue;
        }
        return; /* waiting for the target or the response */
    }
}

/* ---- bytes from the target ---- */

static void exchange_done(sp_http *h, bool target_reusable)
{
    sp_conn *c = h->c;
    if (W(h)->stopping)
        h->close_after = true; /* draining: no further request on this connection */
    sp_counter_add(&W(h)->counters.http_responses[h->resp.head.status / 100 % 6], 1);
    record_request(h, h->resp.head.status, true);
    if (!target_reusable)
        drop_target(h);
    if (h->close_after) {
        h->phase = P_HEAD;
        sp_conn_close(c, SP_END_HTTP_DONE);
        return;
    }
    next_request(h);
    parse_client(h);
}

/* 101: from now on bytes pass both ways untouched. */
static void become_tunnel(sp_http *h, const char *rest, size_t rest_len)
{
    sp_conn *c = h->c;
    sp_conn_set_state(c, SP_STATE_PIPING);
    c->last_activity_ms = uv_now(&W(h)->loop);
    if (rest_len)
        send_bytes(h, &c->client, rest, rest_len);
    if (in_len(h) && c->state == SP_STATE_PIPING)
        send_bytes(h, &c->target, in_data(h), in_len(h));
    in_consume(h, in_len(h));
    if (c->state != SP_STATE_PIPING)
        return;
    sp_pipe_resume(c, &c->client);
    sp_pipe_resume(c, &c->target);
    sp_conn_arm_timer(c);
}

static void bad_response(sp_http *h, const char *why)
{
    sp_conn *c = h->c;
    sp_warn("conn=%llu route=%s: bad response from %s:%s: %s", (unsigned long long)c->id, h->route->name,
            c->dest.host ? c->dest.host : "-", c->dest.port_text, why);
    drop_target(h);
    if (h->resp_head_sent) {
        sp_conn_abort(c, SP_END_BAD_RESPONSE);
        return;
    }
    h->phase = P_HEAD;
    respond_local(h, 502, SP_HTTP_LOCAL_BAD_GATEWAY, NULL, NULL, !h->req_sent);
    if (c->state == SP_STATE_HTTP && h->phase == P_HEAD)
        parse_client(h); /* a pipelined request may wait */
}

static void flush_head(sp_http *h)
{
    if (h->pend.len && h->c->state == SP_STATE_HTTP)
        send_bytes(h, &h->c->client, h->pend.data, h->pend.len);
    sp_buf_reset(&h->pend);
}

/* Response body bytes for the client, after the pending head when there is one: in the
 * same pool buffer when both fit, else as they are (the read buffer itself when it is all
 * body: *taken). */
static void send_body(sp_http *h, void *buf, const char *data, size_t n, size_t len, bool *taken)
{
    sp_conn *c = h->c;
    if (h->pend.len && h->pend.len + n <= SP_READ_BUF_SIZE) {
        char *out = sp_bufpool_get(&W(h)->pool);
        if (!out) {
            sp_conn_abort(c, SP_END_INTERNAL_ERROR);
            return;
        }
        memcpy(out, h->pend.data, h->pend.len);
        if (n)
            memcpy(out + h->pend.len, data, n);
        size_t total = h->pend.len + n;
        sp_buf_reset(&h->pend);
        sp_pipe_send(c, &c->client, out, total);
        return;
    }
    flush_head(h);
    if (n == len && data == buf) {
        *taken = true;
        sp_pipe_send(c, &c->client, buf, n);
    } else if (n) {
        send_bytes(h, &c->client, data, n);
    }
}

static void dechunked_body(void *arg, const char *at, size_t n)
{
    sp_http *h = arg;
    flush_head(h);
    if (h->c->state == SP_STATE_HTTP)
        send_bytes(h, &h->c->client, at, n);
}

/* Response bytes from the target. `buf` is the pool buffer they are in: when all of it
 * is body it goes to the client as it is (*taken), else the parts are copied. */
static void target_bytes(sp_http *h, void *buf, size_t len, bool *taken)
{
    const char *data = buf;
    sp_conn *c = h->c;
    if (h->phase != P_EXCHANGE) {
        /* an idle upstream talking out of turn: not reusable */
        drop_target(h);
        return;
    }
    while (len > 0 && c->state == SP_STATE_HTTP) {
        bool had_head = h->resp.head_ready;
        size_t used = 0;
        sp_msg_event ev = sp_http_msg_feed(&h->resp, data, len, &used);
        if (ev == SP_MSG_ERROR) {
            bad_response(h, h->resp.error ? h->resp.error : "malformed");
            return;
        }
        if (!had_head && h->resp.head_ready) {
            const sp_http_head *rh = &h->resp.head;
            sp_buf_reset(&h->upstream_head); /* no retry once the server answered */
            char ip[SP_IP_STRLEN], cport[8], port[8], id[24];
            sp_template_values vals;
            if (h->route->http.nresponse_headers) /* only templates need the values */
                template_values(h, &vals, ip, cport, port, id);
            bool switching = rh->status == 101 && h->upgrade;
            if (rh->until_close)
                h->close_after = true;
            if (rh->chunked && h->req.head.major == 1 && h->req.head.minor == 0 && rh->status >= 200) {
                /* HTTP/1.0 has no chunked coding: the body goes out plain, ended by a close */
                h->dechunk = h->close_after = true;
                h->resp.on_body = dechunked_body;
                h->resp.on_body_arg = h;
            }
            sp_response_out out = {
                .in = rh, .close = h->close_after, .keep_alive_10 = h->keep_alive_10, .upgrade = switching,
                .dechunk = h->dechunk,
                .sets = h->route->http.response_headers, .nsets = h->route->http.nresponse_headers, .vals = &vals,
            };
            sp_buf head;
            sp_buf_init(&head);
            sp_head_write_response(&head, &out);
            h->resp_bytes += head.len;
            if (rh->status >= 200 && !switching)
                sp_buf_append(&h->pend, head.data, head.len); /* goes out with the body */
            else
                send_bytes(h, &c->client, head.data, head.len);
            sp_buf_free(&head);
            if (c->state != SP_STATE_HTTP)
                return;
            data += used;
            len -= used;
            if (switching) {
                sp_counter_add(&W(h)->counters.http_responses[1], 1);
                record_request(h, 101, true);
                h->key[0] = 0; /* a tunnel is never pooled */
                become_tunnel(h, data, len);
                return;
            }
            if (rh->status < 200) { /* interim: the real response follows */
                if (rh->status == 100)
                    body_clock_start(h); /* the client sends its body now */
                sp_http_msg_next(&h->resp);
                h->resp.skip_body = h->head_method;
                continue;
            }
            h->resp_head_sent = true;
        } else {
            h->resp_bytes += used;
            if (!h->dechunk) /* else dechunked_body sent the data during the feed */
                send_body(h, buf, data, used, len, taken);
            if (c->state != SP_STATE_HTTP)
                return;
            data += used;
            len -= used;
        }
        if (ev == SP_MSG_DONE) {
            /* bytes after the response, or a response before the request was all sent:
             * the connection cannot be trusted with another exchange */
            bool reusable = len == 0 && h->req_sent && h->resp.head.keep_alive && !h->resp.head.until_close;
            if (!h->req_sent)
                h->close_after = true; /* the rest of the request body is unread */
            flush_head(h);
            exchange_done(h, reusable);
            return;
        }
    }
    flush_head(h); /* a head whose body has not come yet */
    if (c->state == SP_STATE_HTTP && c->client.queued > SP_HIGH_WATER)
        sp_pipe_stop_reading(&c->target); /* resumed when the client drains */
}

/* The idempotent request on a reused connection met a server that had closed it: once,
 * on a fresh connection. */
static bool retry(sp_http *h)
{
    sp_conn *c = h->c;
    if (!h->reused || h->retried || h->resp.head_ready || h->resp.head_bytes || !h->req.done ||
        h->req.head.content_length > 0 || h->req.head.chunked || !idempotent(h->req.head.method) ||
        !h->upstream_head.len)
        return false;
    h->retried = true;
    sp_counter_add(&W(h)->counters.http_upstream_retried, 1);
    drop_target(h);
    sp_http_msg_next(&h->resp);
    h->reused = false;
    h->phase = P_CONNECT;
    c->candidates_tried = 0;
    sp_conn_set_state(c, SP_STATE_CONNECTING);
    sp_conn_arm_timer(c);
    sp_connect_dest(c);
    return true;
}

static void target_ended(sp_http *h, bool error, sp_end_reason reason)
{
    sp_conn *c = h->c;
    if (h->phase != P_EXCHANGE) {
        drop_target(h); /* an idle upstream went away */
        return;
    }
    if (!error && h->resp.head_ready && h->resp.head.until_close) {
        if (sp_http_msg_finish(&h->resp) == SP_MSG_DONE) {
            c->target.eof = true;
            exchange_done(h, false);
            return;
        }
    }
    if (retry(h))
        return;
    if (h->resp_head_sent) {
        sp_conn_abort(c, error ? reason : SP_END_TARGET_CLOSED); /* the client sees a cut response */
        return;
    }
    bad_response(h, error ? sp_end_reason_name(reason) : "closed before a complete response");
}

/* ---- entry points from the connection ---- */

static void http_input(sp_conn *c, sp_side *from, void *buf, size_t len)
{
    sp_http *h = c->app_ctx;
    if (from == &c->target) {
        bool taken = false;
        target_bytes(h, buf, len, &taken);
        if (!taken)
            sp_bufpool_put(&c->w->pool, buf);
        return;
    }
    sp_buf_append(&h->in, buf, len);
    sp_bufpool_put(&c->w->pool, buf);
    if (h->in.oom) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    if (in_len(h) > SP_HIGH_WATER)
        client_reading(h, false); /* resumed when parsed */
    parse_client(h);
}

static void http_side_ended(sp_conn *c, sp_side *from, bool error, sp_end_reason reason)
{
    sp_http *h = c->app_ctx;
    if (from == &c->target) {
        target_ended(h, error, reason);
        return;
    }
    if (error) {
        sp_conn_abort(c, reason);
        return;
    }
    c->client.eof = true;
    if (h->phase == P_HEAD && in_len(h) == 0 && !h->req.head_bytes) {
        sp_conn_close(c, SP_END_CLIENT_CLOSED); /* between requests: the normal end */
        return;
    }
    if (h->phase == P_EXCHANGE && h->req_sent) {
        h->close_after = true; /* answer what was asked, then close */
        return;
    }
    sp_conn_abort(c, SP_END_CLIENT_CLOSED); /* in the middle of a request */
}

static void http_drained(sp_conn *c, sp_side *to)
{
    sp_http *h = c->app_ctx;
    if (c->state != SP_STATE_HTTP || h->phase != P_EXCHANGE)
        return;
    if (to == &c->target && !h->req_sent)
        parse_client(h);
    else if (to == &c->client)
        sp_pipe_resume(c, &c->target);
}

/* The worker stops gracefully: a connection between requests, nothing of the next one
 * read, closes now. */
static void http_worker_stopping(sp_conn *c)
{
    const sp_http *h = c->app_ctx;
    if (h->phase == P_HEAD && in_len(h) == 0 && !h->req.head_bytes)
        sp_conn_close(c, SP_END_SHUTDOWN);
}

/* ---- starting ---- */

void sp_http_sniffed(sp_conn *c)
{
    sp_http *h = session(c);
    if (!h) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    h->sniffing = true;
    if (c->sniffed.len > h->sniff_seen) {
        sp_buf_append(&h->in, c->sniffed.data + h->sniff_seen, c->sniffed.len - h->sniff_seen);
        h->sniff_seen = c->sniffed.len;
    }
    parse_client(h);
}

void sp_http_begin_tls(sp_conn *c)
{
    sp_http *h = session(c);
    if (!h) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    sp_conn_set_state(c, SP_STATE_HTTP);
    next_request(h);
    /* plaintext that came with the handshake was held for a target: it is ours */
    for (int i = 0; i < c->nearly; i++) {
        sp_buf_append(&h->in, c->early[i], c->early_len[i]);
        sp_bufpool_put(&c->w->pool, c->early[i]);
    }
    c->nearly = 0;
    sp_pipe_start_reading(c, &c->client);
    parse_client(h);
}

/* ---- time ---- */

static uint64_t http_deadline(sp_conn *c)
{
    sp_http *h = c->app_ctx;
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t due = UINT64_MAX;
    if (h->phase == P_HEAD) {
        if (h->requests == 0 && t->initial_data)
            due = c->started_ms + t->initial_data;
        else if (h->requests > 0 && t->http_idle)
            due = c->phase_started_ms + t->http_idle;
    } else if (h->phase == P_EXCHANGE) {
        if (!h->resp.head_ready && h->req_sent && t->upstream_response)
            due = h->exchange_ms + t->upstream_response;
        else if (t->inactivity)
            due = c->last_activity_ms + t->inactivity;
        if (!h->req_sent && body_due(h) < due)
            due = body_due(h);
    }
    if (t->max_lifetime && c->started_ms + t->max_lifetime < due)
        due = c->started_ms + t->max_lifetime;
    return due;
}

static void http_timeout(sp_conn *c)
{
    sp_http *h = c->app_ctx;
    const sp_timeouts *t = &c->gen->settings.timeouts;
    uint64_t now = uv_now(&c->w->loop);
    if (now < http_deadline(c)) {
        sp_conn_arm_timer(c); /* activity moved the deadline */
        return;
    }
    if (t->max_lifetime && now >= c->started_ms + t->max_lifetime) {
        sp_conn_abort(c, SP_END_MAX_LIFETIME);
        return;
    }
    if (h->phase == P_HEAD) {
        sp_conn_close(c, h->requests ? SP_END_HTTP_IDLE_TIMEOUT : SP_END_INITIAL_DATA_TIMEOUT);
        return;
    }
    if (h->phase == P_EXCHANGE && !h->resp.head_ready && h->req_sent) {
        sp_info("conn=%llu route=%s: 504, no response from %s:%s within timeouts.upstream_response",
                (unsigned long long)c->id, h->route->name, c->dest.host ? c->dest.host : "-", c->dest.port_text);
        drop_target(h);
        h->phase = P_HEAD;
        respond_local(h, 504, SP_HTTP_LOCAL_GATEWAY_TIMEOUT, NULL, NULL, false);
        if (c->state == SP_STATE_HTTP)
            parse_client(h);
        return;
    }
    if (h->phase == P_EXCHANGE && !h->req_sent && now >= body_due(h)) {
        body_timed_out(h);
        return;
    }
    sp_conn_abort(c, SP_END_INACTIVITY_TIMEOUT);
}

/* ---- the seam: what the connection calls ---- */

static const sp_app_ops http_app = {
    .state = SP_STATE_HTTP,
    .input = http_input,
    .drained = http_drained,
    .side_ended = http_side_ended,
    .deadline = http_deadline,
    .timeout = http_timeout,
    .worker_stopping = http_worker_stopping,
    .target_ready = http_target_ready,
    .target_failed = http_target_failed,
    .closing = http_closing,
    .release = http_release,
};
