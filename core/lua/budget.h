/* budget: how long Lua code may run without yielding (timeouts.lua_budget).
 *
 * Lua cannot be preempted: a resume that never yields would hold its worker forever.
 * Each thread that runs Lua owns one sp_lua_budget and brackets every entry into Lua (a
 * handler resume, a target function, a config load) with sp_lua_budget_enter/leave. One
 * watchdog thread for the process looks at every budget a few times per limit; a run
 * past its limit is sent a signal on its own thread, whose handler sets a count hook on
 * the state (the way the standalone interpreter turns Ctrl-C into an error). The hook
 * raises an error at the next interpreted instruction and stays set until the run ends,
 * so a pcall in the user's code cannot swallow it: the run ends like any Lua error.
 *
 * Hooks do not run inside machine code LuaJIT compiled, so user code (the config file
 * and the modules it requires, but not the smartproxy library) is loaded with the JIT
 * off for its functions (sp_lua_budget_mark_user_code) unless limits.lua_jit is set. */
#ifndef SP_LUA_BUDGET_H
#define SP_LUA_BUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct lua_State lua_State;

typedef struct sp_lua_budget {
    _Atomic uint64_t run;          /* which entry into Lua this is (one per enter) */
    _Atomic uint64_t started_ms;   /* when it began (coarse clock); 0: not in Lua */
    _Atomic uint64_t limit_ms;     /* 0: unbounded */
    _Atomic uint64_t tripped_run;  /* the run the watchdog found over its limit */
    lua_State *L;                  /* the state of the current run */
    volatile int hooked;           /* the signal handler set the hook for this run */
    volatile int fired;            /* the hook raised its error in this run */
    pthread_t thread;
    const char *owner;             /* "worker 1", "main": for the stall report */
} sp_lua_budget;

/* Registers the calling thread's budget with the watchdog (started on first use).
 * Returns 0, or -1 when the watchdog thread or its signal cannot be set up. */
int sp_lua_budget_register(sp_lua_budget *b, const char *owner);
void sp_lua_budget_unregister(sp_lua_budget *b);
/* Brackets one entry into L on the calling thread, bounded by that thread's registered
 * budget (limit_ms 0: unbounded). leave returns how long the run took (0 on a thread
 * without a budget) and sets *exceeded when the budget cut it. An enter inside an open
 * run only counts depth: the outer run is the one bounded. */
void sp_lua_budget_enter(lua_State *L, uint64_t limit_ms);
uint64_t sp_lua_budget_leave(bool *exceeded);

/* True while this thread is inside a bracketed run (protected Lua code). */
bool sp_lua_budget_in_run(void);

/* Turns the JIT off for the function on top of L and every function defined in it. */
void sp_lua_budget_mark_user_code(lua_State *L);

/* Runs cut by the budget so far (process-wide, for the metrics). */
uint64_t sp_lua_budget_exceeded(void);

/* Milliseconds from a cheap clock (a few ms resolution). */
uint64_t sp_coarse_ms(void);

#endif
