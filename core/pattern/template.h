/* template: the `{variable}` templates of SPEC 6, compiled once at load and expanded per
 * request (header values, redirect targets, rewrite_path).
 *
 *   {client_ip} {client_port} {domain} {host} {port} {path} {query} {url} {proto}
 *   {route_name} {connection_id}
 *
 * Everything outside braces is literal. An unknown variable, an unclosed '{' or a '}'
 * without its '{' is a compile error (a configuration error for the user). Pure. There
 * is no escape for a literal brace; names are exact (no spaces, case-sensitive). The Lua
 * side (lua/smartproxy/template.lua) accepts and refuses the same templates with the
 * same messages. */
#ifndef SP_PATTERN_TEMPLATE_H
#define SP_PATTERN_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

typedef enum {
    SP_TV_CLIENT_IP = 0, SP_TV_CLIENT_PORT, SP_TV_DOMAIN, SP_TV_HOST, SP_TV_PORT,
    SP_TV_PATH, SP_TV_QUERY, SP_TV_URL, SP_TV_PROTO, SP_TV_ROUTE_NAME, SP_TV_CONNECTION_ID,
    SP_TV_COUNT
} sp_template_var;

typedef struct sp_template {
    char *text;                  /* as written (owned) */
    struct sp_template_part *parts;  /* private to template.c */
    size_t nparts;
    unsigned uses;               /* bit (1u << var) for each variable used */
} sp_template;

/* The values of one request; a NULL value expands to "". */
typedef struct sp_template_values {
    const char *v[SP_TV_COUNT];
    size_t len[SP_TV_COUNT];
} sp_template_values;

/* The variable named name[0..len), or -1. */
int sp_template_var_lookup(const char *name, size_t len);
/* "client_ip" for SP_TV_CLIENT_IP and so on; NULL for a value out of range. */
const char *sp_template_var_name(sp_template_var v);

/* Returns 0, or -1 with a message in err (NULL or cut to errlen): "unknown template
 * variable {foo}" (also "{}"), "unclosed '{' at offset N", "'}' without its '{' at offset
 * N" (N counted from 0). On failure *out is zeroed. */
int sp_template_compile(const char *text, sp_template *out, char *err, size_t errlen);
void sp_template_free(sp_template *t);

/* Appends the expansion to out (sp_buf's sticky oom reports allocation failure); out->data
 * is non-NULL afterwards unless oom. vals may be NULL: every variable is then "". */
void sp_template_expand(const sp_template *t, const sp_template_values *vals, sp_buf *out);

#endif
