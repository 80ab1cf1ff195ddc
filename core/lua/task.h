/* task: a socket handler's coroutine and everything it holds (sockets, timers).
 *
 * A task belongs to exactly one connection and dies with it: it is the connection's
 * application (net/app.h), whose abort closes its handles through the connection's close
 * path (so the connection's handle count covers them) and whose release frees the rest
 * when the connection is released. Lua sees
 * sockets as userdata pointing at a cosocket; when the cosocket goes, the pointer is
 * cleared and every method answers nil, "closed".
 *
 * A handler runs as a coroutine on its worker's loop. A call that would wait (read,
 * write under backpressure, connect, sleep) registers what it waits for and yields; the
 * callback that satisfies it resumes the coroutine with the results. */
#ifndef SP_LUA_TASK_H
#define SP_LUA_TASK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/dial.h"
#include "tls/stream.h"
#include "util/buf.h"

typedef struct lua_State lua_State;
typedef struct sp_conn sp_conn;
typedef struct sp_task sp_task;
typedef struct sp_cosock sp_cosock;
typedef struct sp_gen sp_gen;

typedef enum { SP_WAIT_NONE = 0, SP_WAIT_READ, SP_WAIT_WRITE, SP_WAIT_CONNECT, SP_WAIT_SLEEP } sp_wait;
typedef enum { SP_READ_BYTES = 0, SP_READ_LINE, SP_READ_ALL, SP_READ_ANY, SP_READ_HEAD } sp_read_kind;

struct sp_cosock {
    sp_task *task;
    sp_cosock *next;              /* the task's sockets */
    uv_tcp_t *tcp;                /* NULL once closed */
    uv_tcp_t *lingering;          /* closed by Lua, flushing before the handle closes */
    sp_cosock **ud;               /* the Lua userdata pointing at us, or NULL */
    bool is_client;               /* the connection's own client socket */
    sp_buf in;                    /* received and not yet read by Lua */
    bool eof, reading;
    int error;                    /* a read or write failed: later calls say "closed" */
    size_t queued;                /* written bytes not yet on the wire */
    uint64_t timeout_ms;
    sp_read_kind read_kind;
    size_t read_n;
    struct sp_http_msg *head;     /* sock:read_request_head: llhttp, kept between reads */
    /* sp.connect */
    sp_dial dial;                 /* resolve, connect, PROXY header, TLS (net/dial.h) */
    bool connecting;              /* an sp.connect waits on this socket */
    sp_tls_stream tls;            /* tls.ssl set when the socket speaks TLS */
};

struct sp_task {
    sp_conn *conn;
    lua_State *L;                 /* the generation's state */
    lua_State *co;                /* the coroutine */
    int co_ref;                   /* anchors the coroutine in the registry */
    sp_cosock *socks;
    sp_cosock *waiting_on;        /* the socket the coroutine waits on, if any */
    sp_wait wait;
    uv_timer_t *timer;            /* the current wait's deadline, or sp.sleep */
    uint64_t deadline_ms;         /* loop time the current wait ends at; 0: none */
    uint64_t timer_due_ms;        /* loop time the timer fires at; 0: not armed */
    bool done;                    /* returned, failed, or handed its sockets to the pipe */
    uint64_t hog_warn_ms;
    bool reclaim;                 /* failed for memory: collect the state when released */
};

/* Starts the route's handler for connection c on its client socket; the bytes read while
 * routing are the first the handler reads. */
void sp_task_start(sp_conn *c);
/* A worker installed generation g: runs the tasks its config spawned while loading,
 * and lets later sp.spawn calls start at once. */
void sp_lua_start_spawns(void *worker, sp_gen *g);

/* Installs package.preload["smartproxy.core"] in a fresh Lua state. */
void sp_lua_open_core(lua_State *L);
/* Tells a worker's Lua state which worker it serves (for sp.stats). */
void sp_lua_set_worker(lua_State *L, void *worker);

/* cosocket.c, for handler.c */
sp_cosock *sp_cosock_new(sp_task *t, uv_tcp_t *tcp, bool is_client);
void sp_cosock_push(lua_State *L, sp_cosock *s);
void sp_cosock_register(lua_State *L);
/* sp.connect(host, port, opts): yields until connected; pushes the result when resumed. */
int sp_cosock_connect(lua_State *co, sp_task *t);
void sp_cosock_close(sp_cosock *s);
void sp_cosock_destroy(sp_cosock *s);
/* Answers the read t waits for, if it can be answered now; for the graceful stop, which
 * ends a wait for the next request head between requests (see try_read_head). */
void sp_cosock_retry_read(sp_task *t);
/* The userdata at idx, or a Lua error naming `fn`. NULL when the socket is closed. */
sp_cosock *sp_cosock_check(lua_State *L, int idx, const char *fn, bool *closed);

/* handler.c, for cosocket.c */
sp_task *sp_task_of(lua_State *co);
/* Yields the running coroutine until resumed by sp_task_resume (returns lua_yield's). */
int sp_task_yield(sp_task *t, sp_wait wait, sp_cosock *s, uint64_t timeout_ms);
/* Resumes the coroutine with the `nargs` values on top of its stack. */
void sp_task_resume(sp_task *t, int nargs);

#endif
