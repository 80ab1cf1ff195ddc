/* explain: --explain, which route a connection or request with given facts would meet.
 *
 * The command line gathers the facts (--port, --client-ip, --sni, --host, --path,
 * --header); sp_explain runs them through the same router the workers use
 * (route/router.h) on a loaded generation and prints, for each route on the port, whether
 * it wins, matches but loses, or which of its conditions does not match. */
#ifndef SP_CLI_EXPLAIN_H
#define SP_CLI_EXPLAIN_H

#include "config/config.h"
#include "util/buf.h"

typedef struct sp_explain_args {
    int port;
    const char *client_ip, *sni, *host, *path;
    sp_buf headers;            /* "Name: value\r\n" lines from --header */
} sp_explain_args;

/* Prints the explanation to stdout. Returns 0, or 1 after a message on stderr when the
 * facts are not valid (a client IP that is not one, a request that does not parse). */
int sp_explain(const sp_gen *g, sp_explain_args *x);

#endif
