#include "lua/budget.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

#define MAX_BUDGETS 1024
#define TICK_MIN_MS 5
#define TICK_MAX_MS 250

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sp_lua_budget *budgets[MAX_BUDGETS];
static size_t nbudgets;
static bool watchdog_started;
static int budget_signal;
static _Atomic uint64_t exceeded_total;
static __thread sp_lua_budget *current;
static __thread unsigned depth; /* entries into Lua open on this thread */

uint64_t sp_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t sp_lua_budget_exceeded(void) { return atomic_load_explicit(&exceeded_total, memory_order_relaxed); }

bool sp_lua_budget_in_run(void) { return depth > 0; }

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    sp_lua_budget *b = current;
    if (b)
        b->fired = 1;
    /* the hook stays set: every instruction after this one fails too, so the error
     * unwinds the whole run even through the user's pcall */
    int limit = b ? (int)atomic_load_explicit(&b->limit_ms, memory_order_relaxed) : 0;
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        luaL_error(L, "%s:%d: took longer than %d ms without yielding",
                   ar->source[0] == '@' ? ar->source + 1 : ar->short_src, ar->currentline, limit);
    luaL_error(L, "took longer than %d ms without yielding", limit);
}

/* Runs on the thread whose run is over its limit, between two of its instructions. */
static void on_budget_signal(int sig)
{
    (void)sig;
    int saved = errno;
    sp_lua_budget *b = current;
    if (b && depth && b->L && !b->hooked &&
        atomic_load_explicit(&b->tripped_run, memory_order_relaxed) ==
            atomic_load_explicit(&b->run, memory_order_relaxed)) {
        b->hooked = 1;
        lua_sethook(b->L, budget_hook, LUA_MASKCOUNT, 1);
    }
    errno = saved;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        uint64_t tick = TICK_MAX_MS;
        pthread_mutex_lock(&lock);
        uint64_t now = sp_coarse_ms();
        for (size_t i = 0; i < nbudgets; i++) {
            sp_lua_budget *b = budgets[i];
            uint64_t limit = atomic_load(&b->limit_ms);
            if (limit && limit / 4 < tick)
                tick = limit / 4 < TICK_MIN_MS ? TICK_MIN_MS : limit / 4;
            uint64_t run = atomic_load(&b->run);
            uint64_t started = atomic_load(&b->started_ms);
            if (!started || !limit || now - started < limit || atomic_load(&b->run) != run ||
                atomic_load(&b->tripped_run) == run)
                continue;
            atomic_store(&b->tripped_run, run);
            pthread_kill(b->thread, budget_signal);
        }
        pthread_mutex_unlock(&lock);
        sleep_ms(tick);
    }
    return NULL;
}

/* Called with the lock held. */
static int start_watchdog(void)
{
    if (watchdog_started)
        return 0;
    budget_signal = SIGRTMIN + 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_budget_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(budget_signal, &sa, NULL) != 0)
        return -1;
    /* the watchdog itself never takes the signal, and starts with everything blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    pthread_detach(t);
    watchdog_started = true;
    return 0;
}

int sp_lua_budget_register(sp_lua_budget *b, const char *owner)
{
    b->thread = pthread_self();
    b->owner = owner;
    pthread_mutex_lock(&lock);
    int rc = start_watchdog();
    if (rc == 0 && nbudgets < MAX_BUDGETS)
        budgets[nbudgets++] = b;
    else
        rc = -1;
    pthread_mutex_unlock(&lock);
    if (rc == 0)
        current = b;
    return rc;
}

void sp_lua_budget_unregister(sp_lua_budget *b)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nbudgets; i++)
        if (budgets[i] == b) {
            budgets[i] = budgets[--nbudgets];
            break;
        }
    pthread_mutex_unlock(&lock);
    if (current == b)
        current = NULL;
}

/* Runs on every resume: the owning thread is the only writer of its budget, so plain
 * increments and release stores suffice (no locked instruction on the hot path); the
 * watchdog reads with acquire. */
void sp_lua_budget_enter(lua_State *L, uint64_t limit_ms)
{
    sp_lua_budget *b = current;
    if (depth++ || !b)
        return;
    b->L = L;
    b->hooked = b->fired = 0;
    atomic_store_explicit(&b->run, atomic_load_explicit(&b->run, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&b->limit_ms, limit_ms, memory_order_relaxed);
    uint64_t now = sp_coarse_ms();
    atomic_store_explicit(&b->started_ms, now ? now : 1, memory_order_release);
}

uint64_t sp_lua_budget_leave(bool *exceeded)
{
    sp_lua_budget *b = current;
    if (exceeded)
        *exceeded = false;
    if (--depth || !b)
        return 0;
    uint64_t took = sp_coarse_ms() - atomic_load_explicit(&b->started_ms, memory_order_relaxed);
    atomic_store_explicit(&b->started_ms, 0, memory_order_release); /* the signal handler now does nothing */
    if (b->hooked) {
        lua_sethook(b->L, NULL, 0, 0);
        b->hooked = 0;
    }
    if (b->fired) {
        b->fired = 0;
        atomic_fetch_add_explicit(&exceeded_total, 1, memory_order_relaxed);
        if (exceeded)
            *exceeded = true;
    }
    b->L = NULL;
    return took;
}

void sp_lua_budget_mark_user_code(lua_State *L)
{
    luaJIT_setmode(L, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
}
