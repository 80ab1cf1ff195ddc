/* worker: one thread, one uv loop, its own listeners and its own Lua state per
 * configuration generation.
 *
 * The main thread talks to a worker only through its mailbox (a mutex-protected slot
 * and a uv_async wake-up): "load this source set as generation N" and "stop, draining
 * for up to T ms". Everything else a worker owns is touched by its thread alone. */
#ifndef SP_WORKER_WORKER_H
#define SP_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lua/config_load.h"
#include "net/worker-t.h"

/* Starts the thread; it loads `sources` as generation 1 and opens its listeners, then
 * posts w->ready. Returns non-zero if the thread could not start. */
int sp_worker_start(sp_worker *w, int id, const char *file, sp_process *process,
                    sp_source_set *sources);
/* Asks the worker to load a new generation; it keeps its own reference to sources. */
void sp_worker_post_generation(sp_worker *w, sp_source_set *sources, uint64_t number);
/* Asks the worker to stop accepting and drain its connections for up to drain_ms. */
void sp_worker_post_stop(sp_worker *w, uint64_t drain_ms);
void sp_worker_join(sp_worker *w);

/* How often a worker's loop stamps its heartbeat. */
#define SP_HEARTBEAT_MS 250
/* Milliseconds since the worker's loop last ran (its heartbeat), for the main thread. */
uint64_t sp_worker_silence_ms(const sp_worker *w);

#endif
