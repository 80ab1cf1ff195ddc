#include "worker/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/pool.h"
#include "lua/budget.h"
#include "lua/shared.h"
#include "lua/task.h"
#include "net/conn.h"
#include "net/listener.h"
#include "util/log.h"

/* Loads a generation in this worker's thread and starts serving it. On failure the
 * current generation keeps serving. Returns 0, 1 (config) or 2 (listen). */
static int load_generation(sp_worker *w, sp_source_set *sources, uint64_t number)
{
    char err[1024];
    sp_gen *g = sp_config_load(w->file, sources, NULL, err, sizeof err);
    if (!g) {
        sp_error("worker %d: generation %llu rejected: %s", w->id, (unsigned long long)number, err);
        return 1;
    }
    g->number = number;
    sp_lua_set_worker(g->L, w);
    sp_lua_set_shared(g->L, w->process->shared);
    int rc = sp_listeners_sync(w, g, err, sizeof err);
    if (rc != 0 && !w->gen) {
        /* at startup a port that cannot be bound is fatal (exit 2); main reports it */
        sp_error("%s", err);
        sp_listeners_close_all(w);
        sp_gen_unref(g);
        return 2;
    }
    if (rc != 0)
        sp_error("worker %d: generation %llu: %s", w->id, (unsigned long long)number, err);
    if (w->gen)
        sp_gen_unref(w->gen); /* live connections keep their own references */
    w->gen = g;
    sp_conns_end_background(w, g); /* the old generation's timers stop with it */
    sp_lua_start_spawns(w, g);
    sp_debug("worker %d: serving generation %llu", w->id, (unsigned long long)number);
    return 0;
}

static void finish_if_drained(sp_worker *w)
{
    if (!w->stopping || w->nconns > 0)
        return;
    /* nothing left: close our own handles so uv_run returns */
    sp_http_pool_close(w->http_pool);
    w->http_pool = NULL;
    if (!uv_is_closing((uv_handle_t *)&w->drain_timer))
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->heartbeat))
        uv_close((uv_handle_t *)&w->heartbeat, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->wake))
        uv_close((uv_handle_t *)&w->wake, NULL);
}

static void on_drain_deadline(uv_timer_t *t)
{
    sp_worker *w = t->data;
    if (w->nconns)
        sp_info("worker %d: graceful shutdown period over, closing %llu connection(s)", w->id,
                (unsigned long long)w->nconns);
    sp_conns_abort_all(w, SP_END_SHUTDOWN);
}

static void begin_stop(sp_worker *w, uint64_t drain_ms)
{
    if (w->stopping)
        return;
    w->stopping = true;
    sp_listeners_close_all(w);
    sp_conns_end_background(w, NULL);
    sp_conns_stop_idle(w);
    /* idle upstream connections carry no request; a backend draining its own keep-alive
     * connections (maybe a handler of this very proxy) should not wait for them */
    sp_http_pool_close(w->http_pool);
    w->http_pool = NULL;
    if (w->nconns) {
        sp_info("worker %d: stopping, draining %llu connection(s) for up to %llu ms", w->id,
                (unsigned long long)w->nconns, (unsigned long long)drain_ms);
        uv_timer_start(&w->drain_timer, on_drain_deadline, drain_ms, 0);
    }
    finish_if_drained(w);
}

static void on_wake(uv_async_t *a)
{
    sp_worker *w = a->data;
    uv_mutex_lock(&w->lock);
    sp_source_set *sources = w->mail_sources;
    uint64_t number = w->mail_number;
    bool stop = w->mail_stop;
    uint64_t drain = w->mail_drain_ms;
    w->mail_sources = NULL;
    uv_mutex_unlock(&w->lock);

    if (sources) {
        if (!w->stopping)
            load_generation(w, sources, number);
        sp_source_set_unref(sources);
    }
    if (stop)
        begin_stop(w, drain);
}

static void on_heartbeat(uv_timer_t *t)
{
    sp_worker *w = t->data;
    atomic_store_explicit(&w->heartbeat_ms, sp_coarse_ms(), memory_order_relaxed);
}

uint64_t sp_worker_silence_ms(const sp_worker *w)
{
    uint64_t last = atomic_load_explicit(&w->heartbeat_ms, memory_order_relaxed), now = sp_coarse_ms();
    return now > last ? now - last : 0;
}

static void worker_main(void *arg)
{
    sp_worker *w = arg;
    sp_lua_budget budget; /* timeouts.lua_budget for this thread's Lua, as long as it runs */
    snprintf(w->name, sizeof w->name, "worker %d", w->id);
    if (sp_lua_budget_register(&budget, w->name) != 0)
        sp_warn("%s: no Lua budget watchdog (timeouts.lua_budget is not enforced)", w->name);
    uv_mutex_lock(&w->lock);
    sp_source_set *sources = w->mail_sources;
    w->mail_sources = NULL;
    uv_mutex_unlock(&w->lock);

    w->start_status = load_generation(w, sources, 1);
    sp_source_set_unref(sources);
    uv_sem_post(&w->ready);
    /* on a failed start main asks us to stop, so the handles close in one place */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->gen)
        sp_gen_unref(w->gen);
    w->gen = NULL;
    sp_bufpool_clear(&w->pool);
    if (uv_loop_close(&w->loop) != 0)
        sp_error("worker %d: event loop closed with handles still open", w->id);
    sp_lua_budget_unregister(&budget);
    atomic_store(&w->exited, 1);
    if (w->exit_hook)
        w->exit_hook(w->exit_hook_arg);
}

int sp_worker_start(sp_worker *w, int id, const char *file, sp_process *process,
                    sp_source_set *sources)
{
    w->id = id;
    w->file = file;
    w->process = process;
    w->conn_gone = finish_if_drained;
    if (uv_loop_init(&w->loop) != 0 || uv_mutex_init(&w->lock) != 0 || uv_sem_init(&w->ready, 0) != 0)
        return -1;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_timer_init(&w->loop, &w->heartbeat);
    w->heartbeat.data = w;
    uv_timer_start(&w->heartbeat, on_heartbeat, SP_HEARTBEAT_MS, SP_HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&w->heartbeat);
    atomic_store(&w->heartbeat_ms, sp_coarse_ms());
    sp_source_set_ref(sources);
    w->mail_sources = sources;
    return uv_thread_create(&w->thread, worker_main, w);
}

void sp_worker_post_generation(sp_worker *w, sp_source_set *sources, uint64_t number)
{
    sp_source_set_ref(sources);
    uv_mutex_lock(&w->lock);
    sp_source_set *old = w->mail_sources;
    w->mail_sources = sources;
    w->mail_number = number;
    uv_mutex_unlock(&w->lock);
    sp_source_set_unref(old); /* a newer generation supersedes one not yet picked up */
    uv_async_send(&w->wake);
}

void sp_worker_post_stop(sp_worker *w, uint64_t drain_ms)
{
    uv_mutex_lock(&w->lock);
    w->mail_stop = true;
    w->mail_drain_ms = drain_ms;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->wake);
}

void sp_worker_join(sp_worker *w)
{
    uv_thread_join(&w->thread);
    sp_source_set_unref(w->mail_sources);
    uv_mutex_destroy(&w->lock);
    uv_sem_destroy(&w->ready);
}
