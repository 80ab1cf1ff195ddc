#include "pattern/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PART_LITERAL, PART_VARIABLE } part_kind;

struct sp_template_part {
    part_kind kind;
    sp_template_var var;  /* PART_VARIABLE */
    const char *s;        /* PART_LITERAL: inside t->text */
    size_t len;
};

static const char *const NAMES[SP_TV_COUNT] = {
    [SP_TV_CLIENT_IP] = "client_ip",   [SP_TV_CLIENT_PORT] = "client_port",
    [SP_TV_DOMAIN] = "domain",         [SP_TV_HOST] = "host",
    [SP_TV_PORT] = "port",             [SP_TV_PATH] = "path",
    [SP_TV_QUERY] = "query",           [SP_TV_URL] = "url",
    [SP_TV_PROTO] = "proto",           [SP_TV_ROUTE_NAME] = "route_name",
    [SP_TV_CONNECTION_ID] = "connection_id",
};

int sp_template_var_lookup(const char *name, size_t len)
{
    if (name == NULL && len != 0)
        return -1;
    for (int v = 0; v < SP_TV_COUNT; v++)
        if (strlen(NAMES[v]) == len && memcmp(NAMES[v], name, len) == 0)
            return v;
    return -1;
}

const char *sp_template_var_name(sp_template_var v)
{
    return (unsigned)v < SP_TV_COUNT ? NAMES[v] : NULL;
}

static int fail(sp_template *t, char *err, size_t errlen, const char *fmt, int n,
                const char *s)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, n, s); /* s may point into t->text */
    sp_template_free(t);
    return -1;
}

int sp_template_compile(const char *text, sp_template *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (text == NULL)
        return fail(out, err, errlen, "expected a template string%.*s", 0, "");
    size_t n = strlen(text);
    out->text = strdup(text);
    /* At most one literal before each '{' and one after the last. */
    size_t max_parts = 1;
    for (size_t i = 0; i < n; i++)
        max_parts += text[i] == '{' ? 2 : 0;
    out->parts = calloc(max_parts, sizeof *out->parts);
    if (out->text == NULL || out->parts == NULL)
        return fail(out, err, errlen, "out of memory%.*s", 0, "");

    const char *t = out->text;
    size_t lit = 0; /* start of the literal being read */
    for (size_t i = 0; i <= n; i++) {
        if (i < n && t[i] != '{' && t[i] != '}')
            continue;
        if (i < n && t[i] == '}')
            return fail(out, err, errlen, "'}' without its '{' at offset %d%s", (int)i, "");
        if (i > lit)
            out->parts[out->nparts++] = (struct sp_template_part){
                .kind = PART_LITERAL, .s = t + lit, .len = i - lit };
        if (i == n)
            break;
        /* t[i] == '{': the name runs to the next '}', with no '{' in it. */
        size_t j = i + 1;
        while (j < n && t[j] != '}' && t[j] != '{')
            j++;
        if (j == n || t[j] == '{')
            return fail(out, err, errlen, "unclosed '{' at offset %d%s", (int)i, "");
        size_t name_len = j - i - 1;
        int v = sp_template_var_lookup(t + i + 1, name_len);
        if (v < 0)
            return fail(out, err, errlen, "unknown template variable {%.*s}",
                        name_len < 200 ? (int)name_len : 200, t + i + 1);
        out->parts[out->nparts++] = (struct sp_template_part){
            .kind = PART_VARIABLE, .var = (sp_template_var)v };
        out->uses |= 1u << v;
        i = j;
        lit = j + 1;
    }
    return 0;
}

void sp_template_free(sp_template *t)
{
    free(t->text);
    free(t->parts);
    memset(t, 0, sizeof *t);
}

void sp_template_expand(const sp_template *t, const sp_template_values *vals, sp_buf *out)
{
    sp_buf_append(out, "", 0); /* data is a string even when the expansion is empty */
    for (size_t i = 0; i < t->nparts; i++) {
        const struct sp_template_part *p = &t->parts[i];
        if (p->kind == PART_LITERAL) {
            sp_buf_append(out, p->s, p->len);
        } else if (vals != NULL && vals->v[p->var] != NULL) {
            sp_buf_append(out, vals->v[p->var], vals->len[p->var]);
        }
    }
}
