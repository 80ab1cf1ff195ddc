#include "admin/admin.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/acceptor.h"
#include "net/listener.h"
#include "util/log.h"

#define ADMIN_MAX_HEAD 8192
#define ADMIN_TIMEOUT_MS 5000

typedef struct admin_conn admin_conn;

struct sp_admin {
    sp_acceptor acceptor;      /* pauses instead of spinning when descriptors run out */
    uv_loop_t *loop;
    sp_admin_hooks hooks;
    sp_ip_endpoint listen;
    admin_conn *conns;
    int handles;               /* open handles: the server and each connection's two */
    bool stopping;
};

/* The request headers the endpoint reads; each may come once (a second one is a 400). */
enum { H_AUTHORIZATION, H_HOST, H_ORIGIN, H_CONTENT_TYPE, H_ADMIN, H_COUNT };
static const char *const header_names[H_COUNT] = {"authorization", "host", "origin", "content-type",
                                                  "x-smartproxy-admin"};

typedef struct captured_header {
    char value[256];
    size_t len;
    bool seen;
} captured_header;

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    sp_admin *a;
    admin_conn *prev, *next;
    llhttp_t parser;
    llhttp_settings_t settings;
    char url[256];
    size_t url_len;
    char field[32];             /* the header name being read, lowercased, cut */
    size_t field_len;
    int current;                /* which header_names[] the value being read is, or -1 */
    captured_header headers[H_COUNT];
    size_t head_bytes;
    bool complete, closing;
    bool head_only;             /* a HEAD request: the answer has no body */
    int handles;
};

static void admin_maybe_free(sp_admin *a)
{
    if (a->stopping && a->handles == 0)
        free(a);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    admin_conn *ac = h->data;
    if (--ac->handles > 0)
        return;
    sp_admin *a = ac->a;
    free(ac);
    a->handles--;
    admin_maybe_free(a);
}

static void conn_close(admin_conn *ac)
{
    if (ac->closing)
        return;
    ac->closing = true;
    sp_admin *a = ac->a;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        a->conns = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    uv_close((uv_handle_t *)&ac->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&ac->timer, on_conn_handle_closed);
}

typedef struct admin_write {
    uv_write_t req;
    admin_conn *ac;
    sp_buf buf;
} admin_write;

static void on_written(uv_write_t *req, int status)
{
    admin_write *aw = (admin_write *)req;
    sp_buf_free(&aw->buf);
    if (status != UV_ECANCELED)
        conn_close(aw->ac);
    free(aw);
}

/* extra: more header lines ("Name: value\r\n"), or "". */
static void respond(admin_conn *ac, int status, const char *reason, const char *type, const char *extra,
                    const sp_buf *body)
{
    admin_write *aw = calloc(1, sizeof *aw);
    if (!aw) {
        conn_close(ac);
        return;
    }
    aw->ac = ac;
    sp_buf_init(&aw->buf);
    sp_buf_appendf(&aw->buf,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                   "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                   status, reason, type, body ? body->len : 0, extra);
    if (body && !ac->head_only)
        sp_buf_append(&aw->buf, body->data, body->len);
    if (aw->buf.oom) {
        sp_buf_free(&aw->buf);
        free(aw);
        conn_close(ac);
        return;
    }
    uv_buf_t b = uv_buf_init(aw->buf.data, (unsigned)aw->buf.len);
    uv_read_stop((uv_stream_t *)&ac->tcp);
    if (uv_write(&aw->req, (uv_stream_t *)&ac->tcp, &b, 1, on_written) != 0) {
        sp_buf_free(&aw->buf);
        free(aw);
        conn_close(ac);
    }
}

static void respond_text_with(admin_conn *ac, int status, const char *reason, const char *extra,
                              const char *text)
{
    sp_buf body;
    sp_buf_init(&body);
    sp_buf_appendf(&body, "%s\n", text);
    respond(ac, status, reason, "text/plain; charset=utf-8", extra, &body);
    sp_buf_free(&body);
}

static void respond_text(admin_conn *ac, int status, const char *reason, const char *text)
{
    respond_text_with(ac, status, reason, "", text);
}

static void respond_json(admin_conn *ac, void (*fill)(void *, const char *, sp_json *))
{
    sp_buf body;
    sp_buf_init(&body);
    sp_json j;
    sp_json_init(&j, &body);
    const char *q = strchr(ac->url, '?');
    fill(ac->a->hooks.ud, q ? q + 1 : NULL, &j);
    sp_buf_append(&body, "\n", 1);
    respond(ac, 200, "OK", "application/json", "", &body);
    sp_buf_free(&body);
}

/* Compares without an early exit, so the time taken says nothing about the token. */
static bool token_ok(const char *want, const char *auth)
{
    static const char prefix[] = "Bearer ";
    if (strncmp(auth, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *got = auth + sizeof prefix - 1;
    size_t wl = strlen(want), gl = strlen(got);
    unsigned diff = (unsigned)(wl ^ gl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
    return diff == 0;
}

/* The paths and the one method each takes (HEAD wherever GET). */
typedef enum { EP_HEALTHZ, EP_METRICS, EP_STATS, EP_ROUTES, EP_RELOAD, EP_COUNT } endpoint;
static const struct {
    const char *path;
    bool post;
} endpoints[EP_COUNT] = {
    [EP_HEALTHZ] = {"/healthz", false}, [EP_METRICS] = {"/metrics", false},
    [EP_STATS] = {"/stats", false},     [EP_ROUTES] = {"/routes", false},
    [EP_RELOAD] = {"/reload", true},
};

static const char *header(const admin_conn *ac, int h)
{
    return ac->headers[h].seen ? ac->headers[h].value : NULL;
}

/* Why this request may not touch anything but /healthz, or NULL when it may. */
static const char *refusal(const admin_conn *ac, const sp_admin_access *acc)
{
    sp_admin_names names = {.listen = &ac->a->listen, .hosts = acc->hosts, .nhosts = acc->nhosts};
    if (!sp_admin_host_ok(&names, header(ac, H_HOST)))
        return "Host must name this endpoint: its address, or a name in metrics.hosts";
    if (!sp_admin_origin_ok(&names, header(ac, H_ORIGIN)))
        return "Origin must name this endpoint: its address, or a name in metrics.hosts";
    return NULL;
}

static void answer(admin_conn *ac, endpoint ep)
{
    const sp_admin_hooks *h = &ac->a->hooks;
    switch (ep) {
    case EP_HEALTHZ:
        respond_text(ac, 200, "OK", "ok");
        break;
    case EP_METRICS: {
        sp_buf body;
        sp_buf_init(&body);
        h->metrics_text(h->ud, &body);
        respond(ac, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", &body);
        sp_buf_free(&body);
        break;
    }
    case EP_STATS:
        respond_json(ac, h->stats_json);
        break;
    case EP_ROUTES:
        respond_json(ac, h->routes_json);
        break;
    case EP_RELOAD: {
        char err[1024];
        if (h->reload(h->ud, err, sizeof err) == 0)
            respond_text(ac, 200, "OK", "reloaded");
        else
            respond_text(ac, 422, "Unprocessable Entity", err);
        break;
    }
    case EP_COUNT:
        break;
    }
}

static void dispatch(admin_conn *ac)
{
    sp_admin *a = ac->a;
    int method = llhttp_get_method(&ac->parser);
    char path[256];
    size_t n = strcspn(ac->url, "?");
    snprintf(path, sizeof path, "%.*s", (int)n, ac->url);
    endpoint ep = 0;
    while (ep < EP_COUNT && strcmp(path, endpoints[ep].path) != 0)
        ep++;
    bool get = method == HTTP_GET || method == HTTP_HEAD;
    ac->head_only = method == HTTP_HEAD;

    /* /healthz says "ok" and nothing else: probes reach it with whatever Host they use. */
    if (ep != EP_HEALTHZ) {
        sp_admin_access acc = {0};
        a->hooks.access(a->hooks.ud, &acc);
        const char *why = refusal(ac, &acc);
        if (why) {
            respond_text(ac, 403, "Forbidden", why);
            return;
        }
        if (acc.token && !token_ok(acc.token, ac->headers[H_AUTHORIZATION].value)) {
            respond_text(ac, 401, "Unauthorized", "a bearer token is required");
            return;
        }
    }
    if (ep == EP_COUNT) {
        respond_text(ac, 404, "Not Found", "not found");
    } else if (endpoints[ep].post ? method != HTTP_POST : !get) {
        const char *allow = endpoints[ep].post ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
        respond_text_with(ac, 405, "Method Not Allowed", allow, "method not allowed");
    } else if (!get && !sp_admin_request_is_deliberate(header(ac, H_CONTENT_TYPE), ac->headers[H_ADMIN].seen)) {
        respond_text(ac, 403, "Forbidden",
                     "a state change needs Content-Type: application/json or an " SP_ADMIN_HEADER " header");
    } else {
        answer(ac, ep);
    }
}

/* Appends a piece of the URL or a header value, NUL-terminated; -1 (a 400) when too long. */
static int append_piece(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
    if (*len + n >= cap)
        return -1;
    memcpy(buf + *len, at, n);
    *len += n;
    buf[*len] = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *ac = p->data;
    return append_piece(ac->url, sizeof ac->url, &ac->url_len, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *ac = p->data;
    for (size_t i = 0; i < len && ac->field_len < sizeof ac->field - 1; i++)
        ac->field[ac->field_len++] = (char)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] + 32 : at[i]);
    ac->field[ac->field_len] = 0;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    admin_conn *ac = p->data;
    ac->current = -1;
    for (int h = 0; h < H_COUNT; h++) {
        if (strcmp(ac->field, header_names[h]) != 0)
            continue;
        if (ac->headers[h].seen)
            return -1; /* two Hosts (or tokens, origins...): which one would we check? */
        ac->headers[h].seen = true;
        ac->current = h;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    admin_conn *ac = p->data;
    if (ac->current < 0)
        return 0;
    captured_header *c = &ac->headers[ac->current];
    return append_piece(c->value, sizeof c->value, &c->len, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    admin_conn *ac = p->data;
    ac->field_len = 0;
    ac->field[0] = 0;
    ac->current = -1;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    admin_conn *ac = p->data;
    ac->complete = true;
    return HPE_PAUSED;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static _Thread_local char scratch[4096]; /* parsed at once, never kept */
    buf->base = scratch;
    buf->len = sizeof scratch;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn *ac = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(ac);
        return;
    }
    ac->head_bytes += (size_t)nread;
    llhttp_errno_t e = llhttp_execute(&ac->parser, buf->base, (size_t)nread);
    if (ac->complete) {
        dispatch(ac);
    } else if (e != HPE_OK) {
        respond_text(ac, 400, "Bad Request", "bad request");
    } else if (ac->head_bytes > ADMIN_MAX_HEAD) {
        respond_text(ac, 431, "Request Header Fields Too Large", "request too large");
    }
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_accepted(sp_acceptor *acc, int fd, const struct sockaddr *peer)
{
    (void)peer;
    sp_admin *a = acc->data;
    admin_conn *ac = calloc(1, sizeof *ac);
    if (!ac) {
        close(fd);
        return;
    }
    ac->a = a;
    ac->current = -1;
    uv_tcp_init(a->loop, &ac->tcp);
    uv_timer_init(a->loop, &ac->timer);
    ac->tcp.data = ac->timer.data = ac;
    ac->handles = 2;
    a->handles++;
    ac->next = a->conns;
    if (a->conns)
        a->conns->prev = ac;
    a->conns = ac;
    if (uv_tcp_open(&ac->tcp, fd) != 0) {
        close(fd); /* the handle does not own it */
        conn_close(ac);
        return;
    }
    llhttp_settings_init(&ac->settings);
    ac->settings.on_url = on_url;
    ac->settings.on_header_field = on_header_field;
    ac->settings.on_header_field_complete = on_header_field_complete;
    ac->settings.on_header_value = on_header_value;
    ac->settings.on_header_value_complete = on_header_value_complete;
    ac->settings.on_message_complete = on_message_complete;
    llhttp_init(&ac->parser, HTTP_REQUEST, &ac->settings);
    ac->parser.data = ac;
    uv_timer_start(&ac->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&ac->tcp, on_alloc, on_read);
}

static void on_accept_failed(sp_acceptor *acc, int err, bool paused)
{
    (void)acc;
    if (paused)
        sp_warn("admin endpoint: accept failed: %s; not accepting for %d ms", strerror(-err), SP_ACCEPT_PAUSE_MS);
}

static const sp_acceptor_ops admin_accept_ops = {.accepted = on_accepted, .failed = on_accept_failed};

static void on_acceptor_closed(sp_acceptor *acc)
{
    sp_admin *a = acc->data;
    a->handles--;
    admin_maybe_free(a);
}

sp_admin *sp_admin_start(uv_loop_t *loop, const char *listen, const sp_admin_hooks *hooks,
                         char *err, size_t errlen)
{
    sp_ip_endpoint addr;
    if (sp_ip_endpoint_parse(listen, &addr) != 0) {
        snprintf(err, errlen, "metrics.listen: expected \"ADDRESS:PORT\", got \"%s\"", listen);
        return NULL;
    }
    int fd = sp_bind_tcp(addr.host, addr.port, false);
    if (fd < 0) {
        snprintf(err, errlen, "metrics.listen: cannot listen on %s: %s", listen, strerror(-fd));
        return NULL;
    }
    sp_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->hooks = *hooks;
    a->listen = addr;
    a->loop = loop;
    int rc = sp_acceptor_start(&a->acceptor, loop, fd, 128, &admin_accept_ops, a);
    if (rc != 0) {
        snprintf(err, errlen, "metrics.listen: cannot listen on %s: %s", listen, uv_strerror(rc));
        close(fd);
        free(a);
        return NULL;
    }
    a->handles = 1;
    return a;
}

void sp_admin_stop(sp_admin *a)
{
    if (!a)
        return;
    a->stopping = true;
    while (a->conns)
        conn_close(a->conns);
    sp_acceptor_close(&a->acceptor, on_acceptor_closed);
}
