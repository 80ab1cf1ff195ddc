/* handler: runs socket handlers as coroutines, and the "smartproxy.core" module that
 * gives Lua the calls that wait (connect, sleep), hand over to C (pipe) or look around
 * (log, stats, version). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/budget.h"
#include "lua/ctx.h"
#include "lua/memory.h"
#include "lua/shared.h"
#include "lua/task.h"
#include "net/app.h"
#include "net/conn_impl.h"
#include "util/log.h"
#include "util/metric.h"

#define WORKER_KEY "smartproxy.worker"
#define GEN_KEY "smartproxy.gen"            /* set once the worker serves the state's generation */
#define SPAWNS_KEY "smartproxy.spawns"      /* functions spawned while the config loaded */

/* A pointer the worker keeps in a state's registry (its worker, its generation). */
static void *registry_ptr(lua_State *L, const char *key)
{
    lua_getfield(L, LUA_REGISTRYINDEX, key);
    void *p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return p;
}

sp_task *sp_task_of(lua_State *co)
{
    if (lua_pushthread(co)) { /* the main thread is never a handler */
        lua_pop(co, 1);
        return NULL;
    }
    lua_rawget(co, LUA_REGISTRYINDEX);
    sp_task *t = lua_touserdata(co, -1);
    lua_pop(co, 1);
    return t;
}

static void on_task_timer(uv_timer_t *timer);

/* The timer is armed lazily: a resume leaves it running, and a yield restarts it only
 * when it would fire after the new deadline. A request-response handler waits once per
 * request; stopping and restarting the timer each time is two heap operations per
 * request, whereas a timer that fires early just re-arms for what is left. */
static void arm_timer(sp_task *t, uint64_t now, uint64_t deadline)
{
    uv_timer_start(t->timer, on_task_timer, deadline - now, 0);
    t->timer_due_ms = deadline;
}

int sp_task_yield(sp_task *t, sp_wait wait, sp_cosock *s, uint64_t timeout_ms)
{
    t->wait = wait;
    t->waiting_on = s;
    t->deadline_ms = 0;
    if (timeout_ms) {
        if (!t->timer) {
            t->timer = malloc(sizeof *t->timer);
            if (!t->timer)
                return luaL_error(t->co, "out of memory");
            uv_timer_init(&t->conn->w->loop, t->timer);
            t->timer->data = t;
            t->conn->handles++;
        }
        uint64_t now = uv_now(&t->conn->w->loop);
        t->deadline_ms = now + timeout_ms;
        if (!t->timer_due_ms || t->timer_due_ms > t->deadline_ms)
            arm_timer(t, now, t->deadline_ms);
    }
    return lua_yield(t->co, 0);
}

static void close_timer(sp_task *t)
{
    if (t->timer) {
        sp_conn_close_handle(t->conn, (uv_handle_t *)t->timer);
        t->timer = NULL;
    }
}

/* The handler ended well: what it wrote to the client is flushed, then all closes. */
static void finish(sp_task *t)
{
    sp_conn *c = t->conn;
    close_timer(t);
    for (sp_cosock *s = t->socks; s; s = s->next) {
        if (s->is_client && s->tcp) {
            /* give the client socket back to the connection, which flushes and closes */
            c->client.tcp = s->tcp;
            s->tcp->data = c;
            s->tcp = NULL;
        } else {
            sp_cosock_close(s);
        }
    }
    sp_conn_close(c, SP_END_HANDLER_DONE);
}

void sp_task_resume(sp_task *t, int nargs)
{
    if (t->done)
        return;
    sp_conn *c = t->conn;
    t->wait = SP_WAIT_NONE;
    t->waiting_on = NULL;
    t->deadline_ms = 0; /* the timer, if armed, finds nothing to do */
    sp_lua_budget_enter(t->L, c->gen->settings.timeouts.lua_budget);
    int rc = lua_resume(t->co, nargs);
    bool cut;
    uint64_t ms = sp_lua_budget_leave(&cut);
    if (ms)
        uv_update_time(&c->w->loop); /* durations and timers after a long run count it */
    if (ms >= t->hog_warn_ms && !cut)
        sp_warn("conn=%llu route=%s: the handler ran %llu ms without yielding; every connection "
                "of this worker waited", (unsigned long long)c->id, c->route->name, (unsigned long long)ms);
    if (rc == LUA_YIELD)
        return; /* waiting for something, or its sockets went to the C pipe (done) */
    t->done = true;
    if (rc == 0) {
        lua_settop(t->co, 0);
        finish(t);
        return;
    }
    const char *msg = rc == LUA_ERRMEM ? "not enough memory (limits.lua_memory)" : lua_tostring(t->co, -1);
    luaL_traceback(t->L, t->co, msg ? msg : "(error object is not a string)", 0);
    sp_error("conn=%llu route=%s: handler %s: %s", (unsigned long long)c->id, c->route->name,
             cut ? "stopped (timeouts.lua_budget)" : "failed", lua_tostring(t->L, -1));
    lua_pop(t->L, 1);
    lua_settop(t->co, 0);
    if (rc == LUA_ERRMEM) {
        sp_lua_memory_error_seen();
        t->reclaim = true; /* once the coroutine, which still holds its locals, is released */
    }
    sp_conn_abort(c, cut ? SP_END_LUA_BUDGET : rc == LUA_ERRMEM ? SP_END_LUA_MEMORY : SP_END_LUA_ERROR);
}

static void on_task_timer(uv_timer_t *timer)
{
    sp_task *t = timer->data;
    sp_cosock *s = t->waiting_on;
    t->timer_due_ms = 0;
    if (t->wait == SP_WAIT_NONE || !t->deadline_ms)
        return; /* the wait it was armed for is over */
    uint64_t now = uv_now(&t->conn->w->loop);
    if (now < t->deadline_ms) {
        arm_timer(t, now, t->deadline_ms); /* armed for an earlier wait */
        return;
    }
    switch (t->wait) {
    case SP_WAIT_SLEEP:
        sp_task_resume(t, 0);
        return;
    case SP_WAIT_READ: {
        /* like cosockets: nil, "timeout", and what had arrived (consumed) */
        if (s->reading) {
            uv_read_stop((uv_stream_t *)s->tcp);
            s->reading = false;
        }
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "timeout");
        lua_pushlstring(t->co, s->in.data ? s->in.data : "", s->in.len);
        sp_buf_reset(&s->in);
        sp_task_resume(t, 3);
        return;
    }
    case SP_WAIT_WRITE:
    case SP_WAIT_CONNECT:
        if (t->wait == SP_WAIT_CONNECT) {
            s->connecting = false;
            sp_cosock_close(s); /* abandons the attempt */
        }
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "timeout");
        sp_task_resume(t, 2);
        return;
    default:
        return;
    }
}

static const sp_app_ops task_app;

static sp_task *task_new(sp_conn *c)
{
    lua_State *L = c->gen->L;
    sp_task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->conn = c;
    t->L = L;
    /* Lua cannot be preempted: a handler that computes for long without yielding stalls
     * every connection of its worker, so such a resume is reported (0: never). */
    t->hog_warn_ms = c->gen->settings.timeouts.lua_hog_warning ? c->gen->settings.timeouts.lua_hog_warning
                                                                : UINT64_MAX;
    c->app = &task_app;
    c->app_ctx = t;
    t->co = lua_newthread(L);
    lua_pushlightuserdata(L, t);
    lua_rawset(L, LUA_REGISTRYINDEX); /* registry[co] = task; pops both */
    lua_pushthread(t->co);
    lua_xmove(t->co, L, 1);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* anchors the coroutine */
    return t;
}

/* Background tasks are connections without a client; this names them in logs. */
static const sp_route background_route = {.name = "(background)", .handler = LUA_NOREF};

/* Runs the function at registry reference fn_ref (in g's state) as a background task of
 * worker w (sp.timer, sp.every); takes the reference. */
static void start_background(sp_worker *w, sp_gen *g, int fn_ref)
{
    sp_conn *c = sp_conn_new_background(w, g, &background_route);
    if (!c) {
        luaL_unref(g->L, LUA_REGISTRYINDEX, fn_ref);
        return;
    }
    sp_conn_set_state(c, SP_STATE_LUA);
    sp_task *t = task_new(c);
    if (!t) {
        luaL_unref(c->gen->L, LUA_REGISTRYINDEX, fn_ref);
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, fn_ref);
    luaL_unref(c->gen->L, LUA_REGISTRYINDEX, fn_ref);
    sp_task_resume(t, 0);
}

void sp_task_start(sp_conn *c)
{
    sp_task *t = task_new(c);
    if (!t) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    sp_cosock *s = sp_cosock_new(t, c->client.tcp, true);
    if (!s) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return;
    }
    c->client.tcp = NULL; /* the task owns the client socket now */
    s->in = c->sniffed;   /* the bytes read while routing come first */
    sp_buf_init(&c->sniffed);
    sp_conn_set_state(c, SP_STATE_LUA);
    sp_conn_arm_timer(c);

    lua_rawgeti(t->co, LUA_REGISTRYINDEX, c->route->handler);
    sp_cosock_push(t->co, s);
    sp_lua_push_ctx(t->co, &c->info);
    sp_task_resume(t, 2);
}

/* The connection ends now: close every handle of the task. */
static void task_abort(sp_conn *c)
{
    sp_task *t = c->app_ctx;
    t->done = true;
    for (sp_cosock *s = t->socks; s; s = s->next)
        sp_cosock_close(s);
    close_timer(t);
}

/* The connection is released: free what is left. */
static void task_release(sp_conn *c)
{
    sp_task *t = c->app_ctx;
    while (t->socks) {
        sp_cosock *s = t->socks;
        t->socks = s->next;
        sp_cosock_destroy(s);
    }
    if (t->co) {
        lua_pushthread(t->co);
        lua_xmove(t->co, t->L, 1);
        lua_pushnil(t->L);
        lua_rawset(t->L, LUA_REGISTRYINDEX);
        luaL_unref(t->L, LUA_REGISTRYINDEX, t->co_ref);
        if (t->reclaim)
            sp_lua_state_reclaim(t->L);
    }
    free(t);
}

/* The worker stops gracefully: a handler waiting for the next request head between
 * requests is answered (see sp_cosock_retry_read). */
static void task_worker_stopping(sp_conn *c) { sp_cosock_retry_read(c->app_ctx); }

/* The seam: what the connection calls. A task reads and writes its sockets itself, so
 * the connection only keeps its stream timers and tells it of the end. */
static const sp_app_ops task_app = {
    .state = SP_STATE_LUA,
    .deadline = sp_conn_stream_deadline,
    .timeout = sp_conn_stream_timeout,
    .worker_stopping = task_worker_stopping,
    .abort = task_abort,
    .release = task_release,
};

/* ---- smartproxy.core ---- */

static sp_task *need_task(lua_State *L, const char *fn)
{
    sp_task *t = sp_task_of(L);
    if (!t || t->done)
        luaL_error(L, "%s: only inside a socket handler", fn);
    return t;
}

static int core_connect(lua_State *L)
{
    return sp_cosock_connect(L, need_task(L, "sp.connect"));
}

static int core_sleep(lua_State *L)
{
    sp_task *t = need_task(L, "sp.sleep");
    lua_Number ms = luaL_checknumber(L, 1);
    if (ms < 0)
        return luaL_argerror(L, 1, "expected milliseconds >= 0");
    return sp_task_yield(t, SP_WAIT_SLEEP, NULL, ms < 1 ? 1 : (uint64_t)ms);
}

/* Moves a buffer's bytes into pool buffers held for the target. */
static bool hold_all(sp_conn *c, const sp_buf *in)
{
    for (size_t off = 0; off < in->len;) {
        size_t n = in->len - off < SP_READ_BUF_SIZE ? in->len - off : SP_READ_BUF_SIZE;
        void *buf = sp_bufpool_get(&c->w->pool);
        if (!buf || !sp_pipe_hold_early(c, buf, n)) {
            sp_bufpool_put(&c->w->pool, buf);
            return false;
        }
        memcpy(buf, in->data + off, n);
        off += n;
    }
    return true;
}

/* sp.pipe(a, b): one of them is the client socket; both go to the connection's C pipe
 * and the handler ends here (its coroutine is never resumed). */
static int core_pipe(lua_State *L)
{
    sp_task *t = need_task(L, "sp.pipe");
    bool ca, cb;
    sp_cosock *a = sp_cosock_check(L, 1, "sp.pipe", &ca), *b = sp_cosock_check(L, 2, "sp.pipe", &cb);
    if (ca || cb || !a->tcp || !b->tcp) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (!a->is_client && b->is_client) {
        sp_cosock *x = a;
        a = b;
        b = x;
    }
    if (!a->is_client || a == b)
        return luaL_error(L, "sp.pipe: one side must be the handler's client socket, the other another socket");
    sp_conn *c = t->conn;
    if (a->in.len + b->in.len > SP_HIGH_WATER)
        return luaL_error(L, "sp.pipe: more than %d bytes read but not consumed", SP_HIGH_WATER);
    if (!hold_all(c, &a->in)) {
        sp_conn_abort(c, SP_END_INTERNAL_ERROR);
        return sp_task_yield(t, SP_WAIT_NONE, NULL, 0);
    }
    sp_buf_reset(&a->in);
    c->client.tcp = a->tcp;
    c->target.tcp = b->tcp;
    c->target.tls = b->tls; /* an established TLS upstream keeps its session */
    memset(&b->tls, 0, sizeof b->tls);
    c->client.eof = a->eof;
    c->target.eof = b->eof;
    a->tcp->data = b->tcp->data = c;
    a->tcp = b->tcp = NULL;
    a->reading = b->reading = false;
    uv_read_stop((uv_stream_t *)c->client.tcp);
    uv_read_stop((uv_stream_t *)c->target.tcp);
    t->done = true;
    close_timer(t);
    c->target_ready = true;
    sp_pipe_start(c);
    if (b->in.len && c->state == SP_STATE_PIPING) { /* what the target sent first */
        void *buf = sp_bufpool_get(&c->w->pool);
        if (buf) {
            memcpy(buf, b->in.data, b->in.len);
            sp_pipe_write(c, &c->client, buf, b->in.len);
        }
    }
    sp_buf_reset(&b->in);
    return lua_yield(L, 0); /* never resumed: the task is done */
}

static int core_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    if (!sp_log_enabled((sp_log_level)level))
        return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = lua_gettop(L);
    for (int i = 2; i <= n; i++) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (i > 2)
            luaL_addchar(&b, ' ');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    sp_task *t = sp_task_of(L);
    if (t)
        sp_log((sp_log_level)level, "conn=%llu route=%s: %s", (unsigned long long)t->conn->id,
               t->conn->route->name, lua_tostring(L, -1));
    else
        sp_log((sp_log_level)level, "lua: %s", lua_tostring(L, -1));
    return 0;
}

/* sp.stats() builds nested tables the way /stats nests JSON objects: an object opens a
 * table on the stack, its end stores it in the one below. */
static void stats_open(void *ud, const char *key)
{
    (void)key;
    lua_newtable(ud);
}

static void stats_close(void *ud, const char *key)
{
    lua_setfield(ud, -2, key);
}

static void stats_uint(void *ud, const char *key, uint64_t v)
{
    lua_pushnumber(ud, (lua_Number)v);
    lua_setfield(ud, -2, key);
}

static void stats_real(void *ud, const char *key, double v)
{
    lua_pushnumber(ud, v);
    lua_setfield(ud, -2, key);
}

static int core_stats(lua_State *L)
{
    static const sp_metric_visitor to_lua = {stats_open, stats_close, stats_uint, stats_real};
    sp_worker *w = registry_ptr(L, WORKER_KEY);
    if (!w) {
        lua_pushnil(L);
        lua_pushliteral(L, "sp.stats: only inside a worker");
        return 2;
    }
    sp_counts c;
    sp_counters_sum(w->process->counters, w->process->nworkers, &c);
    lua_createtable(L, 0, 16);
    sp_metrics_walk(sp_counts_metrics, sp_counts_nmetrics, &c, &to_lua, L);
    stats_uint(L, "tls_handshakes", c.tls_handshakes); /* its key before sp.stats() had "tls" */
    lua_pushinteger(L, w->id);
    lua_setfield(L, -2, "worker");
    return 1;
}

/* Writes the value at idx as a Lua expression; data only (tables of strings, numbers,
 * booleans), since routes travel to other threads' Lua states as source text. */
static void serialize(lua_State *L, int idx, sp_buf *out, char *path, size_t pathlen, int depth)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        sp_buf_appendf(out, "%s", lua_toboolean(L, idx) ? "true" : "false");
        return;
    case LUA_TNUMBER:
        sp_buf_appendf(out, "%.17g", lua_tonumber(L, idx));
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *p = lua_tolstring(L, idx, &n);
        sp_buf_append(out, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch == '"' || ch == '\\')
                sp_buf_appendf(out, "\\%c", ch);
            else if (ch < 32 || ch == 127)
                sp_buf_appendf(out, "\\%03u", ch);
            else
                sp_buf_append(out, &p[i], 1);
        }
        sp_buf_append(out, "\"", 1);
        return;
    }
    case LUA_TTABLE:
        break;
    default:
        luaL_error(L, "sp.update_routes: %s is a %s; only data (tables, strings, numbers, booleans) "
                      "can be sent to every worker", path, luaL_typename(L, idx));
    }
    if (depth > 32)
        luaL_error(L, "sp.update_routes: %s nests too deep (a cycle?)", path);
    sp_buf_append(out, "{", 1);
    size_t plen = strlen(path);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            snprintf(path + plen, pathlen - plen, ".%s", lua_tostring(L, -2));
            sp_buf_append(out, "[", 1);
            serialize(L, -2, out, path, pathlen, depth + 1);
            sp_buf_append(out, "]=", 2);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
            snprintf(path + plen, pathlen - plen, "[%.14g]", lua_tonumber(L, -2));
            sp_buf_appendf(out, "[%.17g]=", lua_tonumber(L, -2));
        } else {
            luaL_error(L, "sp.update_routes: %s has a %s key", path, luaL_typename(L, -2));
        }
        serialize(L, -1, out, path, pathlen, depth + 1);
        sp_buf_append(out, ",", 1);
        path[plen] = 0;
        lua_pop(L, 1);
    }
    sp_buf_append(out, "}", 1);
}

/* core.update_routes(routes): hands the main thread a new route list, as data. It is
 * validated and, if good, becomes a new generation in every worker (listeners open and
 * close as needed); if not, the current routes keep serving and the error is logged and
 * counted in reloads_failed. Returns true once queued. A reload from the file (SIGHUP,
 * --watch) replaces routes set this way. */
typedef struct serialize_job {
    sp_buf out;
    char path[256];
} serialize_job;

static int serialize_protected(lua_State *L)
{
    serialize_job *job = lua_touserdata(L, 2);
    serialize(L, 1, &job->out, job->path, sizeof job->path, 0);
    return 0;
}

static int core_update_routes(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sp_worker *w = registry_ptr(L, WORKER_KEY);
    if (!w || !w->process->updates) {
        lua_pushnil(L);
        lua_pushliteral(L, "sp.update_routes: only inside a worker");
        return 2;
    }
    serialize_job job = {.path = "routes"};
    sp_buf_init(&job.out);
    sp_buf_append(&job.out, "return ", 7);
    /* serialize raises on what cannot be sent: catch it so the buffer is freed */
    lua_pushcfunction(L, serialize_protected);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &job);
    int rc = lua_pcall(L, 2, 0, 0);
    if (rc != 0 || job.out.oom) {
        sp_buf_free(&job.out);
        if (rc == 0)
            lua_pushliteral(L, "out of memory");
        lua_pushnil(L);
        lua_insert(L, -2); /* nil, message */
        return 2;
    }
    sp_routes_mailbox *mb = w->process->updates;
    uv_mutex_lock(&mb->lock);
    free(mb->pending);
    mb->pending = job.out.data; /* the buffer's memory moves to the mailbox */
    uv_mutex_unlock(&mb->lock);
    uv_async_send(&mb->wake);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.spawn(fn): runs fn as a background task of this worker (what sp.timer and
 * sp.every are built on). While the config loads, the function waits until the worker
 * serves that generation; in the main thread's validation load it never runs. */
static int core_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    sp_gen *g = registry_ptr(L, GEN_KEY);
    sp_worker *w = registry_ptr(L, WORKER_KEY);
    if (g && w && !w->stopping) {
        start_background(w, g, luaL_ref(L, LUA_REGISTRYINDEX));
        return 0;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, SPAWNS_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, SPAWNS_KEY);
    }
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    return 0;
}

void sp_lua_start_spawns(void *worker, sp_gen *g)
{
    lua_State *L = g->L;
    lua_pushlightuserdata(L, g);
    lua_setfield(L, LUA_REGISTRYINDEX, GEN_KEY);
    lua_getfield(L, LUA_REGISTRYINDEX, SPAWNS_KEY);
    if (lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            start_background(worker, g, luaL_ref(L, LUA_REGISTRYINDEX));
        }
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, SPAWNS_KEY);
}

static int open_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"connect", core_connect}, {"pipe", core_pipe}, {"sleep", core_sleep},
        {"log", core_log},         {"stats", core_stats}, {"spawn", core_spawn},
        {"update_routes", core_update_routes},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 8);
    luaL_register(L, NULL, fns);
    lua_pushliteral(L, SP_VERSION);
    lua_setfield(L, -2, "version");
    sp_lua_push_shared(L);
    lua_setfield(L, -2, "shared");
    return 1;
}

void sp_lua_open_core(lua_State *L)
{
    sp_cosock_register(L); /* handlers get sockets whether or not they require the module */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "smartproxy.core");
    lua_pop(L, 2);
}

void sp_lua_set_worker(lua_State *L, void *worker)
{
    lua_pushlightuserdata(L, worker);
    lua_setfield(L, LUA_REGISTRYINDEX, WORKER_KEY);
}
