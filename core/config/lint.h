/* config/lint: likely mistakes in a configuration that loads, for `--check` (pure).
 *
 * A warning never stops a load; it names a route and says what will surprise its
 * author:
 *  - a route that never wins: another route is chosen first for every connection or
 *    request it matches (higher priority, or the same priority with an equal or more
 *    specific domain and earlier in the file) and has no condition of its own that
 *    could let it through (client_ip, tls_version, path, headers);
 *  - a port where a plain-text stream route is chosen before a plain-text HTTP route:
 *    a request it matches hands it the whole connection, later requests included.
 * The rules follow core/route/router.c and err on the quiet side: a warning is always
 * true, a quiet check does not prove a config right. */
#ifndef SP_CONFIG_LINT_H
#define SP_CONFIG_LINT_H

#include <stddef.h>

#include "config/config.h"

typedef struct sp_lint_warning {
    const sp_route *route;         /* the route the warning is about */
    char message[384];
} sp_lint_warning;

/* Calls `each` for every warning, in route order; returns how many there were. */
size_t sp_config_lint(const sp_gen *g, void (*each)(const sp_lint_warning *w, void *ud), void *ud);

#endif
