/* hostport: a destination written as text, "host:port", the one way logs (target=) and
 * Host headers write one. An IPv6 literal goes in brackets, "[::1]:8080", so that the
 * port stays apart from the address (RFC 3986 3.2.2); a name or an IPv4 address goes as
 * it is. Pure. */
#ifndef SP_UTIL_HOSTPORT_H
#define SP_UTIL_HOSTPORT_H

#include <stddef.h>

/* Writes host, then ":port" unless port is NULL (a default port left unsaid), into out
 * (NUL-terminated, truncated to len). Returns the length the whole text needs, as
 * snprintf does. */
int sp_hostport_format(char *out, size_t len, const char *host, const char *port);

#endif
