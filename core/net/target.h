/* target: turns a route's target spec into a concrete host and port for one connection.
 *
 * Host and port are literal, "preserve" (the port the client connected to), or chosen by
 * a Lua function of ctx, called in the connection's own generation through the hooks
 * below (net/ runs no Lua: core/lua/target_fn.c does, installed by core/session). */
#ifndef SP_NET_TARGET_H
#define SP_NET_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/registry.h"
#include "route/router.h"

typedef struct sp_target_choice {
    char *host;                 /* owned */
    uint16_t port;
    char port_text[8];
    sp_end_reason last_error;   /* why the previous candidate failed */
} sp_target_choice;

/* A route's target functions: *host (malloc'd) or *port from the function at registry
 * reference fn_ref in g's state, called with info's ctx; 0, or -1 with a message naming
 * the failing function in err. */
typedef struct sp_target_fns {
    int (*host)(sp_gen *g, int fn_ref, const sp_conn_info *info, char **host, char *err, size_t errlen);
    int (*port)(sp_gen *g, int fn_ref, const sp_conn_info *info, uint16_t *port, char *err, size_t errlen);
} sp_target_fns;

/* Installs the target functions; once, before the first worker starts. */
void sp_target_install_fns(const sp_target_fns *fns);

/* Fills out from t; returns 0, or -1 with a message naming the failing function. */
int sp_target_choose(sp_gen *g, const sp_target *t, const sp_conn_info *info,
                     sp_target_choice *out, char *err, size_t errlen);

void sp_target_choice_clear(sp_target_choice *c);

#endif
