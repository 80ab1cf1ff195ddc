/* config/schema: the typed readers the configuration compiler is built from (private to
 * core/config/).
 *
 * Every reader takes the compile context (cfg_cx: the Lua state, the generation being
 * built, the file name and the route being compiled) and a field path, and on a value of
 * the wrong type or range raises a SPEC 10 message with lua_error:
 * "proxy.lua: route \"api\" (#3): match.ports: expected ..., got ...". The readers run
 * inside the protected call of sp_gen_compile (config.c); whatever was allocated before
 * the long jump already hangs off the generation, which the caller frees. */
#ifndef SP_CONFIG_SCHEMA_H
#define SP_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct cfg_cx {
    lua_State *L;
    sp_gen *g;
    const char *file;
    const sp_route *route;   /* the route being compiled, for messages */
} cfg_cx;

/* Allocation that cannot fail: out of memory while loading the configuration aborts. */
char *cfg_strdup(const char *s);
void *cfg_calloc(size_t n, size_t sz);

/* "string \"abc\"", "number 5", "table", "nil" ... : a Lua value for error messages. */
void sp_config_describe(lua_State *L, int idx, char *out, size_t len);

/* Raises "FILE: [route \"NAME\" (#I): ]FIELD: MESSAGE". */
__attribute__((noreturn, format(printf, 3, 4)))
void cfg_fail(cfg_cx *cx, const char *field, const char *fmt, ...);

/* Raises "FIELD: expected EXPECTED, got <the value at idx>". */
__attribute__((noreturn))
void cfg_fail_type(cfg_cx *cx, const char *field, int idx, const char *expected);

/* "path.key", or "key" at the top level. */
void cfg_join(char *out, size_t len, const char *path, const char *key);

/* Rejects keys of the table at idx that are not in allowed (typos must not pass). */
void cfg_check_keys(cfg_cx *cx, int idx, const char *path, const char *const *allowed);

/* A table with a list part. */
bool cfg_is_array(lua_State *L, int idx);

/* Reads a non-negative integer field; keeps *out when absent. */
void cfg_opt_uint(cfg_cx *cx, int t, const char *path, const char *key, uint64_t max, uint64_t *out);

/* A string field or NULL; the string stays valid while the table references it. */
const char *cfg_opt_string(cfg_cx *cx, int t, const char *path, const char *key);

/* A boolean field: 1, 0, or -1 when absent. */
int cfg_opt_bool(cfg_cx *cx, int t, const char *path, const char *key);

/* Pushes t[key] and checks it is a table (or absent: returns false, nothing pushed). */
bool cfg_opt_table(cfg_cx *cx, int t, const char *path, const char *key);

/* Calls each(cx, dst, value_index, field, count) for every string of a field that is a
 * string or a list of strings; returns the count. */
size_t cfg_for_each_string(cfg_cx *cx, void *dst, int t, const char *key, const char *field,
                           const char *expected,
                           void (*each)(cfg_cx *, void *, int, const char *, size_t));

/* The port number at idx (1 to 65535). */
uint16_t cfg_port_value(cfg_cx *cx, const char *field, int idx);

/* A string or a list of strings, each an IP pattern (address, CIDR or glob). */
void cfg_ip_list(cfg_cx *cx, int t, const char *key, const char *field, sp_ip_list *out);

#endif
