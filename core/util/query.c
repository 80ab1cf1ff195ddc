/* One parameter of a query string; see query.h. */
#include "util/query.h"

#include <string.h>

bool sp_query_get(const char *query, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = query; p && *p;) {
        size_t part = strcspn(p, "&");
        if (part >= nl && strncmp(p, name, nl) == 0 && (part == nl || p[nl] == '=')) {
            const char *v = part == nl ? p + nl : p + nl + 1;
            size_t vl = part - (size_t)(v - p);
            if (vl >= len)
                return false;
            memcpy(buf, v, vl);
            buf[vl] = 0;
            return true;
        }
        p += part + (p[part] == '&');
    }
    return false;
}
