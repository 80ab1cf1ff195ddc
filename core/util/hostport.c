#include "util/hostport.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int sp_hostport_format(char *out, size_t len, const char *host, const char *port)
{
    bool v6 = strchr(host, ':') != NULL;
    const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";
    return port ? snprintf(out, len, "%s%s%s:%s", lb, host, rb, port) : snprintf(out, len, "%s%s%s", lb, host, rb);
}
