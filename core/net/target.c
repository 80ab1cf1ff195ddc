#include "net/target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sp_target_fns *target_fns; /* set once at startup, read by every worker */

void sp_target_install_fns(const sp_target_fns *fns) { target_fns = fns; }

int sp_target_choose(sp_gen *g, const sp_target *t, const sp_conn_info *info,
                     sp_target_choice *out, char *err, size_t errlen)
{
    if (t->host)
        out->host = strdup(t->host);
    else if (target_fns->host(g, t->host_fn, info, &out->host, err, errlen) != 0)
        return -1;
    if (!out->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    switch (t->port_kind) {
    case SP_PORT_FIXED: out->port = t->port; break;
    case SP_PORT_PRESERVE: out->port = info->server_port; break;
    case SP_PORT_FUNCTION:
        if (target_fns->port(g, t->port_fn, info, &out->port, err, errlen) != 0)
            return -1;
        break;
    }
    snprintf(out->port_text, sizeof out->port_text, "%u", out->port);
    return 0;
}

void sp_target_choice_clear(sp_target_choice *c)
{
    free(c->host);
    c->host = NULL;
    c->port = 0;
    c->port_text[0] = 0;
}
