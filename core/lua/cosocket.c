/* cosocket: TCP sockets for Lua handlers, in the manner of OpenResty's cosockets.
 *
 * sock:read(n | "*l" | "*a"), sock:write(data), sock:close(), sock:set_timeout(ms),
 * sock:peer(). A read is served from what already arrived when it can; otherwise the
 * socket reads (only while a read waits: a handler that does not read applies
 * backpressure) and the coroutine yields until the read is satisfied, the peer closes,
 * or the timeout passes. A write returns once its bytes are queued, yielding only while
 * more than the high-water mark waits to be sent.
 *
 * sp.connect dials through net/dial.c (resolve, addresses in turn, the PROXY header, the
 * TLS handshake); a TLS socket's bytes then go through the TLS pump (tls/stream.h). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http_message.h"
#include "lua/ctx.h"
#include "lua/task.h"
#include "net/conn_impl.h"
#include "proto/proxy_protocol.h"
#include "tls/stream.h"

#define SOCKET_MT "smartproxy.socket"
#define DEFAULT_TIMEOUT_MS 60000
#define MAX_LINE (64 * 1024)   /* a "*l" read fails with "line too long" past this */
#define READ_AHEAD (64 * 1024) /* bytes read ahead of Lua before the socket pauses */

typedef struct cowrite {
    uv_write_t req;
    sp_cosock *s;
    size_t len;
    char data[];
} cowrite;

sp_cosock *sp_cosock_new(sp_task *t, uv_tcp_t *tcp, bool is_client)
{
    sp_cosock *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->task = t;
    s->tcp = tcp;
    s->is_client = is_client;
    s->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (tcp)
        tcp->data = s;
    s->next = t->socks;
    t->socks = s;
    return s;
}

void sp_cosock_close(sp_cosock *s)
{
    sp_conn *c = s->task->conn;
    sp_dial_cancel(&s->dial); /* a lookup's callback still comes; the connection waits for it */
    if (s->tcp) {
        sp_conn_close_handle(c, (uv_handle_t *)s->tcp);
        s->tcp = NULL;
    }
    if (s->lingering) {
        sp_conn_close_handle(c, (uv_handle_t *)s->lingering);
        s->lingering = NULL;
    }
    s->reading = false;
}

void sp_cosock_destroy(sp_cosock *s)
{
    if (s->ud)
        *s->ud = NULL;
    sp_buf_free(&s->in);
    if (s->head) {
        sp_http_msg_free(s->head);
        free(s->head);
        s->head = NULL;
    }
    sp_tls_free(&s->tls);
    free(s);
}

static int ud_gc(lua_State *L)
{
    sp_cosock **ud = luaL_checkudata(L, 1, SOCKET_MT);
    if (*ud)
        (*ud)->ud = NULL;
    return 0;
}

void sp_cosock_push(lua_State *L, sp_cosock *s)
{
    sp_cosock **ud = lua_newuserdata(L, sizeof *ud);
    *ud = s;
    s->ud = ud;
    luaL_getmetatable(L, SOCKET_MT);
    lua_setmetatable(L, -2);
}

sp_cosock *sp_cosock_check(lua_State *L, int idx, const char *fn, bool *closed)
{
    sp_cosock **ud = luaL_checkudata(L, idx, SOCKET_MT);
    *closed = !*ud || !(*ud)->tcp;
    if (!*ud)
        return NULL;
    (void)fn;
    return *ud;
}

static int closed_result(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static int tls_input(sp_cosock *s, const char *data, size_t len);
static int tls_write(sp_cosock *s, const char *data, size_t len);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* ---- reading ---- */

/* A request head as a table for smartproxy.http: method, url, version (1.0 | 1.1) and
 * headers (lowercased names; repeated fields joined with ", "). */
static void push_head(lua_State *L, const sp_http_head *h)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)h->method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, sp_http_url(h), h->url_len);
    lua_setfield(L, -2, "url");
    lua_pushnumber(L, h->minor == 0 ? 1.0 : 1.1);
    lua_setfield(L, -2, "version");
    sp_lua_push_headers(L, h);
    lua_setfield(L, -2, "headers");
}

/* sock:read_request_head: feeds what arrived to the socket's parser (the bytes go into
 * its head, so they leave the buffer); a complete head is pushed as a table. */
static int try_read_head(lua_State *L, sp_cosock *s)
{
    sp_buf *in = &s->in;
    if (!s->head) {
        s->head = malloc(sizeof *s->head);
        if (!s->head)
            return luaL_error(L, "out of memory");
        sp_http_msg_init(s->head, true, s->read_n);
    }
    size_t used = 0;
    sp_msg_event ev = in->len ? sp_http_msg_feed(s->head, in->data, in->len, &used) : SP_MSG_MORE;
    if (ev == SP_MSG_ERROR) {
        lua_pushnil(L);
        lua_pushinteger(L, s->head->error_status);
        sp_http_msg_next(s->head);
        sp_buf_reset(in);
        return 2;
    }
    if (used) {
        memmove(in->data, in->data + used, in->len - used);
        in->len -= used;
    }
    if (ev == SP_MSG_MORE) {
        bool between_requests = s->is_client && !s->head->head_bytes && !in->len;
        if (s->eof || s->error || !s->tcp || (between_requests && s->task->conn->w->stopping)) {
            /* a stopping worker ends keep-alive connections between requests, as it
             * does the HTTP engine's (sp_cosock_retry_read for those already waiting) */
            sp_http_msg_next(s->head);
            lua_pushnil(L);
            lua_pushliteral(L, "closed");
            return 2;
        }
        return 0;
    }
    push_head(L, &s->head->head);
    sp_http_msg_next(s->head); /* the body, if any, is the caller's to read */
    return 1;
}

/* Pushes the results of the pending read if it can be answered now; returns how many, or
 * 0 when it must wait. */
static int try_read(lua_State *L, sp_cosock *s)
{
    sp_buf *in = &s->in;
    const char *d = in->data ? in->data : "";
    size_t take = 0, give = 0;
    bool ready = false;
    if (s->read_kind == SP_READ_HEAD)
        return try_read_head(L, s);
    switch (s->read_kind) {
    case SP_READ_BYTES:
        ready = in->len >= s->read_n;
        take = give = s->read_n;
        break;
    case SP_READ_LINE: {
        const char *nl = memchr(d, '\n', in->len);
        if (nl) {
            ready = true;
            take = (size_t)(nl - d) + 1;
            give = take - 1;
            if (give && d[give - 1] == '\r')
                give--;
        }
        break;
    }
    case SP_READ_ALL:
        ready = s->eof || s->error;
        take = give = in->len;
        break;
    case SP_READ_ANY:
        ready = in->len > 0;
        take = give = in->len < s->read_n ? in->len : s->read_n;
        break;
    default:
        break;
    }
    if (ready) {
        lua_pushlstring(L, d, give);
        memmove(in->data, in->data + take, in->len - take);
        in->len -= take;
        return 1;
    }
    if (s->read_kind == SP_READ_LINE && in->len > MAX_LINE) {
        lua_pushnil(L);
        lua_pushliteral(L, "line too long");
        lua_pushlstring(L, d, in->len);
        sp_buf_reset(in);
        return 3;
    }
    if (s->eof || s->error || !s->tcp) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushlstring(L, d, in->len);
        sp_buf_reset(in);
        return 3;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sp_cosock *s = h->data;
    buf->base = sp_bufpool_get(&s->task->conn->w->pool);
    buf->len = buf->base ? SP_READ_BUF_SIZE : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sp_cosock *s = stream->data;
    sp_task *t = s->task;
    sp_conn *c = t->conn;
    if (nread > 0 && s->tls.ssl) {
        if (tls_input(s, buf->base, (size_t)nread) != 0) {
            sp_bufpool_put(&c->w->pool, buf->base);
            return; /* what the session wanted sent could not be queued */
        }
        sp_side_count_read(c, &c->target, (size_t)nread);
    } else if (nread > 0) {
        sp_buf_append(&s->in, buf->base, (size_t)nread);
        sp_side_count_read(c, s->is_client ? &c->client : &c->target, (size_t)nread);
    } else if (nread == UV_EOF) {
        s->eof = true;
    } else if (nread < 0) {
        s->error = (int)nread;
    }
    sp_bufpool_put(&c->w->pool, buf->base);
    if (nread == 0)
        return;
    /* Reading goes on between Lua reads, up to READ_AHEAD buffered bytes: stopping and
     * restarting per read costs two epoll_ctl calls each time (libuv re-registers). */
    bool stop = nread < 0 || s->in.len >= READ_AHEAD;
    if (t->wait != SP_WAIT_READ || t->waiting_on != s) {
        if (stop) {
            uv_read_stop(stream);
            s->reading = false;
        }
        return;
    }
    int n = try_read(t->co, s);
    if (n == 0)
        return;
    if (stop || s->in.len >= READ_AHEAD) {
        uv_read_stop(stream);
        s->reading = false;
    }
    sp_task_resume(t, n);
}

static int read_or_wait(lua_State *L, sp_cosock *s);

void sp_cosock_retry_read(sp_task *t)
{
    sp_cosock *s = t->waiting_on;
    if (t->done || t->wait != SP_WAIT_READ || !s)
        return;
    int n = try_read(t->co, s);
    if (n)
        sp_task_resume(t, n);
}

static int sock_read(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:read", &closed);
    if (!s)
        return closed_result(L);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, 2);
        if (n < 0 || n > 1 << 30)
            return luaL_argerror(L, 2, "expected a byte count from 0 to 2^30");
        s->read_kind = SP_READ_BYTES;
        s->read_n = (size_t)n;
    } else {
        const char *pat = luaL_optstring(L, 2, "*l");
        if (strcmp(pat, "*l") == 0 || strcmp(pat, "l") == 0)
            s->read_kind = SP_READ_LINE;
        else if (strcmp(pat, "*a") == 0 || strcmp(pat, "a") == 0)
            s->read_kind = SP_READ_ALL;
        else
            return luaL_argerror(L, 2, "expected a number, \"*l\" or \"*a\"");
    }
    return read_or_wait(L, s);
}

/* Answers the read set up in s now, or yields until it can be. */
static int read_or_wait(lua_State *L, sp_cosock *s)
{
    int n = try_read(L, s);
    if (n)
        return n;
    sp_task *t = s->task->co == L ? s->task : sp_task_of(L); /* the first: no registry lookup */
    if (!t || t->done)
        return luaL_error(L, "sock:read: only inside its socket handler");
    if (!s->reading) {
        if (uv_read_start((uv_stream_t *)s->tcp, on_alloc, on_read) != 0)
            return closed_result(L);
        s->reading = true;
    }
    return sp_task_yield(t, SP_WAIT_READ, s, s->timeout_ms);
}

/* sock:receiveany(max): whatever has arrived, 1 to max bytes, waiting only when nothing
 * has (like OpenResty's receiveany): the way to relay a stream without per-byte reads. */
static int sock_receiveany(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:receiveany", &closed);
    if (!s)
        return closed_result(L);
    lua_Number max = luaL_checknumber(L, 2);
    if (max < 1 || max > 1 << 30)
        return luaL_argerror(L, 2, "expected a byte count from 1 to 2^30");
    s->read_kind = SP_READ_ANY;
    s->read_n = (size_t)max;
    return read_or_wait(L, s);
}

/* sock:read_request_head(max_bytes): the next HTTP request head, parsed in C by the same
 * llhttp code the proxy uses -> table | nil, status (400, 431: answer and close) |
 * nil, "closed" / "timeout". The body stays in the socket for sock:read. */
static int sock_read_request_head(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:read_request_head", &closed);
    if (!s)
        return closed_result(L);
    lua_Number max = luaL_optnumber(L, 2, 65536);
    if (max < 256 || max > 1 << 24)
        return luaL_argerror(L, 2, "expected a size from 256 to 2^24");
    s->read_kind = SP_READ_HEAD;
    s->read_n = (size_t)max;
    return read_or_wait(L, s);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    cowrite *w = (cowrite *)req;
    sp_cosock *s = w->s;
    s->queued -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        s->error = status;
    sp_task *t = s->task;
    if (t->wait == SP_WAIT_WRITE && t->waiting_on == s && (s->queued <= SP_LOW_WATER || s->error)) {
        if (s->error) {
            lua_pushnil(t->co);
            lua_pushliteral(t->co, "closed");
            sp_task_resume(t, 2);
        } else {
            lua_pushboolean(t->co, 1);
            sp_task_resume(t, 1);
        }
    }
}

/* Queues bytes on the socket (trying a direct write first). 0, or a libuv error. */
static int queue_bytes(sp_cosock *s, const char *data, size_t len)
{
    sp_conn *c = s->task->conn;
    sp_side_count_written(c, s->is_client ? &c->client : &c->target, len);
    if (s->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)s->tcp, &b, 1);
        if (n == (int)len)
            return 0;
        if (n < 0 && n != UV_EAGAIN)
            return n;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    cowrite *w = malloc(sizeof *w + len);
    if (!w)
        return UV_ENOMEM;
    w->s = s;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)s->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w);
        return rc;
    }
    s->queued += len;
    return 0;
}

static int sock_write(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:write", &closed);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (!s || closed || s->error)
        return closed_result(L);
    if (len && (s->tls.ssl ? tls_write(s, data, len) : queue_bytes(s, data, len)) != 0)
        return closed_result(L);
    sp_conn *c = s->task->conn;
    c->last_activity_ms = uv_now(&c->w->loop);
    if (s->queued > SP_HIGH_WATER) {
        sp_task *t = s->task->co == L ? s->task : sp_task_of(L);
        if (t && !t->done)
            return sp_task_yield(t, SP_WAIT_WRITE, s, s->timeout_ms);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- TLS (sp.connect with tls = true; the dialer did the handshake) ---- */

/* The TLS pump's view of the socket (tls/stream.h): ciphertext goes to the write queue,
 * plaintext to what Lua reads (bounded by READ_AHEAD through the socket's reading). */
static void *tls_get_buf(void *ctx, size_t *cap)
{
    sp_cosock *s = ctx;
    *cap = SP_READ_BUF_SIZE;
    return sp_bufpool_get(&s->task->conn->w->pool);
}

static void tls_put_buf(void *ctx, void *buf)
{
    sp_cosock *s = ctx;
    sp_bufpool_put(&s->task->conn->w->pool, buf);
}

static int tls_send(void *ctx, void *buf, size_t len)
{
    int rc = queue_bytes(ctx, buf, len);
    tls_put_buf(ctx, buf);
    return rc == 0 ? 0 : -1;
}

static int tls_receive(void *ctx, void *buf, size_t len)
{
    sp_cosock *s = ctx;
    sp_buf_append(&s->in, buf, len);
    tls_put_buf(ctx, buf);
    return 0;
}

static const sp_tls_io tls_io = {
    .get_buf = tls_get_buf, .put_buf = tls_put_buf, .send = tls_send, .receive = tls_receive};

/* Sends what the TLS session wants sent. */
static int tls_flush(sp_cosock *s)
{
    return sp_tls_flush(&s->tls, &tls_io, s) == 0 ? 0 : -1;
}

static int tls_write(sp_cosock *s, const char *data, size_t len)
{
    if (sp_tls_write(&s->tls, data, len) != 0)
        return -1;
    return tls_flush(s);
}

/* Feeds network bytes to the session (established by the dialer) and appends the
 * plaintext to what Lua reads. */
static int tls_input(sp_cosock *s, const char *data, size_t len)
{
    if (sp_tls_feed(&s->tls, data, len) != 0) {
        s->error = UV_ENOMEM;
        return -1;
    }
    switch (sp_tls_pump(&s->tls, &tls_io, s)) {
    case SP_TLS_PUMP_FAILED:
        s->error = UV_EPROTO;
        return 0;
    case SP_TLS_PUMP_PEER_CLOSED:
        s->eof = true;
        return 0;
    case SP_TLS_PUMP_DRAINED:
        return 0;
    default: /* what the session wanted sent could not be queued */
        return -1;
    }
}

/* ---- the rest ---- */

static void on_close_shutdown(uv_shutdown_t *req, int status)
{
    sp_cosock *s = req->data;
    free(req);
    if (s->lingering) {
        sp_conn_close_handle(s->task->conn, (uv_handle_t *)s->lingering);
        s->lingering = NULL;
    }
}

/* Closes after what was written is sent: a FIN once the queue drains, then the handle. */
static int sock_close(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:close", &closed);
    if (!s || closed)
        return closed_result(L);
    if (s->tls.ssl && s->tls.established) {
        sp_tls_shutdown(&s->tls);
        tls_flush(s);
    }
    uv_shutdown_t *req = NULL;
    if (uv_stream_get_write_queue_size((uv_stream_t *)s->tcp) > 0 && (req = malloc(sizeof *req)) &&
        uv_shutdown(req, (uv_stream_t *)s->tcp, on_close_shutdown) == 0) {
        req->data = s;
        if (s->reading)
            uv_read_stop((uv_stream_t *)s->tcp);
        s->reading = false;
        s->lingering = s->tcp; /* still owned, closed by the shutdown callback or an abort */
        s->tcp = NULL;
    } else {
        free(req);
        sp_cosock_close(s);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int sock_set_timeout(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:set_timeout", &closed);
    lua_Number ms = luaL_checknumber(L, 2);
    if (ms < 0)
        return luaL_argerror(L, 2, "expected milliseconds >= 0 (0: no timeout)");
    if (s)
        s->timeout_ms = (uint64_t)ms;
    return 0;
}

static int sock_peer(lua_State *L)
{
    bool closed;
    sp_cosock *s = sp_cosock_check(L, 1, "sock:peer", &closed);
    if (!s || closed)
        return closed_result(L);
    if (s->is_client) { /* the real client, also when a PROXY header named it */
        char ip[SP_IP_STRLEN];
        sp_ip_format(&s->task->conn->info.client_ip, ip, sizeof ip);
        lua_pushstring(L, ip);
        lua_pushinteger(L, s->task->conn->info.client_port);
        return 2;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    sp_ip ip;
    uint16_t port;
    char text[SP_IP_STRLEN];
    if (uv_tcp_getpeername(s->tcp, (struct sockaddr *)&ss, &len) != 0 ||
        sp_ip_from_sockaddr((struct sockaddr *)&ss, &ip, &port) != 0)
        return closed_result(L);
    sp_ip_format(&ip, text, sizeof text);
    lua_pushstring(L, text);
    lua_pushinteger(L, port);
    return 2;
}

static int sock_tostring(lua_State *L)
{
    sp_cosock **ud = luaL_checkudata(L, 1, SOCKET_MT);
    lua_pushfstring(L, "smartproxy.socket (%s)", *ud && (*ud)->tcp ? "open" : "closed");
    return 1;
}

void sp_cosock_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"read", sock_read},   {"receiveany", sock_receiveany},
        {"read_request_head", sock_read_request_head}, {"write", sock_write},
        {"close", sock_close},
        {"set_timeout", sock_set_timeout}, {"settimeout", sock_set_timeout},
        {"peer", sock_peer},   {NULL, NULL},
    };
    if (luaL_newmetatable(L, SOCKET_MT)) {
        lua_createtable(L, 0, 8);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, ud_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, sock_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "smartproxy.socket");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

/* ---- sp.connect ---- */

static void connect_done(sp_cosock *s, const char *err)
{
    sp_task *t = s->task;
    s->connecting = false;
    if (t->wait != SP_WAIT_CONNECT || t->waiting_on != s)
        return; /* failed before the caller yielded: it reports the error itself */
    if (err) {
        lua_pushnil(t->co);
        lua_pushstring(t->co, err);
        sp_task_resume(t, 2);
        return;
    }
    sp_cosock_push(t->co, s);
    sp_task_resume(t, 1);
}

/* What sp.connect answers when the dial failed (into buf when it must be composed). */
static const char *dial_error(const sp_dial *d, char *buf, size_t cap)
{
    switch (d->result) {
    case SP_DIAL_RESOLVE_NOT_STARTED: return "cannot resolve";
    case SP_DIAL_RESOLVE_FAILED: return d->status == UV_ECANCELED ? "timeout" : uv_strerror(d->status);
    case SP_DIAL_CONNECT_FAILED: return d->status ? uv_strerror(d->status) : "cannot connect";
    case SP_DIAL_PREAMBLE_FAILED: return "cannot write the PROXY header";
    case SP_DIAL_TLS_NOT_STARTED: return "cannot start TLS";
    case SP_DIAL_TLS_FAILED:
        snprintf(buf, cap, "tls handshake failed: %s", sp_tls_failure_name(d->tls_failure));
        return buf;
    default: return "cannot connect";
    }
}

static void on_dialed(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp)
{
    sp_cosock *s = d->owner;
    if (r == SP_DIAL_CONNECTED) {
        s->tcp = tcp;
        tcp->data = s;
        sp_dial_take_tls(d, &s->tls); /* reads resume when Lua reads */
        connect_done(s, NULL);
        return;
    }
    if (r == SP_DIAL_TLS_FAILED)
        sp_counter_add(&s->task->conn->w->counters.upstream_tls_failures[d->tls_failure], 1);
    char why[96];
    connect_done(s, dial_error(d, why, sizeof why));
}

static const sp_dial_ops dial_ops = {.done = on_dialed};

int sp_cosock_connect(lua_State *L, sp_task *t)
{
    size_t hlen;
    const char *host = luaL_checklstring(L, 1, &hlen);
    lua_Number port = luaL_checknumber(L, 2);
    if (port < 1 || port > 65535)
        return luaL_argerror(L, 2, "expected a port from 1 to 65535");
    uint64_t timeout = DEFAULT_TIMEOUT_MS;
    int pp = 0;
    bool tls = false, verify = false;
    const char *sni = NULL;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "timeout");
        if (!lua_isnil(L, -1))
            timeout = (uint64_t)luaL_checknumber(L, -1);
        lua_getfield(L, 3, "tls");
        tls = lua_toboolean(L, -1);
        lua_getfield(L, 3, "verify");
        verify = lua_toboolean(L, -1);
        lua_getfield(L, 3, "sni");
        sni = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
        lua_getfield(L, 3, "proxy_protocol");
        if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "v2") == 0)
            pp = 2;
        else if ((lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "v1") == 0) ||
                 (lua_isboolean(L, -1) && lua_toboolean(L, -1)))
            pp = 1;
        else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1)))
            return luaL_error(L, "sp.connect: proxy_protocol: expected \"v1\", \"v2\", true or false");
        lua_pop(L, 5);
    }
    sp_conn *c = t->conn;
    uint8_t header[SP_PP_V2_MAX_TLV + 16];
    size_t header_len = 0;
    if (pp) { /* the real client and the address it connected to */
        header_len = pp == 1 ? sp_proxy_write_v1((char *)header, sizeof header, &c->info.client_ip,
                                                 c->info.client_port, &c->info.server_ip, c->info.server_port)
                             : sp_proxy_write_v2(header, sizeof header, &c->info.client_ip, c->info.client_port,
                                                 &c->info.server_ip, c->info.server_port, NULL);
        if (header_len == 0) {
            lua_pushnil(L);
            lua_pushliteral(L, "cannot write the PROXY header");
            return 2;
        }
    }
    sp_cosock *s = sp_cosock_new(t, NULL, false);
    if (!s)
        return luaL_error(L, "out of memory");
    s->timeout_ms = DEFAULT_TIMEOUT_MS;
    s->connecting = true;
    const char *name = sni ? sni : host; /* SNI and the name the certificate must carry */
    sp_dial_tls upstream = {.ctx = c->w->process->lua_tls[verify ? 1 : 0], .sni = name, .verify_host = name};
    sp_dial_init(&s->dial, &c->w->loop, &dial_ops, &sp_conn_dial_keeper, c, s);
    sp_dial_start(&s->dial, host, (uint16_t)port, 0 /* bounded by `timeout` as a whole */, header, header_len,
                  tls ? &upstream : NULL);
    if (!s->connecting) {
        char why[96];
        lua_pushnil(L);
        lua_pushstring(L, dial_error(&s->dial, why, sizeof why));
        return 2;
    }
    return sp_task_yield(t, SP_WAIT_CONNECT, s, timeout);
}
