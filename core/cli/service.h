/* service: what systemd learns about the process (sd_notify), for a Type=notify unit.
 *
 * Every call does nothing when systemd did not ask (no NOTIFY_SOCKET in the environment),
 * so a proxy run by hand or by another supervisor behaves exactly as before. The main
 * thread calls it:
 *   READY=1       once the workers listen on every port and the admin endpoint is up
 *   RELOADING=1   before a configuration reload (with MONOTONIC_USEC, as systemd >= 253
 *                 wants), then READY=1 when it is done, whether it succeeded or not
 *   STOPPING=1    when a graceful stop begins (no RELOADING/READY after it)
 *   STATUS=...    the serving generation and the open connections, when they change
 *   WATCHDOG=1    from the main loop, every half WATCHDOG_USEC (WatchdogSec= in the unit):
 *                 a main loop that stops turning stops the pings and systemd acts. */
#ifndef SP_CLI_SERVICE_H
#define SP_CLI_SERVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct sp_service {
    bool notify;              /* NOTIFY_SOCKET is set */
    uv_timer_t watchdog;      /* runs only with WATCHDOG_USEC */
    uint64_t generation, connections;
    bool reported;            /* STATUS= was sent for (generation, connections) */
    bool stopping;            /* STOPPING=1 was sent: no more RELOADING/READY */
} sp_service;

/* Reads the environment and, with WATCHDOG_USEC, starts the pings on `loop`. */
void sp_service_init(sp_service *s, uv_loop_t *loop);

void sp_service_ready(sp_service *s, uint64_t generation, uint64_t connections);
void sp_service_reloading(sp_service *s);
/* After a reload: READY=1 and the generation serving now; `error` for a refused one. */
void sp_service_reloaded(sp_service *s, uint64_t generation, const char *error);
void sp_service_stopping(sp_service *s);
/* STATUS= when the generation or the number of connections changed since the last one. */
void sp_service_status(sp_service *s, uint64_t generation, uint64_t connections);

/* Stops the watchdog pings (the one cleanup, with the main loop's other handles). */
void sp_service_close(sp_service *s);

#endif
