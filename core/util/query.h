/* query: one parameter of a URL query string ("tag=edge&x=1"), pure. Values are taken
 * as written, without percent-decoding: the parameters the admin endpoint reads take
 * only characters that need none. */
#ifndef SP_UTIL_QUERY_H
#define SP_UTIL_QUERY_H

#include <stdbool.h>
#include <stddef.h>

/* The value of the first `name` in query (the part after '?', or NULL) into buf; false
 * when absent or longer than len - 1. A name without '=' has the value "". */
bool sp_query_get(const char *query, const char *name, char *buf, size_t len);

#endif
